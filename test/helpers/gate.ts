import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { decodeJwt, importJWK, type JWK, type JWTPayload, SignJWT } from "jose";
import { afterAll, beforeAll } from "vitest";
import type { Sql } from "../../src/db/client.js";
import { eventually } from "./eventually.js";
import { uniqueRoomId } from "./queue.js";

/** The room a gate test's service guards 127.0.0.1 with (WAITROOM_GATES is read when the server starts). */
export const gateRoom = uniqueRoomId("gate");

/** A service environment whose gate guards every path of 127.0.0.1 with gateRoom, over plain HTTP. */
export const gateEnvironment = { WAITROOM_GATES: `127.0.0.1=${gateRoom}`, WAITROOM_GATE_COOKIE_SECURE: "false" };

/** The protected site: a tiny origin that knows nothing of waitroom and says which URL it served. */
export function useOrigin(): { readonly port: number } {
  let server: Server;
  const origin = { port: 0 };
  beforeAll(async () => {
    server = createServer((request, response) => {
      response.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      response.end(`<!doctype html><title>origin</title><h1 id="origin">The origin served ${request.url}</h1>`);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    origin.port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return origin;
}

/** The admission token's claims changed by `change`, signed with the service's current key (read as the schema's owner). */
export async function resigned(sql: Sql, token: string, change: (claims: JWTPayload) => JWTPayload): Promise<string> {
  const [key] = await sql<{ kid: string; private_jwk: JWK }[]>`
    select kid, private_jwk from waitroom.current_signing_key()`;
  if (!key) throw new Error("no current signing key");
  return new SignJWT(change(decodeJwt(token)))
    .setProtectedHeader({ alg: "EdDSA", kid: key.kid, typ: "JWT" })
    .sign(await importJWK(key.private_jwk, "EdDSA"));
}

/**
 * The admission token as the service would have signed it `seconds` earlier: the same claims with iat
 * and exp moved back. The gate then finds it that far into its life, with no clock to move and no waiting.
 */
export function signedEarlier(sql: Sql, token: string, seconds: number): Promise<string> {
  return resigned(sql, token, ({ iat, exp, ...claims }) => {
    if (iat === undefined || exp === undefined) throw new Error("the admission token has no iat or exp");
    return { ...claims, iat: iat - seconds, exp: exp - seconds };
  });
}

/** A visitor of the site behind the proxy at siteUrl: one browser's cookie jar, following nothing by itself. */
export function visitor(siteUrl: string) {
  const jar = new Map<string, string>();
  const remember = (response: Response) => {
    for (const line of response.headers.getSetCookie()) {
      const [pair = ""] = line.split(";");
      const [name = "", value = ""] = pair.split("=");
      if (/max-age=0/i.test(line) || value === "") jar.delete(name);
      else jar.set(name, value);
    }
    return response;
  };
  const cookie = () => [...jar].map(([name, value]) => `${name}=${value}`).join("; ");
  return {
    jar,
    async get(path: string) {
      return remember(await fetch(`${siteUrl}${path}`, { redirect: "manual", headers: { cookie: cookie() } }));
    },
    async call(method: string, path: string, init: { token?: string; body?: unknown } = {}) {
      const headers: Record<string, string> = { cookie: cookie() };
      if (init.token) headers.authorization = `Bearer ${init.token}`;
      if (init.body !== undefined) headers["content-type"] = "application/json";
      const body = init.body === undefined ? undefined : JSON.stringify(init.body);
      return remember(await fetch(`${siteUrl}/.waitroom${path}`, { method, headers, body }));
    },
  };
}

/** A visitor's join through the site, then its claim as soon as the room admits it: the ticket and the admission token. */
export async function joinAndClaim(browser: ReturnType<typeof visitor>, room: string) {
  const ticket = (await (await browser.call("POST", `/v1/rooms/${room}/tickets`)).json()) as {
    ticket_id: string;
    token: string;
  };
  const claimed = await eventually(async () => {
    const answer = await browser.call("POST", `/v1/tickets/${ticket.ticket_id}/claim`, { token: ticket.token });
    return answer.ok && ((await answer.json()) as { admission_token: string });
  }, "the visitor is admitted");
  return { ticket, admissionToken: claimed.admission_token };
}
