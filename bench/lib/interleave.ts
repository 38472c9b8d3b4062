/*
 * Interleaving (A, B, C, A, B, C, …) rather than running each workload's
 * rounds back to back: on a shared machine load drifts over minutes, and
 * interleaving spreads that drift over every workload instead of handing it
 * to whichever ran last.
 */

export type RoundProgress<W extends string, R> = { workload: W; round: number; rounds: number; result: R };

export async function runInterleaved<W extends string, R>(options: {
  workloads: readonly W[];
  rounds: number;
  /** The order of a round's runs (the workloads, rearranged); default: as listed in every round. */
  orderOf?: (round: number) => readonly W[];
  measure: (workload: W, round: number) => Promise<R>;
  onResult?: (progress: RoundProgress<W, R>) => void;
}): Promise<Record<W, R[]>> {
  const results = Object.fromEntries(options.workloads.map((workload) => [workload, [] as R[]])) as Record<W, R[]>;
  for (let round = 1; round <= options.rounds; round++) {
    for (const workload of options.orderOf?.(round) ?? options.workloads) {
      const result = await options.measure(workload, round);
      results[workload].push(result);
      options.onResult?.({ workload, round, rounds: options.rounds, result });
    }
  }
  return results;
}
