/** Value at quantile q (0..1) of already sorted numbers, interpolating between neighbours. */
export function quantileOfSorted(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) throw new Error("quantile of an empty list");
  const position = (sorted.length - 1) * q;
  const below = Math.floor(position);
  const above = Math.ceil(position);
  const low = sorted[below] as number;
  const high = sorted[above] as number;
  return low + (high - low) * (position - below);
}

export function quantile(values: readonly number[], q: number): number {
  return quantileOfSorted(
    [...values].sort((a, b) => a - b),
    q,
  );
}

/** Median rather than mean: one round hit by a noisy neighbour must not move the figure. */
export function median(values: readonly number[]): number {
  return quantile(values, 0.5);
}

export function range(values: readonly number[]): { min: number; max: number } {
  if (values.length === 0) throw new Error("range of an empty list");
  return { min: Math.min(...values), max: Math.max(...values) };
}

/** Round by round, one run's throughput over another's from the same round (NaN where a round is missing). */
export function tpsRatiosByRound(runs: readonly { tps: number }[], baselines: readonly { tps: number }[]): number[] {
  return runs.map((run, index) => run.tps / (baselines[index]?.tps ?? Number.NaN));
}

export type Quantiles = { p50: number; p90: number; p99: number; max: number };

/** The usual latency summary; NaN throughout for no values (a phase in which nothing arrived). */
export function quantiles(values: readonly number[]): Quantiles {
  if (values.length === 0) return { p50: Number.NaN, p90: Number.NaN, p99: Number.NaN, max: Number.NaN };
  const sorted = [...values].sort((a, b) => a - b);
  return {
    p50: quantileOfSorted(sorted, 0.5),
    p90: quantileOfSorted(sorted, 0.9),
    p99: quantileOfSorted(sorted, 0.99),
    max: sorted.at(-1) as number,
  };
}
