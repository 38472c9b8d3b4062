import { describe, expect, inject, it } from "vitest";
import { useTestDatabase } from "../helpers/database.js";
import { ADMIN_KEY, StreamRecorder, useTestServer } from "../helpers/http.js";
import { uniqueRoomId } from "../helpers/queue.js";

/*
 * Every route the service answers, served by a service and a scheduler that
 * connect as the least-privileged role. That role holds no privilege on any
 * table (test/sql/privileges.test.ts), so a statement that touched one
 * directly would fail here: every read and write went through a verb.
 */

const db = useTestDatabase();
const server = useTestServer(db, { worker: true });
const serviceRole = inject("serviceRole").name;

type Ticket = { ticket_id: string; token: string; events_url: string };

async function ok(response: Promise<Response>, status = 200): Promise<Record<string, unknown>> {
  const answer = await response;
  const text = await answer.text();
  expect(answer.status, text).toBe(status);
  return text === "" ? {} : (JSON.parse(text) as Record<string, unknown>);
}

describe("the service connected as its least-privileged role", () => {
  it("serves every route, and its connections are that role's", async () => {
    const room = uniqueRoomId();
    const admin = { token: ADMIN_KEY };
    await ok(server.request(`/v1/rooms/${room}`, { method: "PUT", ...admin, body: { capacity: 1 } }), 201);
    await ok(server.request(`/v1/rooms/${room}`, { method: "PUT", ...admin, body: { claim_seconds: 120 } }));
    expect(await ok(server.request(`/v1/rooms/${room}`, admin))).toMatchObject({ id: room, claim_seconds: 120 });
    expect(await ok(server.request("/v1/rooms", admin))).toMatchObject({ rooms: [{ id: room }] });

    const first = (await ok(server.request(`/v1/rooms/${room}/tickets`, { method: "POST" }), 202)) as Ticket;
    const mine = (await ok(server.request(`/v1/rooms/${room}/tickets`, { method: "POST" }), 202)) as Ticket;
    const stream = new StreamRecorder(`${server.url}${mine.events_url}?token=${encodeURIComponent(mine.token)}`);
    try {
      await stream.next((m) => m.event === "state" && m.data.position === 1);
      await ok(server.request(`/v1/tickets/${first.ticket_id}`, { method: "DELETE", token: first.token }), 204);
      await stream.next((m) => m.event === "admitted");

      const claimed = await ok(
        server.request(`/v1/tickets/${mine.ticket_id}/claim`, { method: "POST", token: mine.token }),
      );
      expect(
        await ok(
          server.request("/v1/check", { method: "POST", body: { room, admission_token: claimed.admission_token } }),
        ),
      ).toMatchObject({ ok: true, status: "active", room_id: room });
      expect(
        await ok(server.request(`/v1/tickets/${mine.ticket_id}/heartbeat`, { method: "POST", token: mine.token })),
      ).toMatchObject({ status: "active" });
      expect(await ok(server.request(`/v1/tickets/${mine.ticket_id}`, { token: mine.token }))).toMatchObject({
        status: "active",
      });
      expect(
        await ok(
          server.request("/v1/check", { method: "POST", body: { room, ticket_id: mine.ticket_id, token: mine.token } }),
        ),
      ).toMatchObject({ ok: true });

      const { kid } = await ok(server.request("/v1/keys/rotate", { method: "POST", ...admin }));
      const jwks = await ok(server.request("/.well-known/jwks.json"));
      expect(jwks.keys).toEqual([expect.any(Object), expect.objectContaining({ kid })]);
      await ok(server.request("/v1/keys", admin));
      await ok(server.request(`/v1/keys/${kid}/revoke`, { method: "POST", ...admin }));

      await ok(server.request(`/v1/rooms/${room}/pause`, { method: "POST", ...admin }));
      await ok(server.request(`/v1/rooms/${room}/resume`, { method: "POST", ...admin }));
      await ok(server.request(`/v1/rooms/${room}/history?minutes=5`, admin));
      await ok(server.request(`/v1/tickets/${mine.ticket_id}`, { method: "DELETE", token: mine.token }), 204);
      await stream.next((m) => m.event === "ended" || m.data.status === "left");
    } finally {
      stream.close();
    }
    await ok(server.request(`/v1/rooms/${room}`, { method: "DELETE", ...admin }), 204);

    // The service's LISTEN connection and the scheduler's (graphile-worker's) are the service's role.
    const listening = await db.sql<{ user: string; application: string; query: string }[]>`
      select usename::text as user, application_name as application, query
        from pg_stat_activity
       where datname = current_database() and pid <> pg_backend_pid()
         and (application_name = 'waitroom-listen' or query ilike 'listen%')`;
    expect(listening.some((row) => row.application === "waitroom-listen")).toBe(true);
    expect(listening.some((row) => row.query.includes("jobs:insert"))).toBe(true);
    expect(listening.map((row) => row.user)).toEqual(listening.map(() => serviceRole));
  });
});
