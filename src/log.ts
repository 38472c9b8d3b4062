import { Logger as GraphileLogger } from "graphile-worker";
import { pino } from "pino";

export type Logger = pino.Logger;

/** Error classes that mean a bug in this code: their stack is the point of logging them. */
const bugClasses = new Set(["TypeError", "ReferenceError", "RangeError", "SyntaxError"]);

/** Fields of a database or system error that say what went wrong (pg, postgres.js and Node all use these). */
const telling = ["code", "severity", "detail", "hint", "syscall", "address", "port"] as const;

export type ErrorSummary = { type: string; message: string; cause?: string; stack?: string } & Partial<
  Record<(typeof telling)[number], string | number>
>;

/**
 * An error as one short record: what it is and why, never the objects it drags along (a pg error's
 * client, a postgres.js error's query parameters, a graphile-worker job), and a stack only for a bug.
 */
export function summarizeError(value: unknown): ErrorSummary | unknown {
  if (!(value instanceof Error)) return value;
  const summary: ErrorSummary = {
    type: value.constructor.name === "Error" ? value.name : value.constructor.name,
    message: value.message,
  };
  const fields = value as unknown as Record<string, unknown>;
  for (const field of telling) {
    const found = fields[field];
    if (typeof found === "string" || typeof found === "number") summary[field] = found;
  }
  if (value.cause instanceof Error) summary.cause = `${value.cause.name}: ${value.cause.message}`;
  if (bugClasses.has(value.name) && value.stack) summary.stack = value.stack;
  return summary;
}

/** Structured JSON logs on stdout, one line per event, errors summarised (`err`, `error`). */
export function createLogger(level: string): Logger {
  return pino({ level, base: { service: "waitroom" }, serializers: { err: summarizeError, error: summarizeError } });
}

/** pino's level for each of graphile-worker's: its per-job "info" lines are debug detail here. */
const workerLevels = { error: "error", warning: "warn", info: "debug", debug: "debug" } as const;

/** graphile-worker's logger, writing through ours; its errors (under any key) summarised like ours. */
export function workerLogger(log: Logger): GraphileLogger {
  return new GraphileLogger((scope) => (level, message, meta) => {
    const fields = Object.fromEntries(Object.entries(meta ?? {}).map(([key, value]) => [key, summarizeError(value)]));
    log[workerLevels[level]]({ worker: scope, ...fields }, message);
  });
}
