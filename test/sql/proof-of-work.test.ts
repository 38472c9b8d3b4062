/*
 * proof_of_work_bits: join_many holds the HTTP layer's joins to the room's
 * difficulty as of its statement (p_weakest_proof: the fewest bits a batch's
 * verified proofs showed, null when none is held to it). A refused batch
 * writes nothing; SQL callers and rooms without the setting are unaffected.
 */
import { describe, expect, it } from "vitest";
import { useTestDatabase } from "../helpers/database.js";
import { at, createRoom, join } from "../helpers/queue.js";

const db = useTestDatabase();

async function sqlState(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
  } catch (error) {
    return (error as { code?: string }).code;
  }
  return undefined;
}

const joinMany = (room: string, count: number, weakest: number | null) =>
  db.sql`select * from waitroom.join_many(${room}, ${count}, p_now => ${at(0)}, p_weakest_proof => ${weakest}::integer)`;

const tickets = async (room: string) =>
  Number((await db.sql<{ n: string }[]>`select count(*) as n from waitroom.tickets where room_id = ${room}`)[0]?.n);

describe("proof_of_work_bits", () => {
  it("refuses a batch whose weakest proof is below the room's bits with WRPOW, writing nothing", async () => {
    const room = await createRoom(db.sql, 1, { proof_of_work_bits: 12 });
    expect(await sqlState(joinMany(room, 3, 0))).toBe("WRPOW");
    expect(await sqlState(joinMany(room, 3, 11))).toBe("WRPOW");
    expect(await tickets(room)).toBe(0);
    expect(await joinMany(room, 2, 12)).toHaveLength(2);
    expect(await joinMany(room, 1, 20)).toHaveLength(1);
    expect(await tickets(room)).toBe(3);
  });

  it("holds nobody to it without p_weakest_proof, nor in a room without it", async () => {
    const room = await createRoom(db.sql, 1, { proof_of_work_bits: 24 });
    expect(await joinMany(room, 2, null)).toHaveLength(2);
    await join(db.sql, room);
    const open = await createRoom(db.sql, 1);
    expect(await joinMany(open, 2, 0)).toHaveLength(2);
    expect(await tickets(room)).toBe(3);
  });

  it("is a room setting from 1 to 24 bits, answered by proof_of_work_bits()", async () => {
    const room = await createRoom(db.sql, 1, { proof_of_work_bits: 16 });
    const bits = async (id: string) =>
      (await db.sql<{ bits: number | null }[]>`select waitroom.proof_of_work_bits(${id}) as bits`)[0]?.bits;
    expect(await bits(room)).toBe(16);
    for (const bad of [0, 25, "many"]) {
      expect(
        await sqlState(db.sql`select waitroom.configure_room(${room}, ${db.sql.json({ proof_of_work_bits: bad })})`),
      ).toBe("WR400");
    }
    await db.sql`select waitroom.configure_room(${room}, '{"proof_of_work_bits": null}')`;
    expect(await bits(room)).toBeNull();
    expect(await sqlState(db.sql`select waitroom.proof_of_work_bits('no-such-room')`)).toBe("WR404");
  });

  it("signs with one key of at least 32 bytes, the same for every caller", async () => {
    const [first] = await db.sql<{ secret: Buffer }[]>`select waitroom.proof_of_work_secret() as secret`;
    const [second] = await db.sql<{ secret: Buffer }[]>`select waitroom.proof_of_work_secret() as secret`;
    expect(first?.secret.length).toBeGreaterThanOrEqual(32);
    expect(first?.secret.equals(second?.secret as Buffer)).toBe(true);
  });
});
