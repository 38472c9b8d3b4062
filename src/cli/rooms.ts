import { parseArgs } from "node:util";
import type { RoomSettings, RoomWithStats } from "../queue/index.js";

/*
 * `waitroom rooms …` and `waitroom top`: operator commands over the admin
 * HTTP API of a running service (WAITROOM_URL, WAITROOM_ADMIN_KEY), so they
 * work against any replica from anywhere, with the same validation as the API.
 */

export const roomsUsage = `usage: waitroom rooms <list | create | set | pause | resume | delete> …

  rooms list                               every room with its live numbers
  rooms create <room> --capacity N [setting=value …]
  rooms set <room> setting=value …         e.g. capacity=50 mode=paused admit_per_minute=null
                                            target_url=https://shop.example/ return_origins=https://a.example,https://b.example
  rooms pause <room> | resume <room> | delete <room>
  top [--interval ms] [--once]             live view of every room (Ctrl-C quits)

  WAITROOM_URL (default http://127.0.0.1:$PORT, PORT default 8080) and
  WAITROOM_ADMIN_KEY say which service to talk to.`;

export class UsageError extends Error {}

/** An error answered by the service: printed as "code: message", exit code 1. */
export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export type Output = { write(text: string): void; isTTY?: boolean };

type Api = (method: string, path: string, body?: unknown) => Promise<unknown>;

export function adminApi(env: NodeJS.ProcessEnv): Api {
  return serviceApi(env, "WAITROOM_ADMIN_KEY", "to manage rooms");
}

/** The service's HTTP API with one of its keys (the admin key, or the server key for stock). */
export function serviceApi(
  env: NodeJS.ProcessEnv,
  keyName: "WAITROOM_ADMIN_KEY" | "WAITROOM_SERVER_KEY",
  purpose: string,
): Api {
  const base = (env.WAITROOM_URL || `http://127.0.0.1:${env.PORT || 8080}`).replace(/\/+$/, "");
  const key = env[keyName];
  if (!key) throw new UsageError(`${keyName} must be set ${purpose}`);
  return async (method, path, body) => {
    let response: Response;
    try {
      response = await fetch(`${base}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${key}`,
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw new ApiFailure(0, "unreachable", `cannot reach ${base}: ${(error as Error).message}`);
    }
    if (response.status === 204) return undefined;
    const payload = (await response.json().catch(() => ({}))) as { error?: { code: string; message: string } };
    if (!response.ok) {
      throw new ApiFailure(
        response.status,
        payload.error?.code ?? "http_error",
        payload.error?.message ?? `HTTP ${response.status}`,
      );
    }
    return payload;
  };
}

/** ANSI colours only for a terminal, and never when NO_COLOR is set. */
export function painter(out: Output, env: NodeJS.ProcessEnv) {
  const on = Boolean(out.isTTY) && !env.NO_COLOR;
  const paint = (code: number) => (text: string) => (on ? `\u001b[${code}m${text}\u001b[0m` : text);
  return { bold: paint(1), dim: paint(2), red: paint(31), green: paint(32), yellow: paint(33) };
}

/** `key=value` arguments → settings: numbers, booleans and null as JSON, lists split at commas, the rest as strings. */
export function parseSettings(pairs: readonly string[]): RoomSettings {
  const settings: Record<string, unknown> = {};
  for (const pair of pairs) {
    const match = /^([a-z_]+)=(.*)$/.exec(pair);
    if (!match) throw new UsageError(`expected setting=value, got '${pair}'`);
    const [, key = "", raw = ""] = match;
    // A list setting (return_origins) is comma-separated: return_origins=https://a.example,https://b.example.
    if (key === "return_origins") settings[key] = raw === "" ? [] : raw.split(",");
    else settings[key] = /^(-?\d+(\.\d+)?|true|false|null)$/.test(raw) ? JSON.parse(raw) : raw;
  }
  return settings as RoomSettings;
}

const columns = ["room", "mode", "capacity", "queued", "admitted", "active", "free", "per min", "oldest wait", "stock"];

/** Units left (and reserved) of a room with stock; "sold out" once nothing can come back. */
function stockCell({ stats }: RoomWithStats): string {
  if (stats.sold_out) return "sold out";
  if (stats.stock_available === null) return "-";
  return stats.stock_outstanding > 0
    ? `${stats.stock_available} (+${stats.stock_outstanding})`
    : String(stats.stock_available);
}

function row(room: RoomWithStats): string[] {
  const wait = room.stats.oldest_wait_seconds;
  return [
    room.id,
    room.mode,
    String(room.capacity),
    String(room.stats.queued),
    String(room.stats.admitted),
    String(room.stats.active + room.stats.draining),
    String(room.stats.free_seats),
    String(room.stats.admitted_last_minute),
    wait === null ? "-" : `${Math.round(wait)}s`,
    stockCell(room),
  ];
}

/** Rooms as an aligned table; the mode coloured so a paused or closed room stands out. */
export function roomsTable(rooms: readonly RoomWithStats[], colour: ReturnType<typeof painter>): string {
  if (rooms.length === 0) return "no rooms\n";
  const cells = [columns, ...rooms.map(row)];
  const widths = columns.map((_, i) => Math.max(...cells.map((line) => (line[i] ?? "").length)));
  const modeColour: Record<string, (text: string) => string> = {
    open: colour.green,
    passthrough: colour.green,
    paused: colour.yellow,
    closed: colour.red,
  };
  return `${cells
    .map((line, index) => {
      const text = line.map((cell, i) => {
        const padded = i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0);
        if (index === 0) return colour.bold(padded);
        return i === 1 ? (modeColour[cell] ?? ((t: string) => t))(padded) : padded;
      });
      return text.join("  ");
    })
    .join("\n")}\n`;
}

function describeRoom(room: RoomWithStats): string {
  const settings = Object.entries(room)
    .filter(([key]) => !["stats", "created_at", "updated_at"].includes(key))
    .map(([key, value]) => `${key}=${value instanceof Date ? value.toISOString() : String(value)}`);
  return `${settings.join(" ")}\n`;
}

/** `waitroom rooms <action> …`; resolves when done, throws UsageError or ApiFailure. */
export async function roomsCommand(args: readonly string[], env: NodeJS.ProcessEnv, out: Output): Promise<void> {
  const [action, room, ...rest] = args;
  const colour = painter(out, env);
  const api = adminApi(env);
  const needRoom = () => {
    if (!room) throw new UsageError(`rooms ${action} needs a room id`);
    return encodeURIComponent(room);
  };
  switch (action) {
    case "list": {
      const { rooms } = (await api("GET", "/v1/rooms")) as { rooms: RoomWithStats[] };
      out.write(roomsTable(rooms, colour));
      return;
    }
    case "create": {
      const { values, positionals } = parseArgs({
        args: rest as string[],
        options: { capacity: { type: "string" } },
        allowPositionals: true,
      });
      if (values.capacity === undefined || !/^\d+$/.test(values.capacity)) {
        throw new UsageError("rooms create needs --capacity N");
      }
      const settings = { ...parseSettings(positionals), capacity: Number(values.capacity) };
      const created = (await api("PUT", `/v1/rooms/${needRoom()}`, settings)) as RoomWithStats;
      out.write(`${colour.green("created")} ${describeRoom(created)}`);
      return;
    }
    case "set": {
      if (rest.length === 0) throw new UsageError("rooms set needs at least one setting=value");
      const changed = (await api("PUT", `/v1/rooms/${needRoom()}`, parseSettings(rest))) as RoomWithStats;
      out.write(`${colour.green("updated")} ${describeRoom(changed)}`);
      return;
    }
    case "pause":
    case "resume": {
      const changed = (await api("POST", `/v1/rooms/${needRoom()}/${action}`)) as RoomWithStats;
      out.write(`${changed.id}: mode ${changed.mode}\n`);
      return;
    }
    case "delete": {
      await api("DELETE", `/v1/rooms/${needRoom()}`);
      out.write(`${room}: deleted\n`);
      return;
    }
    default:
      throw new UsageError(action ? `unknown rooms command '${action}'` : "rooms needs a command");
  }
}

/** `waitroom top`: the rooms table, redrawn every interval until `signal` aborts (or once). */
export async function topCommand(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  out: Output,
  signal: AbortSignal,
): Promise<void> {
  const { values } = parseArgs({
    args: args as string[],
    options: { interval: { type: "string", default: "1000" }, once: { type: "boolean", default: false } },
  });
  const interval = Number(values.interval);
  if (!Number.isInteger(interval) || interval < 100) throw new UsageError("--interval must be at least 100 (ms)");
  const colour = painter(out, env);
  const api = adminApi(env);
  while (!signal.aborted) {
    const { rooms } = (await api("GET", "/v1/rooms")) as { rooms: RoomWithStats[] };
    const title = `waitroom top — ${new Date().toISOString()}${values.once ? "" : " — Ctrl-C quits"}`;
    const frame = `${colour.dim(title)}\n${roomsTable(rooms, colour)}`;
    // A terminal gets the frame redrawn in place; a pipe gets one frame after another.
    out.write(out.isTTY ? `\u001b[H\u001b[2J${frame}` : `${frame}\n`);
    if (values.once) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, interval);
      signal.addEventListener(
        "abort",
        () => {
          clearTimeout(timer);
          resolve();
        },
        { once: true },
      );
    });
  }
}
