import { afterAll, describe, expect, it } from "vitest";
import { createSql, type Sql } from "../../src/db/client.js";
import { useTestDatabase } from "../helpers/database.js";
import { eventually } from "../helpers/eventually.js";
import { createRoom, type Joined, waitForLockWaiters } from "../helpers/queue.js";

/*
 * Depth counts tickets, not numbers drawn: a sequence does not roll back, so
 * joins that drew a number and then rolled back, or whose backend died
 * mid-join, must leave depth equal to the tickets queued.
 */

const db = useTestDatabase();

const clients: Sql[] = [];
afterAll(async () => {
  await Promise.all(clients.map((sql) => sql.end({ timeout: 5 })));
});

/** A connection of its own, to be killed. */
function ownConnection(): Sql {
  const sql = createSql(db.url, { max: 1 });
  clients.push(sql);
  return sql;
}

async function depthAndQueued(room: string): Promise<{ depth: number; queued: number; stats: number }> {
  const [row] = await db.sql<{ depth: number; queued: number; stats: number }[]>`
    select waitroom._depth(${room})::int as depth,
           (select count(*)::int from waitroom.tickets where room_id = ${room} and status = 'queued') as queued,
           (select queued::int from waitroom.room_stats where room_id = ${room}) as stats`;
  if (!row) throw new Error("no row");
  return row;
}

class Abort extends Error {}

/** Run `joins` in a transaction that draws its numbers and then rolls back. */
async function aborted(joins: (tx: Sql) => Promise<unknown>): Promise<void> {
  const outcome = await db.sql
    .begin(async (tx) => {
      await joins(tx as unknown as Sql);
      throw new Abort();
    })
    .catch((error: unknown) => error);
  expect(outcome).toBeInstanceOf(Abort);
}

async function pidOf(sql: Sql): Promise<number> {
  const [row] = await sql<{ pid: number }[]>`select pg_backend_pid() as pid`;
  if (!row) throw new Error("no pid");
  return row.pid;
}

describe("depth", () => {
  it("equals the queued tickets after joins that drew their numbers and rolled back", async () => {
    const room = await createRoom(db.sql, 0);
    await db.sql`select * from waitroom.join(${room})`;
    await aborted((tx) => tx`select * from waitroom.join(${room})`);
    await aborted((tx) => tx`select * from waitroom.join(${room}, 'ada')`);
    await aborted((tx) => tx`select * from waitroom.join_many(${room}, 50)`);
    await aborted((tx) => tx`select * from waitroom.join_many(${room}, 3, array['bo', null, 'cy'])`);
    await db.sql`select * from waitroom.join_many(${room}, 2, array['di', null])`;

    expect(await depthAndQueued(room)).toEqual({ depth: 3, queued: 3, stats: 3 });
    // A fresh FIFO ticket's position is depth: it is the fourth, not the 58th.
    const [next] = await db.sql<Joined[]>`select * from waitroom.join(${room})`;
    expect(next).toMatchObject({ position: 4, depth: 4 });
  });

  it("equals the queued tickets after backends killed mid-join", async () => {
    const room = await createRoom(db.sql, 0);
    await db.sql`select * from waitroom.join(${room})`;

    // Killed inside a join: it drew its number and waits on a concurrent join of the same holder.
    const winner = await db.sql.reserve();
    const blocked = ownConnection();
    try {
      await winner`begin`;
      await winner`select * from waitroom.join(${room}, 'bob')`;
      const victim = blocked`select * from waitroom.join(${room}, 'bob')`.catch((error: unknown) => error);
      expect(await waitForLockWaiters(db.sql, "waitroom.join", 1)).toBe(1);
      const [waiting] = await db.sql<{ pid: number }[]>`
        select pid from pg_stat_activity
         where datname = current_database() and wait_event_type = 'Lock' and position('waitroom.join' in query) > 0`;
      await db.sql`select pg_terminate_backend(${waiting?.pid ?? -1})`;
      expect(await victim).toBeInstanceOf(Error);
      await winner`commit`;
    } finally {
      winner.release();
    }

    // Killed after its joins, before it could commit them.
    const open = ownConnection();
    const openPid = await pidOf(open);
    // One connection (max 1), so a plain BEGIN holds for the statements that follow.
    await open`begin`;
    await open`select * from waitroom.join(${room})`;
    await open`select * from waitroom.join_many(${room}, 20)`;
    const pending = open`select pg_sleep(3600)`.catch((error: unknown) => error);
    await eventually(async () => {
      const [row] = await db.sql<{ sleeping: boolean }[]>`
        select exists (select from pg_stat_activity where pid = ${openPid} and query like '%pg_sleep%') as sleeping`;
      return row?.sleeping === true;
    }, "the victim's joins are done and it sleeps in their transaction");
    await db.sql`select pg_terminate_backend(${openPid})`;
    expect(await pending).toBeInstanceOf(Error);

    // The first anonymous ticket and bob's.
    expect(await depthAndQueued(room)).toEqual({ depth: 2, queued: 2, stats: 2 });
  });
});
