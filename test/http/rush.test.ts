import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import type { z } from "zod";
import { loadConfig } from "../../src/config/index.js";
import type { joinResponse } from "../../src/http/contracts.js";
import { type HttpService, startHttp } from "../../src/http/server.js";
import { createLogger } from "../../src/log.js";
import { useTestDatabase } from "../helpers/database.js";
import { metric, SERVER_KEY, StreamRecorder, testEnvironment, useTestServer } from "../helpers/http.js";
import { createRoom } from "../helpers/queue.js";

/*
 * The opening rush over real HTTP: joins and stream opens that arrive
 * together are grouped into one statement each (src/queue/grouped.ts), and
 * every caller still gets exactly its own answer.
 */

const db = useTestDatabase({ max: 20 });
/** A rush from one address: per-client limits off, as for a load test. */
const unlimited = { WAITROOM_RATE_LIMITS: "off" };
const server = useTestServer(db, { env: unlimited });
const replicas: HttpService[] = [];
afterAll(async () => {
  for (const replica of replicas) await replica.close();
});

type Joined = z.infer<typeof joinResponse>;

const joinPath = (room: string) => `/v1/rooms/${room}/tickets`;

/** A join as browsers' fetch sends it: a JSON body `{}`. */
const joinOver = (base: string, room: string, body: Record<string, unknown> = {}, token?: string) =>
  fetch(`${base}${joinPath(room)}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });

async function joinAll(room: string, count: number): Promise<Joined[]> {
  const responses = await Promise.all(Array.from({ length: count }, () => joinOver(server.url, room)));
  expect(responses.map((r) => r.status)).toEqual(responses.map(() => 202));
  return Promise.all(responses.map((r) => r.json() as Promise<Joined>));
}

const batches = (kind: "join" | "read") => metric(server, `waitroom_batch_size_count{kind="${kind}"}`);
const batchedCalls = (kind: "join" | "read") => metric(server, `waitroom_batch_size_sum{kind="${kind}"}`);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("the opening rush", () => {
  it("writes joins arriving together in shared statements, and answers each caller with its own ticket", async () => {
    const room = await createRoom(db.sql, 0, { idle_seconds: 3600 });
    const [batchesBefore, callsBefore] = [await batches("join"), await batchedCalls("join")];
    const joined = await joinAll(room, 300);
    const calls = (await batchedCalls("join")) - callsBefore;
    const sent = (await batches("join")) - batchesBefore;
    expect(calls).toBe(300);
    // Grouping happened: fewer statements than joins.
    expect(sent).toBeLessThan(300);
    expect(new Set(joined.map((j) => j.ticket_id)).size).toBe(300);
    expect(new Set(joined.map((j) => j.token)).size).toBe(300);
    const [counted] = await db.sql<{ tickets: number; events: number }[]>`
      select (select count(*) from waitroom.tickets where room_id = ${room})::int as tickets,
             (select count(*) from waitroom.events where room_id = ${room} and type = 'joined')::int as events`;
    expect(counted).toEqual({ tickets: 300, events: 300 });
    // Every token is its own ticket's.
    const checks = await db.sql<{ code: string }[]>`
      select c.code from unnest(${db.sql.array(joined.map((j) => j.ticket_id))}::uuid[],
                                ${db.sql.array(joined.map((j) => j.token))}::text[]) as p(id, token)
       cross join lateral waitroom.check(p.id, p.token) c`;
    expect(checks.every((c) => c.code === "queued")).toBe(true);
    const [depth] = await db.sql<{ depth: number }[]>`select waitroom._depth(${room}) as depth`;
    expect(depth?.depth).toBe(300);
  });

  it("acknowledges none of the joins of a batch whose transaction fails", async () => {
    const room = await createRoom(db.sql, 0, { idle_seconds: 3600 });
    const blocker = await db.sql.reserve();
    try {
      // Inserts wait behind this lock; the waiting batches are then killed mid-statement.
      await blocker`begin`;
      await blocker`lock table waitroom.tickets in share mode`;
      const pending = Array.from({ length: 40 }, () => joinOver(server.url, room));
      const answered = Promise.all(pending);
      let settled = false;
      void answered.finally(() => {
        settled = true;
      });
      let killed = 0;
      while (!settled) {
        const rows = await db.sql<{ pid: number }[]>`
          select pg_terminate_backend(pid) as pid from pg_stat_activity
           where wait_event_type = 'Lock' and query like '%join_many%' and pid <> pg_backend_pid()`;
        killed += rows.length;
        await sleep(20);
      }
      const responses = await answered;
      expect(killed).toBeGreaterThan(0);
      const codes = await Promise.all(
        responses.map(async (r) => [r.status, ((await r.json()) as { error?: { code: string } }).error?.code]),
      );
      expect(codes.every(([status, code]) => status === 503 && code === "unavailable")).toBe(true);
    } finally {
      await blocker`rollback`;
      blocker.release();
    }
    const [counted] = await db.sql<{ tickets: number; events: number }[]>`
      select (select count(*) from waitroom.tickets where room_id = ${room})::int as tickets,
             (select count(*) from waitroom.events where room_id = ${room} and type = 'joined')::int as events`;
    expect(counted).toEqual({ tickets: 0, events: 0 });
    // The service is fine afterwards.
    expect((await joinOver(server.url, room)).status).toBe(202);
  });

  it("gives one holder one ticket, however its joins are spread over batches and replicas", async () => {
    const config = loadConfig(testEnvironment(unlimited));
    const replica = await startHttp({ databaseUrl: db.serviceUrl, config, log: createLogger(config.logLevel) });
    replicas.push(replica);
    const room = await createRoom(db.sql, 0, { idle_seconds: 3600 });
    const responses = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        joinOver(i % 2 === 0 ? server.url : replica.url, room, { holder: "ada" }, SERVER_KEY),
      ),
    );
    expect(responses.map((r) => r.status)).toEqual(responses.map(() => 202));
    const joined = await Promise.all(responses.map((r) => r.json() as Promise<Joined>));
    expect(new Set(joined.map((j) => j.ticket_id)).size).toBe(1);
    const [live] = await db.sql<{ count: number }[]>`
      select count(*)::int from waitroom.tickets where room_id = ${room} and holder = 'ada'`;
    expect(live?.count).toBe(1);
    // Exactly one of the sixty tokens is current; the others were superseded by a later join (the
    // ticket remembers the last 8 superseded tokens; older ones are merely unknown).
    const codes = await db.sql<{ code: string }[]>`
      select c.code from unnest(${db.sql.array(joined.map((j) => j.token))}::text[]) as p(token)
       cross join lateral waitroom.check(${joined[0]?.ticket_id ?? null}::uuid, p.token) c`;
    expect(codes.filter((c) => c.code === "queued")).toHaveLength(1);
    expect(codes.filter((c) => c.code === "superseded")).toHaveLength(8);
    expect(codes.filter((c) => c.code === "unknown")).toHaveLength(51);
  });

  it("keeps each join's own priority when joins with and without one share a batch", async () => {
    const room = await createRoom(db.sql, 0, { idle_seconds: 3600 });
    const responses = await Promise.all(
      Array.from({ length: 40 }, (_, i) => joinOver(server.url, room, i % 2 === 0 ? {} : { priority: 5 }, SERVER_KEY)),
    );
    expect(responses.map((r) => r.status)).toEqual(responses.map(() => 202));
    const joined = await Promise.all(responses.map((r) => r.json() as Promise<Joined>));
    const rows = await db.sql<{ id: string; priority: number }[]>`
      select id, priority from waitroom.tickets where room_id = ${room}`;
    const priorityOf = new Map(rows.map((row) => [row.id, row.priority]));
    expect(joined.map((j) => priorityOf.get(j.ticket_id))).toEqual(joined.map((_, i) => (i % 2 === 0 ? 0 : 5)));
  });

  it("never seats more than capacity when batched joins pour into a passthrough room while admitters run", async () => {
    const room = await createRoom(db.sql, 5, { mode: "passthrough", idle_seconds: 3600 });
    let running = true;
    let most = 0;
    const occupied = async () => {
      const [row] = await db.sql<{ seats: number }[]>`
        select count(*)::int as seats from waitroom.tickets
         where room_id = ${room} and status in ('admitted', 'active', 'draining')`;
      return row?.seats ?? 0;
    };
    const sampler = (async () => {
      while (running) most = Math.max(most, await occupied());
    })();
    const admitters = Array.from({ length: 3 }, async () => {
      let calls = 0;
      while (running) {
        await db.sql`select * from waitroom.admit(${room})`;
        calls += 1;
      }
      return calls;
    });
    const joined = await joinAll(room, 200);
    running = false;
    const admitCalls = await Promise.all(admitters);
    await sampler;
    expect(admitCalls.every((calls) => calls > 0)).toBe(true);
    expect(most).toBeLessThanOrEqual(5);
    expect(await occupied()).toBe(5);
    expect(joined.filter((j) => j.status === "admitted")).toHaveLength(5);
    expect(joined.filter((j) => j.status === "queued")).toHaveLength(195);
  });

  it("opens streams arriving together with shared reads; each gets its own state and events, a wrong token its own 404", async () => {
    const room = await createRoom(db.sql, 0, { idle_seconds: 3600 });
    const joined = await joinAll(room, 150);
    const [readsBefore, openedBefore] = [await batches("read"), await batchedCalls("read")];
    const url = (ticket: { ticket_id: string; token: string }) =>
      `${server.url}/v1/tickets/${ticket.ticket_id}/events?token=${ticket.token}`;
    const forged = fetch(url({ ticket_id: joined[3]?.ticket_id ?? "", token: joined[4]?.token ?? "" }));
    const streams = joined.map((ticket) => new StreamRecorder(url(ticket)));
    try {
      const firsts = await Promise.all(streams.map((s) => s.next((m) => m.event === "state")));
      expect((await forged).status).toBe(404);
      firsts.forEach((state, i) => {
        expect(state.data).toMatchObject({ ticket_id: joined[i]?.ticket_id, status: "queued", position: i + 1 });
      });
      const reads = (await batches("read")) - readsBefore;
      expect((await batchedCalls("read")) - openedBefore).toBeGreaterThanOrEqual(151);
      expect(reads).toBeLessThan(151);

      await db.sql`select waitroom.configure_room(${room}, '{"capacity": 20}')`;
      await db.sql`select * from waitroom.admit(${room})`;
      const admitted = await Promise.all(streams.slice(0, 20).map((s) => s.next((m) => m.event === "admitted")));
      admitted.forEach((event, i) => {
        expect(event.data).toMatchObject({ ticket_id: joined[i]?.ticket_id, status: "admitted" });
      });
      await Promise.all(
        streams.slice(20).map((s, i) => s.next((m) => m.event === "state" && m.data.position === i + 1)),
      );
      // Nobody heard anyone else's admission.
      for (const stream of streams.slice(20)) expect(stream.messages.some((m) => m.event === "admitted")).toBe(false);
    } finally {
      for (const stream of streams) stream.close();
    }
  });

  it("listens with a backlog a rush of connections fits in, not Node's 511", async () => {
    const port = new URL(server.url).port;
    const { stdout } = await promisify(execFile)("ss", ["-ltnH", `sport = :${port}`]);
    // For a listening socket, ss shows the backlog as Send-Q; the kernel caps it at somaxconn.
    const backlog = Number(stdout.trim().split(/\s+/)[2]);
    const somaxconn = Number(await readFile("/proc/sys/net/core/somaxconn", "utf8"));
    expect(backlog).toBe(Math.min(65_535, somaxconn));
    expect(backlog).toBeGreaterThan(511);
  });

  it("opens no subscriber for HEAD on a stream", async () => {
    const room = await createRoom(db.sql, 0, { idle_seconds: 3600 });
    const [ticket] = await joinAll(room, 1);
    if (!ticket) throw new Error("no ticket");
    const before = await metric(server, "waitroom_sse_streams");
    const heads = await Promise.all(
      Array.from({ length: 20 }, () =>
        fetch(`${server.url}/v1/tickets/${ticket.ticket_id}/events?token=${ticket.token}`, { method: "HEAD" }),
      ),
    );
    expect(heads.map((r) => r.status)).toEqual(heads.map(() => 200));
    expect(heads[0]?.headers.get("content-type")).toMatch(/^text\/event-stream/);
    expect(await metric(server, "waitroom_sse_streams")).toBe(before);
    const wrong = await fetch(`${server.url}/v1/tickets/${ticket.ticket_id}/events?token=nope`, { method: "HEAD" });
    expect(wrong.status).toBe(404);
  });
});
