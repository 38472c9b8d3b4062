import { createServer, type Server, Socket } from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/index.js";
import { type HttpService, startHttp } from "../../src/http/server.js";
import { createLogger } from "../../src/log.js";
import { useTestDatabase } from "../helpers/database.js";
import { eventually } from "../helpers/eventually.js";
import { StreamRecorder, testEnvironment } from "../helpers/http.js";
import { createRoom } from "../helpers/queue.js";

/*
 * Timeouts wherever a peer can stall the service (issue 13): the service's
 * connections carry statement, lock and idle-in-transaction timeouts, and a
 * LISTEN connection that stops answering (a half-open TCP connection, a
 * frozen proxy) is detected by its ping deadline: /readyz turns red, a new
 * connection replaces it and events flow again.
 */

const db = useTestDatabase();
const log = createLogger(process.env.TEST_LOG_LEVEL ?? "silent");

/** One client connection through the proxy, with the startup parameters it sent (PostgreSQL protocol 3). */
type Piped = {
  client: Socket;
  upstream: Socket;
  parameters: Map<string, string>;
  stalled: boolean;
  /** What a held connection sent, forwarded on release. */
  held: Buffer[] | null;
};

/**
 * A TCP proxy in front of PostgreSQL that can stall connections: their bytes are then swallowed in
 * both directions while both sockets stay open, as when a peer vanishes without a FIN.
 */
class StallingProxy {
  readonly piped: Piped[] = [];
  #server: Server | undefined;
  readonly #holding = new Set<string>();

  async start(target: URL): Promise<URL> {
    this.#server = createServer((client) => {
      const upstream = new Socket();
      const piped: Piped = { client, upstream, parameters: new Map(), stalled: false, held: null };
      this.piped.push(piped);
      let startup: Buffer | null = Buffer.alloc(0);
      client.on("data", (data) => {
        if (startup) {
          startup = Buffer.concat([startup, data]);
          if (startup.length >= 4 && startup.length >= startup.readInt32BE(0)) {
            const pairs = startup.subarray(8, startup.readInt32BE(0)).toString("utf8").split("\u0000");
            for (let i = 0; i + 1 < pairs.length; i += 2)
              if (pairs[i]) piped.parameters.set(pairs[i] as string, pairs[i + 1] ?? "");
            startup = null;
            if (this.#holding.has(piped.parameters.get("application_name") ?? "")) piped.held = [];
          }
        }
        if (piped.held) piped.held.push(data);
        else if (!piped.stalled) upstream.write(data);
      });
      upstream.on("data", (data) => {
        if (!piped.stalled) client.write(data);
      });
      const end = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on("close", end).on("error", end);
      upstream.on("close", end).on("error", end);
      upstream.connect(Number(target.port), target.hostname);
    });
    await new Promise<void>((resolve) => this.#server?.listen(0, "127.0.0.1", resolve));
    const address = this.#server.address();
    const url = new URL(target);
    url.hostname = "127.0.0.1";
    url.port = String(typeof address === "object" && address ? address.port : 0);
    return url;
  }

  /** Stall the open connections that named this application_name. */
  stall(applicationName: string): number {
    const matching = this.piped.filter(
      (p) => p.parameters.get("application_name") === applicationName && !p.client.destroyed,
    );
    for (const piped of matching) piped.stalled = true;
    return matching.length;
  }

  /** Hold new connections that name this application_name (their bytes wait) until release(). */
  hold(applicationName: string): void {
    this.#holding.add(applicationName);
  }

  release(applicationName: string): void {
    this.#holding.delete(applicationName);
    for (const piped of this.piped) {
      if (piped.parameters.get("application_name") !== applicationName || !piped.held) continue;
      for (const data of piped.held) piped.upstream.write(data);
      piped.held = null;
    }
  }

  async close(): Promise<void> {
    for (const { client, upstream } of this.piped) {
      client.destroy();
      upstream.destroy();
    }
    await new Promise((resolve) => this.#server?.close(resolve));
  }
}

const proxy = new StallingProxy();
let service: HttpService | undefined;
afterAll(async () => {
  await service?.close();
  await proxy.close();
});

const readyz = async (base: string) => (await fetch(`${base}/readyz`)).status;

describe("timeouts on the service's connections", () => {
  it("sets statement, lock and idle-in-transaction timeouts on every connection, and detects a stalled LISTEN", async () => {
    const url = await proxy.start(new URL(db.serviceUrl));
    const config = loadConfig(
      testEnvironment({
        WAITROOM_STATEMENT_TIMEOUT_MS: "4321",
        WAITROOM_LOCK_TIMEOUT_MS: "1234",
        WAITROOM_IDLE_IN_TRANSACTION_TIMEOUT_MS: "5678",
        WAITROOM_LISTEN_PING_MS: "200",
        WAITROOM_LISTEN_PING_TIMEOUT_MS: "600",
      }),
    );
    service = await startHttp({ databaseUrl: url.toString(), config, log });
    const base = service.url;
    await eventually(async () => (await readyz(base)) === 200, "ready");

    // A service connection shows them…
    const [shown] = await service.sql<{ statement: string; lock: string; idle: string }[]>`
      select current_setting('statement_timeout') as statement, current_setting('lock_timeout') as lock,
             current_setting('idle_in_transaction_session_timeout') as idle`;
    expect(shown).toEqual({ statement: "4321ms", lock: "1234ms", idle: "5678ms" });
    // …and every connection the service opened, LISTEN included, asked for them at startup.
    const names = proxy.piped.map((p) => p.parameters.get("application_name"));
    expect(names).toContain("waitroom-listen");
    for (const { parameters } of proxy.piped) {
      expect(Object.fromEntries(parameters)).toMatchObject({
        statement_timeout: "4321",
        lock_timeout: "1234",
        idle_in_transaction_session_timeout: "5678",
      });
    }
    // The server enforces them: a statement running longer than 4.321 s is cancelled.
    await expect(service.sql`select pg_sleep(10)`).rejects.toMatchObject({ code: "57014" });

    // A stream, to see events flow before and after.
    const room = await createRoom(db.sql, 0, { idle_seconds: 3600, claim_seconds: 3600 });
    const joined = (await (await fetch(`${base}/v1/rooms/${room}/tickets`, { method: "POST" })).json()) as {
      ticket_id: string;
      token: string;
    };
    const stream = new StreamRecorder(`${base}/v1/tickets/${joined.ticket_id}/events?token=${joined.token}`);
    try {
      await stream.next((m) => m.event === "state" && m.data.position === 1);
      const firstPid = service.listener.backendPid;

      // The LISTEN connection stops answering, its socket still open: no error, no end. Its
      // replacement is held at the proxy meanwhile, so the red spell lasts until the test has seen it.
      proxy.hold("waitroom-listen");
      expect(proxy.stall("waitroom-listen")).toBe(1);
      await eventually(async () => (await readyz(base)) === 503, "/readyz turns red");
      const red = await fetch(`${base}/readyz`);
      expect(await red.json()).toEqual({ error: { code: "not_ready", message: expect.any(String) } });

      // A new connection replaces it, and events reach the stream again.
      proxy.release("waitroom-listen");
      await eventually(async () => (await readyz(base)) === 200, "/readyz is green again");
      expect(service.listener.backendPid).not.toBe(firstPid);
      const metrics = await (await fetch(`${base}/metrics`)).text();
      expect(metrics).toMatch(/^waitroom_listen_ping_timeouts_total [1-9]/m);
      await db.sql`select waitroom.configure_room(${room}, '{"capacity": 1}')`;
      await db.sql`select * from waitroom.admit(${room})`;
      const admitted = await stream.next((m) => m.event === "admitted");
      expect(admitted.data).toMatchObject({ ticket_id: joined.ticket_id, status: "admitted" });
    } finally {
      stream.close();
    }
  });
});
