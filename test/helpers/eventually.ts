import { setTimeout as sleep } from "node:timers/promises";

/**
 * Polls `probe` until it yields something other than undefined or false, and returns that; fails
 * naming `what` after `timeoutMs`. For state only a query can see: where a signal exists (a stream
 * event, a NOTIFY, a log line), tests wait on the signal instead.
 */
export async function eventually<T>(
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  what: string,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
    await sleep(20);
  }
}
