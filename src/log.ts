import { Logger as GraphileLogger } from "graphile-worker";
import { pino } from "pino";

export type Logger = pino.Logger;

/** Structured JSON logs on stdout. */
export function createLogger(level: string): Logger {
  return pino({ level, base: { service: "waitroom" } });
}

/** pino's level for each of graphile-worker's: its per-job "info" lines are debug detail here. */
const workerLevels = { error: "error", warning: "warn", info: "debug", debug: "debug" } as const;

/** graphile-worker's logger, writing through ours. */
export function workerLogger(log: Logger): GraphileLogger {
  return new GraphileLogger((scope) => (level, message, meta) => {
    log[workerLevels[level]]({ worker: scope, ...meta }, message);
  });
}
