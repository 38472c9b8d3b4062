import { reachableUrl, startBanner } from "./cli/banner.js";
import { keysCommand, keysUsage } from "./cli/keys.js";
import { ApiFailure, roomsCommand, roomsUsage, topCommand, UsageError } from "./cli/rooms.js";
import { stockCommand, stockUsage } from "./cli/stock.js";
import { type Config, ConfigError, loadConfig } from "./config/index.js";
import { openDatabase } from "./db/database.js";
import { DataDirectoryInUseError } from "./db/embedded.js";
import { migrate } from "./db/migrate.js";
import { startHttp } from "./http/server.js";
import { createLogger, type Logger } from "./log.js";
import { startWorker } from "./worker/index.js";

const usage = `usage: waitroom <command>

  start     start the database (embedded unless DATABASE_URL is set), migrate, run the
            scheduler (unless WAITROOM_WORKER=false) and serve HTTP
  worker    migrate, then run only the scheduler (admission ticks and sweeps)
  migrate   apply migrations and sql/ to the database, then exit
  rooms     manage rooms of a running service (waitroom rooms --help)
  keys      list, rotate or revoke the signing keys of a running service (waitroom keys --help)
  stock     a room's stock and the settlement of admissions, with the server key (waitroom stock --help)
  top       a live view of every room of a running service (Ctrl-C quits)

  Configuration is environment variables (README.md, "Configuration"): PORT, HOST,
  DATABASE_URL, WAITROOM_DATA_DIR, WAITROOM_ADMIN_KEY, LOG_LEVEL, …`;

type Context = {
  config: Config;
  log: Logger;
  /** Aborted by the first SIGINT/SIGTERM. */
  shutdown: AbortSignal;
};

const aborted = (signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener("abort", () => resolve(), { once: true });
  });

/**
 * Database, migrate, then the parts this command runs (scheduler, HTTP); resolves once stopped by
 * `shutdown`, rejects if start-up or the database fails. Whatever was started is stopped in reverse
 * order in every case: HTTP first, the embedded database last.
 */
async function serve({ config, log, shutdown }: Context, parts: { worker: boolean; http: boolean }): Promise<void> {
  const closers: Array<() => Promise<void>> = [];
  let failure: unknown;
  try {
    const database = await openDatabase(config, log, { signal: shutdown });
    closers.push(() => database.close());
    await migrate(database.migrateUrl, log, { signal: shutdown });
    shutdown.throwIfAborted();

    if (parts.worker) {
      const runner = await startWorker({
        databaseUrl: database.url,
        log,
        concurrency: config.workerConcurrency,
        sweepIntervalMs: config.sweepIntervalMs,
      });
      closers.push(() => runner.stop());
      log.info({ concurrency: config.workerConcurrency }, "scheduler running");
    }
    if (parts.http) {
      const http = await startHttp({ databaseUrl: database.url, config, log, processMetrics: true });
      closers.push(() => http.close());
      log.info(
        { url: reachableUrl(http.url), bound: http.url, pid: process.pid, admin: config.adminKey !== undefined },
        "waitroom listening",
      );
      if (process.stdout.isTTY) process.stdout.write(startBanner(http.url, config));
      if (!config.adminKey) log.warn("the admin API is disabled: set WAITROOM_ADMIN_KEY to manage rooms over HTTP");
    }

    const lost = await Promise.race([aborted(shutdown), database.lost]);
    if (lost) throw lost;
  } catch (error) {
    // An error caused by the shutdown itself (a migrate cut short, say) is no failure.
    if (!shutdown.aborted) failure = error;
  }
  for (const close of closers.reverse()) {
    try {
      await close();
    } catch (error) {
      log.error({ err: error }, "error while stopping");
    }
  }
  if (failure) throw failure;
  log.info("stopped");
}

async function migrateOnly({ config, log, shutdown }: Context): Promise<void> {
  const database = await openDatabase(config, log, { signal: shutdown });
  try {
    await migrate(database.migrateUrl, log, { signal: shutdown });
  } finally {
    await database.close();
  }
}

const commands: Record<string, (context: Context) => Promise<void>> = {
  start: (context) => serve(context, { worker: context.config.worker, http: true }),
  worker: (context) => serve(context, { worker: true, http: false }),
  migrate: migrateOnly,
};

/** The operator commands that talk to a running service: exit 0 done, 1 the service said no, 2 bad usage. */
async function operatorCommand(name: string, args: string[]): Promise<number> {
  const commandUsage = { keys: keysUsage, stock: stockUsage }[name] ?? roomsUsage;
  if (args.includes("--help") || args.includes("-h")) {
    process.stdout.write(`${commandUsage}\n`);
    return 0;
  }
  const stop = new AbortController();
  process.once("SIGINT", () => stop.abort());
  process.once("SIGTERM", () => stop.abort());
  try {
    if (name === "rooms") await roomsCommand(args, process.env, process.stdout);
    else if (name === "keys") await keysCommand(args, process.env, process.stdout);
    else if (name === "stock") await stockCommand(args, process.env, process.stdout);
    else await topCommand(args, process.env, process.stdout, stop.signal);
    return 0;
  } catch (error) {
    if (error instanceof UsageError || (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      process.stderr.write(`${(error as Error).message}\n\n${commandUsage}\n`);
      return 2;
    }
    if (error instanceof ApiFailure) {
      process.stderr.write(`${error.code}: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
}

/** Runs one command; resolves with the process exit code. */
async function main(argv: string[]): Promise<number> {
  const name = argv[0] ?? "";
  if (["--help", "-h", "help"].includes(name) || (Object.hasOwn(commands, name) && argv.includes("--help"))) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  if (["rooms", "top", "keys", "stock"].includes(name)) return operatorCommand(name, argv.slice(1));
  const command = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (!command) {
    process.stderr.write(`${usage}\n`);
    return 2;
  }
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`${error.message}\n`);
    return 1;
  }
  const log = createLogger(config.logLevel);

  // Installed before anything starts, and kept: a signal while the database starts must stop it too,
  // and a repeated signal (tsx, npm and `timeout` all relay them) must not kill the process half-way.
  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (controller.signal.aborted) {
      log.info({ signal }, "already shutting down");
      return;
    }
    log.info({ signal }, "shutting down");
    controller.abort(new Error(`interrupted by ${signal}`));
    setTimeout(() => {
      log.error({ timeoutMs: config.shutdownTimeoutMs }, "shutdown did not finish in time; exiting anyway");
      process.exit(1); // the embedded database's exit hook still asks it to stop
    }, config.shutdownTimeoutMs);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  try {
    await command({ config, log, shutdown: controller.signal });
    return 0;
  } catch (error) {
    if (controller.signal.aborted) log.error(`${name} interrupted before it finished`);
    // Like a configuration error, a refusal is one sentence on stderr: nothing was started.
    else if (error instanceof DataDirectoryInUseError) process.stderr.write(`${name} refused: ${error.message}\n`);
    else log.fatal({ err: error }, `${name} failed`);
    return 1;
  }
}

// Exit explicitly: a stray handle (a socket, a timer) must not keep a stopped service alive.
process.exit(await main(process.argv.slice(2)));
