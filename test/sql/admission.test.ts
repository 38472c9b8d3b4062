import { randomUUID } from "node:crypto";
import { calculateJwkThumbprint, exportJWK, generateKeyPair } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { useTestDatabase } from "../helpers/database.js";
import { admit, at, createRoom, type Joined, join, ticketRow, type Verdict, verdict } from "../helpers/queue.js";

const db = useTestDatabase();

/** A live signing key's kid (the key that signed the tokens checked here). */
async function addKey(): Promise<string> {
  const { publicKey, privateKey } = await generateKeyPair("EdDSA", { crv: "Ed25519", extractable: true });
  const publicJwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(publicJwk);
  const privateJwk = await exportJWK(privateKey);
  await db.sql`select waitroom.add_signing_key(${kid}, ${db.sql.json(publicJwk)}, ${db.sql.json(privateJwk)}, true)`;
  return kid;
}

let liveKid = "";
beforeAll(async () => {
  liveKid = await addKey();
});

async function checkAdmission(ticketId: string, instance: number | null, now: Date, kid = liveKid): Promise<Verdict> {
  const [row] = await db.sql<Verdict[]>`
    select * from waitroom.check_admission(${ticketId}::uuid, ${instance}::integer, ${kid}, ${now})`;
  if (!row) throw new Error("check_admission returned no row");
  return row;
}

/** A holder's ticket admitted at t=0 (claim by 10 s, session 60 s, grace 5 s). */
async function admittedTicket(holder: string | undefined = "user-1"): Promise<{ room: string; ticket: Joined }> {
  const room = await createRoom(db.sql, 1, { claim_seconds: 10, session_seconds: 60, grace_seconds: 5 });
  const ticket = await join(db.sql, room, { holder });
  await admit(db.sql, room, at(0));
  return { room, ticket };
}

describe("check_admission", () => {
  it("refuses the tokens of a revoked key, and of a key no longer kept, at once", async () => {
    const { ticket } = await admittedTicket();
    await verdict(db.sql, "claim", ticket, at(1));
    const revoked = await addKey();
    expect(await checkAdmission(ticket.ticket_id, 1, at(2), revoked)).toMatchObject({ ok: true });
    await db.sql`select waitroom.revoke_signing_key(${revoked})`;
    expect(await checkAdmission(ticket.ticket_id, 1, at(2), revoked)).toEqual({
      ok: false,
      code: "key_revoked",
      status: null,
      expires_at: null,
    });
    expect(await checkAdmission(ticket.ticket_id, 1, at(2), "A".repeat(43))).toMatchObject({ code: "key_revoked" });
  });

  it("says ok for an active claimed seat, like check with the bearer token", async () => {
    const { ticket } = await admittedTicket();
    await verdict(db.sql, "claim", ticket, at(1));
    const expected = { ok: true, code: "ok", status: "active", expires_at: at(61) };
    expect(await checkAdmission(ticket.ticket_id, 1, at(2))).toEqual(expected);
    expect(await verdict(db.sql, "check", ticket, at(2))).toEqual(expected);
  });

  it("works for anonymous tickets", async () => {
    const { ticket } = await admittedTicket(undefined);
    await verdict(db.sql, "claim", ticket, at(1));
    expect(await checkAdmission(ticket.ticket_id, 1, at(2))).toMatchObject({ ok: true, code: "ok" });
  });

  it("says not_claimed for an admitted ticket", async () => {
    const { ticket } = await admittedTicket();
    expect(await checkAdmission(ticket.ticket_id, 1, at(1))).toEqual({
      ok: false,
      code: "not_claimed",
      status: "admitted",
      expires_at: at(10),
    });
  });

  it("says superseded once the holder re-joined, and ok for the new instance", async () => {
    const { room, ticket } = await admittedTicket();
    await verdict(db.sql, "claim", ticket, at(1));
    const again = await join(db.sql, room, { holder: "user-1", now: at(2) });
    expect(again.ticket_id).toBe(ticket.ticket_id);
    expect(await ticketRow(db.sql, ticket.ticket_id)).toMatchObject({ instance: 2 });
    expect(await checkAdmission(ticket.ticket_id, 1, at(3))).toEqual({
      ok: false,
      code: "superseded",
      status: null,
      expires_at: null,
    });
    expect(await checkAdmission(ticket.ticket_id, 2, at(3))).toMatchObject({ ok: true, code: "ok" });
  });

  it("says left after the holder left", async () => {
    const { ticket } = await admittedTicket();
    await verdict(db.sql, "claim", ticket, at(1));
    await verdict(db.sql, "leave", ticket, at(2));
    expect(await checkAdmission(ticket.ticket_id, 1, at(3))).toMatchObject({ ok: false, code: "left" });
  });

  it("follows the session's horizons exactly as check does, before any sweep", async () => {
    const { ticket } = await admittedTicket();
    await verdict(db.sql, "claim", ticket, at(1));
    const expected: [number, string][] = [
      [60.999, "ok"],
      [61, "draining"],
      [65.999, "draining"],
      [66, "ended"],
    ];
    for (const [seconds, code] of expected) {
      const answer = await checkAdmission(ticket.ticket_id, 1, at(seconds));
      expect(answer.code, `at ${seconds}s`).toBe(code);
      expect(answer).toEqual(await verdict(db.sql, "check", ticket, at(seconds)));
    }
  });

  it("says expired once an offer lapses unclaimed", async () => {
    const { ticket } = await admittedTicket();
    expect(await checkAdmission(ticket.ticket_id, 1, at(9.999))).toMatchObject({ code: "not_claimed" });
    expect(await checkAdmission(ticket.ticket_id, 1, at(10))).toMatchObject({ ok: false, code: "expired" });
  });

  it("says unknown for a ticket that does not exist or a missing instance", async () => {
    const unknown = { ok: false, code: "unknown", status: null, expires_at: null };
    expect(await checkAdmission(randomUUID(), 1, at(0))).toEqual(unknown);
    const { ticket } = await admittedTicket();
    await verdict(db.sql, "claim", ticket, at(1));
    expect(await checkAdmission(ticket.ticket_id, null, at(2))).toEqual(unknown);
  });

  it("is read-only and callable by the app role", async () => {
    const [fn] = await db.sql<{ volatile: string; definer: boolean; granted: boolean }[]>`
      select p.provolatile as volatile, p.prosecdef as definer,
             has_function_privilege('waitroom_app', p.oid, 'execute') as granted
        from pg_proc p
       where p.oid = 'waitroom.check_admission(uuid, integer, text, timestamptz)'::regprocedure`;
    expect(fn).toEqual({ volatile: "s", definer: true, granted: true });
  });
});

describe("renew_admission", () => {
  type Renewed = Verdict & { holder: string | null; room_id: string | null; instance: number | null };
  async function renew(ticketId: string, instance: number, now: Date, kid = liveKid): Promise<Renewed> {
    const [row] = await db.sql<Renewed[]>`
      select * from waitroom.renew_admission(${ticketId}::uuid, ${instance}::integer, ${kid}, ${now})`;
    if (!row) throw new Error("renew_admission returned no row");
    return row;
  }

  it("heartbeats a live seat as heartbeat does: extended with renew_on_heartbeat, and what a fresh token says", async () => {
    const { room, ticket } = await admittedTicket();
    await verdict(db.sql, "claim", ticket, at(1));
    expect(await renew(ticket.ticket_id, 1, at(40))).toEqual({
      ok: true,
      code: "ok",
      status: "active",
      expires_at: at(100),
      holder: "user-1",
      room_id: room,
      instance: 1,
    });
    expect(await ticketRow(db.sql, ticket.ticket_id)).toMatchObject({ expires_at: at(100), last_seen_at: at(40) });
    // The same seat heartbeated with its bearer token lands on the same end.
    expect(await verdict(db.sql, "heartbeat", ticket, at(40))).toMatchObject({ ok: true, expires_at: at(100) });
  });

  it("leaves the seat's end alone without renew_on_heartbeat, and refuses it once over", async () => {
    const room = await createRoom(db.sql, 1, { session_seconds: 60, grace_seconds: 5, renew_on_heartbeat: false });
    const ticket = await join(db.sql, room);
    await admit(db.sql, room, at(0));
    await verdict(db.sql, "claim", ticket, at(1));
    expect(await renew(ticket.ticket_id, 1, at(40))).toMatchObject({ ok: true, expires_at: at(61), holder: null });
    expect(await ticketRow(db.sql, ticket.ticket_id)).toMatchObject({ expires_at: at(61), last_seen_at: at(40) });
    const over = { holder: null, room_id: null, instance: null };
    expect(await renew(ticket.ticket_id, 1, at(61))).toEqual({
      ok: false,
      code: "draining",
      status: "draining",
      expires_at: at(61),
      ...over,
    });
    expect(await renew(ticket.ticket_id, 1, at(66))).toMatchObject({ ok: false, code: "ended", ...over });
  });

  it("refuses a seat left, superseded or of a revoked key, and changes nothing", async () => {
    const { room, ticket } = await admittedTicket();
    await verdict(db.sql, "claim", ticket, at(1));
    const revoked = await addKey();
    await db.sql`select waitroom.revoke_signing_key(${revoked})`;
    expect(await renew(ticket.ticket_id, 1, at(2), revoked)).toMatchObject({ ok: false, code: "key_revoked" });
    await join(db.sql, room, { holder: "user-1", now: at(3) });
    const before = await ticketRow(db.sql, ticket.ticket_id);
    expect(await renew(ticket.ticket_id, 1, at(4))).toMatchObject({ ok: false, code: "superseded", holder: null });
    expect(await ticketRow(db.sql, ticket.ticket_id)).toEqual(before);

    const other = await admittedTicket();
    await verdict(db.sql, "claim", other.ticket, at(1));
    await verdict(db.sql, "leave", other.ticket, at(2));
    expect(await renew(other.ticket.ticket_id, 1, at(3))).toMatchObject({ ok: false, code: "left" });
  });

  it("is callable by the app role, as its owner", async () => {
    const [fn] = await db.sql<{ definer: boolean; granted: boolean }[]>`
      select p.prosecdef as definer, has_function_privilege('waitroom_app', p.oid, 'execute') as granted
        from pg_proc p
       where p.oid = 'waitroom.renew_admission(uuid, integer, text, timestamptz)'::regprocedure`;
    expect(fn).toEqual({ definer: true, granted: true });
  });
});
