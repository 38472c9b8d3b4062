import { describe, expect, it } from "vitest";
import { type BatchAnswer, Batcher, KeyedBatcher } from "../../src/queue/batcher.js";

/** A run function whose batches the test answers by hand, recording what each batch held. */
function controlledRun() {
  const batches: { inputs: number[]; answer: (answers?: BatchAnswer<string>[]) => void; fail: (e: Error) => void }[] =
    [];
  const waiters: (() => void)[] = [];
  const run = (inputs: number[]) =>
    new Promise<BatchAnswer<string>[]>((resolve, reject) => {
      batches.push({
        inputs,
        answer: (answers) => resolve(answers ?? inputs.map((n) => ({ ok: true, value: `#${n}` }))),
        fail: reject,
      });
      for (const wake of waiters.splice(0)) wake();
    });
  /** Resolves once `count` batches have been sent. */
  const sent = async (count: number) => {
    while (batches.length < count) await new Promise<void>((resolve) => waiters.push(resolve));
    return batches;
  };
  return { run, batches, sent };
}

describe("Batcher", () => {
  it("sends a call that arrives alone at once, in a batch of one", async () => {
    const { run, sent } = controlledRun();
    const batcher = new Batcher(run, { maxBatch: 100, maxInFlight: 1 });
    const answer = batcher.submit(7);
    const [batch] = await sent(1);
    expect(batch?.inputs).toEqual([7]);
    batch?.answer();
    expect(await answer).toBe("#7");
  });

  it("puts calls of the same turn in one batch, and calls arriving while it is in flight in the next", async () => {
    const { run, sent } = controlledRun();
    const sizes: number[] = [];
    const batcher = new Batcher(run, { maxBatch: 100, maxInFlight: 1, onBatch: (size) => sizes.push(size) });
    const firstTurn = [1, 2, 3].map((n) => batcher.submit(n));
    const [first] = await sent(1);
    const meanwhile = [4, 5, 6, 7].map((n) => batcher.submit(n));
    // In flight: nothing more is sent until the first batch is answered.
    await new Promise((resolve) => setImmediate(resolve));
    expect((await sent(1)).length).toBe(1);
    first?.answer();
    const [, second] = await sent(2);
    expect(first?.inputs).toEqual([1, 2, 3]);
    expect(second?.inputs).toEqual([4, 5, 6, 7]);
    second?.answer();
    expect(await Promise.all([...firstTurn, ...meanwhile])).toEqual(["#1", "#2", "#3", "#4", "#5", "#6", "#7"]);
    expect(sizes).toEqual([3, 4]);
  });

  it("never sends more than maxBatch calls at once nor more than maxInFlight batches", async () => {
    const { run, batches, sent } = controlledRun();
    const batcher = new Batcher(run, { maxBatch: 2, maxInFlight: 2 });
    const answers = [1, 2, 3, 4, 5].map((n) => batcher.submit(n));
    await sent(2);
    await new Promise((resolve) => setImmediate(resolve));
    expect(batches.map((b) => b.inputs)).toEqual([
      [1, 2],
      [3, 4],
    ]);
    batches[0]?.answer();
    await sent(3);
    expect(batches[2]?.inputs).toEqual([5]);
    batches[1]?.answer();
    batches[2]?.answer();
    expect(await Promise.all(answers)).toEqual(["#1", "#2", "#3", "#4", "#5"]);
  });

  it("fails every call of a batch whose run throws, and only those", async () => {
    const { run, sent } = controlledRun();
    const batcher = new Batcher(run, { maxBatch: 2, maxInFlight: 2 });
    const answers = [1, 2, 3].map((n) => batcher.submit(n).catch((error: Error) => error.message));
    const [first, second] = await sent(2);
    first?.fail(new Error("statement failed"));
    second?.answer();
    expect(await Promise.all(answers)).toEqual(["statement failed", "statement failed", "#3"]);
  });

  it("gives each call its own answer, an error for one call failing that call alone", async () => {
    const { run, sent } = controlledRun();
    const batcher = new Batcher(run, { maxBatch: 10, maxInFlight: 1 });
    const answers = [1, 2].map((n) => batcher.submit(n).catch((error: Error) => error.message));
    const [batch] = await sent(1);
    batch?.answer([
      { ok: false, error: new Error("bad holder") },
      { ok: true, value: "fine" },
    ]);
    expect(await Promise.all(answers)).toEqual(["bad holder", "fine"]);
  });

  it("fails the calls a run leaves unanswered instead of leaving them hanging", async () => {
    const { run, sent } = controlledRun();
    const batcher = new Batcher(run, { maxBatch: 10, maxInFlight: 1 });
    const answers = [1, 2].map((n) => batcher.submit(n).catch((error: Error) => error.message));
    const [batch] = await sent(1);
    batch?.answer([{ ok: true, value: "only one" }]);
    expect(await Promise.all(answers)).toEqual(["only one", "batch answered 1 of 2 calls"]);
  });
});

/** A clock the test moves, and the timers the batcher asked for, fired by hand. */
function handClock() {
  let now = 0;
  const timers: { at: number; run: () => void }[] = [];
  return {
    clock: { now: () => now, after: (ms: number, run: () => void) => void timers.push({ at: now + ms, run }) },
    timers,
    set: (ms: number) => {
      now = ms;
    },
    /** Moves to the next timer's time and fires it. */
    fireNext: () => {
      const timer = timers.shift();
      if (!timer) throw new Error("no timer pending");
      now = timer.at;
      timer.run();
    },
  };
}

describe("Batcher, paced", () => {
  it("starts the next batch no sooner than pace × the last batch's duration after it started", async () => {
    const { run, batches, sent } = controlledRun();
    const time = handClock();
    const batcher = new Batcher(run, { maxBatch: 100, maxInFlight: 2, pace: 4, clock: time.clock });
    const first = batcher.submit(1);
    await sent(1);
    // The first batch took 20 ms: the next may start at 4 × 20 = 80 ms after it started.
    time.set(20);
    batches[0]?.answer();
    expect(await first).toBe("#1");
    time.set(30);
    const trickle = [2, 3].map((n) => batcher.submit(n));
    await new Promise((resolve) => setImmediate(resolve));
    expect(batches).toHaveLength(1);
    expect(time.timers.map((timer) => timer.at)).toEqual([80]);
    const later = [4, 5].map((n) => batcher.submit(n));
    time.fireNext();
    const [, second] = await sent(2);
    // Everything that arrived while it waited went together, in one batch instead of two.
    expect(second?.inputs).toEqual([2, 3, 4, 5]);
    second?.answer();
    expect(await Promise.all([...trickle, ...later])).toEqual(["#2", "#3", "#4", "#5"]);
  });

  it("waits at most paceLimitMs however long the last batch took", async () => {
    const { run, batches, sent } = controlledRun();
    const time = handClock();
    const batcher = new Batcher(run, { maxBatch: 100, maxInFlight: 2, pace: 4, paceLimitMs: 100, clock: time.clock });
    const first = batcher.submit(1);
    await sent(1);
    // A large batch took 1 s, mostly for its own rows.
    time.set(1_000);
    batches[0]?.answer();
    await first;
    const second = batcher.submit(2);
    await sent(2);
    // With the second in flight, the third waits 100 ms after the second started, not 4 × 1 s.
    time.set(1_020);
    const third = batcher.submit(3);
    await new Promise((resolve) => setImmediate(resolve));
    expect(time.timers.map((timer) => timer.at)).toEqual([1_100]);
    time.fireNext();
    await sent(3);
    batches[1]?.answer();
    batches[2]?.answer();
    expect(await Promise.all([second, third])).toEqual(["#2", "#3"]);
  });

  it("sends a call after a quiet spell at once", async () => {
    const { run, batches, sent } = controlledRun();
    const time = handClock();
    const batcher = new Batcher(run, { maxBatch: 100, maxInFlight: 1, pace: 4, clock: time.clock });
    const first = batcher.submit(1);
    await sent(1);
    time.set(20);
    batches[0]?.answer();
    await first;
    // 80 ms after the last batch started, its fixed cost is paid for: no wait.
    time.set(80);
    const second = batcher.submit(2);
    await sent(2);
    expect(time.timers).toEqual([]);
    batches[1]?.answer();
    expect(await second).toBe("#2");
  });
});

describe("KeyedBatcher", () => {
  it("batches per key and keeps no batcher once its work is done", async () => {
    const seen: { key: string; inputs: number[] }[] = [];
    const keyed = new KeyedBatcher<number, string>(
      async (key, inputs) => {
        seen.push({ key, inputs });
        return inputs.map((n) => ({ ok: true, value: `${key}${n}` }));
      },
      { maxBatch: 10, maxInFlight: 1 },
    );
    const answers = [keyed.submit("a", 1), keyed.submit("b", 2), keyed.submit("a", 3)];
    expect(keyed.size).toBe(2);
    expect(await Promise.all(answers)).toEqual(["a1", "b2", "a3"]);
    expect(seen).toEqual([
      { key: "a", inputs: [1, 3] },
      { key: "b", inputs: [2] },
    ]);
    // Keys come from requests: a thousand unknown rooms must not leave a thousand batchers behind.
    await new Promise((resolve) => setImmediate(resolve));
    expect(keyed.size).toBe(0);
  });
});
