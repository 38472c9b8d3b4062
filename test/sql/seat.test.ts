import { describe, expect, it } from "vitest";
import { useTestDatabase } from "../helpers/database.js";
import { admit, at, createRoom, eventTypes, join, ticketRow, verdict } from "../helpers/queue.js";

const db = useTestDatabase();

/** A room with one ticket admitted at t=0 (claim by 10 s, session 60 s, grace 5 s, idle 30 s). */
async function admittedTicket(settings: Record<string, unknown> = {}) {
  const room = await createRoom(db.sql, 1, {
    claim_seconds: 10,
    session_seconds: 60,
    grace_seconds: 5,
    idle_seconds: 30,
    ...settings,
  });
  const ticket = await join(db.sql, room);
  await admit(db.sql, room, at(0));
  return { room, ticket };
}

async function snapshot(room: string) {
  return db.sql`
    select t.*, (select count(*)::int from waitroom.events e where e.room_id = t.room_id) as events
      from waitroom.tickets t where t.room_id = ${room} order by t.seq`;
}

describe("claim", () => {
  it("turns an offer into an active seat until now + session_seconds", async () => {
    const { ticket } = await admittedTicket();
    expect(await verdict(db.sql, "claim", ticket, at(9.999))).toEqual({
      ok: true,
      code: "ok",
      status: "active",
      expires_at: at(69.999),
      // What the admission token carries; an anonymous ticket has no holder.
      holder: null,
      room_id: expect.any(String),
      instance: 1,
    });
    expect(await ticketRow(db.sql, ticket.ticket_id)).toMatchObject({ status: "active", claimed_at: at(9.999) });
    expect(await eventTypes(db.sql, ticket.ticket_id)).toEqual(["joined", "admitted", "active"]);
  });

  it("fails once the claim deadline has passed, even before sweep records it", async () => {
    const { ticket } = await admittedTicket();
    expect(await verdict(db.sql, "claim", ticket, at(10))).toMatchObject({ ok: false, code: "expired" });
  });

  it("answers a retried claim by the current token with the same seat, writing nothing", async () => {
    const { room, ticket } = await admittedTicket();
    const first = await verdict(db.sql, "claim", ticket, at(1));
    const before = await snapshot(room);
    // While active, and while draining (the seat's end has passed, grace has not).
    for (const [now, status] of [
      [at(2), "active"],
      [at(60.5), "active"],
      [at(61), "draining"],
    ] as const) {
      expect(await verdict(db.sql, "claim", ticket, now)).toEqual({ ...first, status });
    }
    expect(await snapshot(room)).toEqual(before);
    expect(await eventTypes(db.sql, ticket.ticket_id)).toEqual(["joined", "admitted", "active"]);
  });

  it("still refuses a superseded token once the holder re-joined, and answers the new token's seat", async () => {
    const room = await createRoom(db.sql, 1, { claim_seconds: 10, session_seconds: 60 });
    const old = await join(db.sql, room, { holder: "ada" });
    await admit(db.sql, room, at(0));
    const claimed = await verdict(db.sql, "claim", old, at(1));
    const rejoined = await join(db.sql, room, { holder: "ada", now: at(2) });
    expect(await verdict(db.sql, "claim", old, at(3))).toMatchObject({ ok: false, code: "superseded", instance: null });
    expect(await verdict(db.sql, "claim", rejoined, at(3))).toMatchObject({
      ok: true,
      status: "active",
      expires_at: claimed.expires_at,
      holder: "ada",
      instance: 2,
    });
  });

  it("ends its answers with the seat: a claim after grace answers ended", async () => {
    const { ticket } = await admittedTicket();
    await verdict(db.sql, "claim", ticket, at(1));
    expect(await verdict(db.sql, "claim", ticket, at(66))).toMatchObject({ ok: false, code: "ended" });
  });

  it("answers queued before admission", async () => {
    const room = await createRoom(db.sql, 1);
    const ticket = await join(db.sql, room);
    expect(await verdict(db.sql, "claim", ticket, at(1))).toMatchObject({ ok: false, code: "queued" });
  });

  it("with a wrong token or ticket answers unknown and changes nothing", async () => {
    const { room, ticket } = await admittedTicket();
    const before = await snapshot(room);
    for (const verb of ["claim", "heartbeat", "leave", "check"] as const) {
      expect(await verdict(db.sql, verb, { ...ticket, token: `${ticket.token}x` }, at(1))).toEqual({
        ok: false,
        code: "unknown",
        status: null,
        expires_at: null,
        // claim tells only its winner what an admission token carries.
        ...(verb === "claim" ? { holder: null, room_id: null, instance: null } : {}),
      });
      expect(
        await verdict(db.sql, verb, { ticket_id: "00000000-0000-4000-8000-000000000000", token: ticket.token }, at(1)),
      ).toMatchObject({ ok: false, code: "unknown", status: null });
    }
    expect(await snapshot(room)).toEqual(before);
  });
});

describe("check", () => {
  it("says ok only while the seat is active, then draining, then ended", async () => {
    const { ticket } = await admittedTicket();
    expect(await verdict(db.sql, "check", ticket, at(1))).toMatchObject({
      ok: false,
      code: "not_claimed",
      expires_at: at(10),
    });
    await verdict(db.sql, "claim", ticket, at(1));
    expect(await verdict(db.sql, "check", ticket, at(60.999))).toMatchObject({ ok: true, code: "ok" });
    expect(await verdict(db.sql, "check", ticket, at(61))).toMatchObject({
      ok: false,
      code: "draining",
      expires_at: at(61),
    });
    expect(await verdict(db.sql, "check", ticket, at(65.999))).toMatchObject({ code: "draining" });
    expect(await verdict(db.sql, "check", ticket, at(66))).toMatchObject({ ok: false, code: "ended" });
  });

  it("says queued, then expired for an idle queued ticket", async () => {
    const room = await createRoom(db.sql, 0, { idle_seconds: 30 });
    const ticket = await join(db.sql, room);
    expect(await verdict(db.sql, "check", ticket, at(29.999))).toMatchObject({ code: "queued", status: "queued" });
    expect(await verdict(db.sql, "check", ticket, at(30))).toMatchObject({ code: "expired", status: "expired" });
  });

  it("changes nothing", async () => {
    const { room, ticket } = await admittedTicket();
    const before = await snapshot(room);
    await verdict(db.sql, "check", ticket, at(100));
    expect(await snapshot(room)).toEqual(before);
  });
});

describe("heartbeat", () => {
  it("keeps a queued ticket from going idle", async () => {
    const room = await createRoom(db.sql, 0, { idle_seconds: 30 });
    const ticket = await join(db.sql, room);
    expect(await verdict(db.sql, "heartbeat", ticket, at(29))).toMatchObject({
      ok: true,
      code: "ok",
      status: "queued",
    });
    expect(await verdict(db.sql, "check", ticket, at(58.999))).toMatchObject({ code: "queued" });
    expect(await verdict(db.sql, "check", ticket, at(59))).toMatchObject({ code: "expired" });
  });

  it("does not revive a ticket that already went idle", async () => {
    const room = await createRoom(db.sql, 0, { idle_seconds: 30 });
    const ticket = await join(db.sql, room);
    expect(await verdict(db.sql, "heartbeat", ticket, at(30))).toMatchObject({ ok: false, code: "expired" });
    expect(await ticketRow(db.sql, ticket.ticket_id)).toMatchObject({ last_seen_at: at(0) });
  });

  it("renews an active seat where the room allows it, not past expiry", async () => {
    const { ticket } = await admittedTicket();
    await verdict(db.sql, "claim", ticket, at(0));
    expect(await verdict(db.sql, "heartbeat", ticket, at(50))).toMatchObject({ ok: true, expires_at: at(110) });
    expect(await verdict(db.sql, "heartbeat", ticket, at(110))).toMatchObject({ ok: false, code: "draining" });
    expect(await ticketRow(db.sql, ticket.ticket_id)).toMatchObject({ expires_at: at(110) });
  });

  it("does not renew when renew_on_heartbeat is off", async () => {
    const { ticket } = await admittedTicket({ renew_on_heartbeat: false });
    await verdict(db.sql, "claim", ticket, at(0));
    expect(await verdict(db.sql, "heartbeat", ticket, at(50))).toMatchObject({ ok: true, expires_at: at(60) });
  });
});

describe("leave", () => {
  it.each([
    ["queued", async () => {}],
    ["admitted", async (room: string) => void (await admit(db.sql, room, at(0)))],
  ])("releases a %s ticket at once and only once", async (from, prepare) => {
    const room = await createRoom(db.sql, 1);
    const ticket = await join(db.sql, room);
    await prepare(room);
    expect(await verdict(db.sql, "leave", ticket, at(1))).toEqual({
      ok: true,
      code: "ok",
      status: "left",
      expires_at: null,
    });
    expect(await verdict(db.sql, "leave", ticket, at(2))).toMatchObject({ ok: false, code: "left" });
    expect(await verdict(db.sql, "check", ticket, at(2))).toMatchObject({ ok: false, code: "left" });
    const [stats] = await db.sql`select queued, admitted, free_seats from waitroom.room_stats where room_id = ${room}`;
    expect(stats).toMatchObject({ queued: 0, admitted: 0, free_seats: 1 });
    const [event] =
      await db.sql`select data from waitroom.events where ticket_id = ${ticket.ticket_id} and type = 'left'`;
    expect(event?.data).toEqual({ from });
  });

  it("frees an active seat for the next ticket", async () => {
    const { room, ticket } = await admittedTicket();
    const next = await join(db.sql, room);
    await verdict(db.sql, "claim", ticket, at(1));
    expect(await admit(db.sql, room, at(2))).toEqual([]);
    await verdict(db.sql, "leave", ticket, at(3));
    expect(await admit(db.sql, room, at(4))).toEqual([next.ticket_id]);
  });

  it("of a lapsed offer answers expired", async () => {
    const { ticket } = await admittedTicket();
    expect(await verdict(db.sql, "leave", ticket, at(10))).toMatchObject({ ok: false, code: "expired" });
  });
});
