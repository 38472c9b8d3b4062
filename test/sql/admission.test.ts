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
