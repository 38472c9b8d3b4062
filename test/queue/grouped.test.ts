import { describe, expect, it } from "vitest";
import { createGroupedQueue } from "../../src/queue/grouped.js";
import { useTestDatabase } from "../helpers/database.js";
import { createRoom } from "../helpers/queue.js";

/*
 * Natural group commit: while a room's batch of joins is in the database, the
 * joins arriving for that room gather into the next batch instead of going
 * out in batches of their own.
 */

const db = useTestDatabase({ max: 12 });

const settings = { maxJoinBatch: 500, maxReadBatch: 1000, maxReadsInFlight: 2 };

/** Resolves once a join_many waits on a lock in the database (this file's tests run one at a time). */
async function waitingJoin(): Promise<void> {
  for (;;) {
    const [row] = await db.sql<{ waiting: number }[]>`
      select count(*)::int as waiting from pg_stat_activity
       where wait_event_type = 'Lock' and query like '%join_many%' and pid <> pg_backend_pid()`;
    if ((row?.waiting ?? 0) > 0) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
}

async function rush(maxJoinsInFlight: number): Promise<number[]> {
  const room = await createRoom(db.sql, 0, { idle_seconds: 3600 });
  const sizes: number[] = [];
  const grouped = createGroupedQueue(db.sql, { ...settings, maxJoinsInFlight }, (kind, size) => {
    if (kind === "join") sizes.push(size);
  });
  const blocker = await db.sql.reserve();
  try {
    // The first batch's insert waits behind this lock: the contention is real, and seen below.
    await blocker`begin`;
    await blocker`lock table waitroom.tickets in share mode`;
    const first = grouped.join(room, {});
    await waitingJoin();
    const rest = Array.from({ length: 30 }, () => grouped.join(room, {}));
    // The batcher flushes after this turn's I/O: by the next macrotask it has sent what it may.
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setTimeout(resolve, 0));
    const sentWhileBlocked = [...sizes];
    await blocker`rollback`;
    const joined = await Promise.all([first, ...rest]);
    expect(new Set(joined.map((j) => j.ticket_id)).size).toBe(31);
    return sentWhileBlocked;
  } finally {
    blocker.release();
  }
}

describe("grouped joins", () => {
  it("sends one batch of a room at a time: the joins arriving while it is written gather into the next", async () => {
    expect(await rush(1)).toEqual([1]);
  });

  it("sends the next batch at once when more may be in flight", async () => {
    expect(await rush(2)).toEqual([1, 30]);
  });
});
