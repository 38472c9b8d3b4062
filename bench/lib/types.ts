import type { Logger } from "../../src/log.js";
import type { Pgbench } from "./pgbench.js";
import type { BenchServer } from "./server.js";

/** full: the figures BENCHMARKS.md reports; quick: a seconds-long smoke run for CI. */
export type Mode = "full" | "quick";

export type BenchContext = {
  mode: Mode;
  /** Shared by all benchmarks; each creates its own database on it. */
  server: BenchServer;
  pgbench: Pgbench;
  /** Aborted on the run's deadline or on SIGINT/SIGTERM. */
  signal: AbortSignal;
  log: Logger;
  /** Progress for the person watching (stderr), kept apart from the results on stdout. */
  say: (line: string) => void;
};

export type BenchReport<Figures = unknown> = {
  /** Plain-text table for stdout. */
  console: string;
  /** This benchmark's section of BENCHMARKS.md, starting with a "## " heading. */
  markdown: string;
  /** Machine-readable figures, printed in the final JSON line. */
  figures: Figures;
};

/** One module per benchmark; run.ts runs them in order and assembles their sections. */
export type Benchmark<Figures = unknown> = {
  id: string;
  title: string;
  run(context: BenchContext): Promise<BenchReport<Figures>>;
};
