import { afterEach, describe, expect, it } from "vitest";
import type { LedgerEvent } from "../../src/events/codec.js";
import { type Listener, startListener } from "../../src/events/listener.js";
import { createLogger } from "../../src/log.js";
import { createMetrics } from "../../src/metrics.js";
import { useTestDatabase } from "../helpers/database.js";

const db = useTestDatabase();
const log = createLogger("silent");

type Probe = { listener: Listener; batches: LedgerEvent[][]; gaps: Date[]; metrics: ReturnType<typeof createMetrics> };
const started: Listener[] = [];
afterEach(async () => {
  for (const listener of started.splice(0)) await listener.close();
});

function listen(options: { chunkTimeoutMs?: number } = {}): Probe {
  const metrics = createMetrics();
  const probe = { batches: [], gaps: [], metrics } as unknown as Probe;
  probe.listener = startListener({
    databaseUrl: db.url,
    log,
    metrics,
    chunkTimeoutMs: options.chunkTimeoutMs,
    onEvents: (events) => probe.batches.push(events),
    onGap: (since) => probe.gaps.push(since),
  });
  started.push(probe.listener);
  return probe;
}

async function until(check: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const event = (id: number, type = "admitted"): LedgerEvent => ({
  id,
  room_id: "r",
  ticket_id: null,
  type,
  data: { note: "é€😀".repeat(500) },
  created_at: new Date().toISOString(),
});

describe("the LISTEN connection", () => {
  it("delivers published batches, reassembled from their chunks", async () => {
    const probe = listen();
    await until(() => probe.listener.connected, "connected");
    const batch = Array.from({ length: 20 }, (_, i) => event(i + 1));
    await db.sql`select waitroom._publish(${JSON.stringify(batch)}::text::jsonb)`;
    await until(() => probe.batches.length === 1, "the batch arrives");
    expect(probe.batches[0]).toEqual(batch);
    expect(probe.gaps).toEqual([]);
  });

  it("reports a gap when a message stays incomplete", async () => {
    const probe = listen({ chunkTimeoutMs: 200 });
    await until(() => probe.listener.connected, "connected");
    await db.sql`select pg_notify('waitroom_events', '901-902:1/2:[{"id":901')`;
    await until(() => probe.gaps.length === 1, "the gap is reported");
    expect(probe.batches).toEqual([]);
    const gap = probe.gaps[0] as Date;
    // Replay reaches back before the moment the connection was last known alive.
    expect(gap.getTime()).toBeLessThan(Date.now() - 5_000);
    expect(await probe.metrics.registry.getSingleMetricAsString("waitroom_notify_incomplete_total")).toMatch(/ 1$/m);
  });

  it("reconnects after its backend is terminated, reports the gap and delivers again", async () => {
    const probe = listen();
    await until(() => probe.listener.connected, "connected");
    const firstPid = probe.listener.backendPid;
    await db.sql`select pg_terminate_backend(${firstPid})`;
    await until(() => probe.gaps.length === 1 && probe.listener.connected, "reconnected");
    expect(probe.listener.backendPid).not.toBe(firstPid);
    await db.sql`select waitroom._publish(${JSON.stringify([event(1000)])}::text::jsonb)`;
    await until(() => probe.batches.length === 1, "a batch after the reconnect");
    expect(probe.batches[0]?.[0]?.id).toBe(1000);
  });

  it("stays closed once closed", async () => {
    const probe = listen();
    await until(() => probe.listener.connected, "connected");
    await probe.listener.close();
    expect(probe.listener.connected).toBe(false);
    const [row] = await db.sql<{ n: number }[]>`
      select count(*)::int as n from pg_stat_activity
       where application_name = 'waitroom-listen' and datname = current_database()`;
    expect(row?.n).toBe(0);
  });
});
