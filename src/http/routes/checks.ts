import { z } from "@hono/zod-openapi";
import type { Sql } from "../../db/client.js";
import type { GroupedQueue } from "../../queue/grouped.js";
import * as queue from "../../queue/index.js";
import type { TokenIssuer } from "../../tokens/index.js";
import { checkRequest, checkResponse } from "../contracts.js";
import { verdictError } from "../errors.js";
import { callers, defineRoute, type Router } from "../route.js";

/*
 * Admission tokens, for the protected app: check one (seeing revocations), fetch the keys that
 * verify them offline, and rotate the signing key (admin).
 */

export const checkRoute = defineRoute({
  method: "post",
  path: "/v1/check",
  summary: "May this visitor proceed?",
  description:
    "For the protected app: checks an admission token (signature, expiry, and revocation in the database), " +
    "or a ticket id with its token.",
  tags: ["admission"],
  request: { body: { content: { "application/json": { schema: checkRequest } }, required: true } },
  responses: {
    200: { description: "The holder may proceed.", content: { "application/json": { schema: checkResponse } } },
  },
  errors: [
    "invalid_token",
    "not_found",
    "superseded",
    "not_admitted",
    "not_claimed",
    "draining",
    "expired",
    "ended",
    "left",
  ],
});

export const jwksRoute = defineRoute({
  method: "get",
  path: "/.well-known/jwks.json",
  summary: "Keys that verify admission tokens",
  description: "A JSON Web Key Set of the Ed25519 public keys; cacheable for five minutes.",
  tags: ["admission"],
  responses: {
    200: {
      description: "A JSON Web Key Set.",
      content: { "application/json": { schema: z.object({ keys: z.array(z.record(z.string(), z.unknown())) }) } },
    },
  },
  errors: [],
});

export const rotateRoute = defineRoute({
  method: "post",
  path: "/v1/keys/rotate",
  summary: "Rotate the signing key",
  description: "Start signing admission tokens with a new key; the old one stays in the JWKS for a day.",
  tags: ["admission"],
  security: callers.admin,
  responses: {
    200: { description: "The new key id.", content: { "application/json": { schema: z.object({ kid: z.string() }) } } },
  },
  errors: [],
});

export function mountChecks({ mount }: Router, deps: { sql: Sql; grouped: GroupedQueue; tokens: TokenIssuer }): void {
  const { sql, grouped, tokens } = deps;

  mount(checkRoute, async (c) => {
    const check = c.req.valid("json");
    if ("admission_token" in check) {
      const admission = await tokens.verify(check.admission_token);
      const verdict = await queue.checkAdmission(sql, admission.ticketId, admission.instance);
      if (!verdict.ok || !verdict.expires_at || !verdict.status) throw verdictError(verdict.code);
      return c.json(
        {
          ok: true as const,
          status: verdict.status,
          ticket_id: admission.ticketId,
          room_id: admission.room,
          expires_at: verdict.expires_at.toISOString(),
        },
        200,
      );
    }
    const { code, state } = await grouped.tokenState({ ticketId: check.ticket_id, token: check.token });
    if (code !== "ok" || !state?.expires_at) throw verdictError(code);
    return c.json(
      {
        ok: true as const,
        status: state.status,
        ticket_id: state.ticket_id,
        room_id: state.room_id,
        expires_at: new Date(state.expires_at).toISOString(),
      },
      200,
    );
  });

  mount(jwksRoute, async (c) => {
    c.header("cache-control", "public, max-age=300");
    return c.json(await tokens.jwks(), 200);
  });

  mount(rotateRoute, async (c) => c.json({ kid: await tokens.rotate() }, 200));
}
