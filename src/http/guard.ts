import type { IncomingMessage } from "node:http";
import type { RouteConfig } from "@hono/zod-openapi";
import type { z } from "zod";
import type { LimitSettings, RateBucket } from "../config/index.js";
import { jsonBody } from "./body.js";
import { bearerOf, sameSecret, ticketTokenOf } from "./credentials.js";
import { ApiError, parse } from "./errors.js";
import { type Caller, checkKey, checkOrigin, type Limiter } from "./limits.js";

/*
 * What a route's definition asks of a call before its handler runs: its security, its origin check,
 * its body and its rate limit. Both doors (route.ts's framework routes and node-route.ts's routes on
 * Node's request) enforce a definition through this one guard, in this order, so a route answers
 * the same whichever door serves it.
 */

type Security = RouteConfig["security"];

/** Whether a route's security lets anyone call (an empty requirement), or only the schemes it names. */
export const anyoneMayCall = (security: Security) =>
  (security ?? []).some((requirement) => Object.keys(requirement).length === 0);

export const schemesOf = (security: Security) =>
  new Set((security ?? []).flatMap((requirement) => Object.keys(requirement)));

export type Secrets = {
  /** Unset: the admin endpoints answer forbidden. */
  adminKey?: string | undefined;
  /** Unset: nobody may set holder or priority. */
  serverKey?: string | undefined;
};

export type GuardOptions = {
  secrets: Secrets;
  limits: LimitSettings;
  /** Absent: per-client rate limits are off. */
  limiter: Limiter | undefined;
  bodyLimitBytes: number;
};

/** Who is calling, as the call's credentials showed. */
type Credentials = {
  /** The ticket's bearer token, on routes secured by ticketToken. */
  ticketToken: string | undefined;
  /** The caller presented the server key (a join may then set holder and priority). */
  trusted: boolean;
};

/** What a route does about hostile traffic, declared with it (and shown in /openapi.json). */
export type Defences = {
  /** The token bucket a call draws from, per client address (docs/operations.md, "Hostile traffic"). */
  "x-rate-limit"?: RateBucket;
  /** A browser's call (Origin or Sec-Fetch-Site sent) must come from an allowed origin, unless the server key is presented. */
  "x-checks-origin"?: true;
};

/** The parts of a definition the guard enforces. */
type Guarded = Pick<RouteConfig, "security" | "request"> & Defences;

export type Guard = {
  /** The declared security, then the origin check: refused calls throw their error. */
  credentials(caller: Caller, queryToken: () => string | undefined): Credentials;
  /** The body read and validated by the definition's schema; undefined for a route that takes none. */
  body(incoming: IncomingMessage): Promise<unknown>;
  /** Last: a refused or invalid call costs no token. */
  rateLimit(caller: Caller, trusted: boolean, body: unknown): void;
};

/** The holder a body names (only join's does). */
const holderOf = (body: unknown): string | undefined =>
  typeof body === "object" && body !== null && "holder" in body && typeof body.holder === "string"
    ? body.holder
    : undefined;

export function guardOf(route: Guarded, options: GuardOptions): Guard {
  const { secrets, limits, limiter, bodyLimitBytes } = options;
  const schemes = schemesOf(route.security);
  const serverOnly = schemes.has("serverKey") && !anyoneMayCall(route.security);
  const json = route.request?.body?.content["application/json"];
  const schema = json && "schema" in json ? (json.schema as z.ZodType) : undefined;
  const bucket = route["x-rate-limit"];

  const checkAdmin = (caller: Caller) => {
    const { adminKey } = secrets;
    if (!adminKey) throw new ApiError("forbidden", "the admin API is disabled: set WAITROOM_ADMIN_KEY");
    const key = bearerOf(caller.env.incoming.headers.authorization);
    const refusal = new ApiError("unauthorized", "the admin key is required");
    if (!key) throw refusal;
    checkKey(limiter, caller, () => sameSecret(key, adminKey), refusal);
  };
  // Anyone may call a route that also takes the server key; the key, when presented, must be right.
  const checkServer = (caller: Caller): boolean => {
    if (serverOnly && !secrets.serverKey) {
      throw new ApiError("forbidden", "the server-key routes are disabled: set WAITROOM_SERVER_KEY");
    }
    const key = bearerOf(caller.env.incoming.headers.authorization);
    const { serverKey } = secrets;
    if (key !== undefined) {
      const right = () => serverKey !== undefined && sameSecret(key, serverKey);
      checkKey(limiter, caller, right, new ApiError("unauthorized", "the server key is wrong"));
    }
    if (key === undefined && serverOnly) throw new ApiError("unauthorized", "the server key is required");
    return key !== undefined;
  };

  return {
    credentials(caller, queryToken) {
      if (schemes.has("adminKey")) checkAdmin(caller);
      const ticketToken = schemes.has("ticketToken")
        ? ticketTokenOf(
            caller.env.incoming.headers.authorization,
            schemes.has("ticketTokenQuery") ? queryToken() : undefined,
          )
        : undefined;
      const trusted = schemes.has("serverKey") ? checkServer(caller) : false;
      // Before anything is read or counted: another site's page must not spend its visitors' limits.
      if (route["x-checks-origin"] && !trusted) checkOrigin(caller, limits);
      return { ticketToken, trusted };
    },
    async body(incoming) {
      return schema ? parse(schema, await jsonBody(incoming, bodyLimitBytes), "body") : undefined;
    },
    rateLimit(caller, trusted, body) {
      if (!bucket || !limiter) return;
      // The server key speaks for many users from one address: its calls draw per holder instead
      // (identified joins), or not at all.
      if (!trusted) limiter.take(bucket, limiter.address(caller));
      else {
        const holder = holderOf(body);
        if (holder !== undefined) limiter.take("holder", holder);
      }
    },
  };
}
