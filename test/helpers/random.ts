import { onTestFailed } from "vitest";

/** mulberry32: a small seeded PRNG, so every run (test or benchmark) sees the same "random" cases. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/**
 * The PRNG of one test: seeded (TEST_SEED replays another seed), and the seed is printed when the
 * test fails. Call it inside the test.
 */
export function testRandom(defaultSeed: number): () => number {
  const seed = process.env.TEST_SEED ? Number(process.env.TEST_SEED) : defaultSeed;
  onTestFailed(() => {
    console.error(`this test's random seed was ${seed} (replay it with TEST_SEED=${seed})`);
  });
  return seededRandom(seed);
}
