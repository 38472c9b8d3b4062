import { z } from "@hono/zod-openapi";
import type { Sql } from "../../db/client.js";
import type { GroupedQueue } from "../../queue/grouped.js";
import * as queue from "../../queue/index.js";
import type { SigningKey, TokenIssuer } from "../../tokens/index.js";
import { checkRequest, checkResponse, kidParams, signingKey } from "../contracts.js";
import { ApiError, verdictCodes, verdictError } from "../errors.js";
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
    "or a ticket id with its token, for the room the app protects: another room's seat is wrong_room.",
  tags: ["admission"],
  request: { body: { content: { "application/json": { schema: checkRequest } }, required: true } },
  responses: {
    200: { description: "The holder may proceed.", content: { "application/json": { schema: checkResponse } } },
  },
  "x-rate-limit": "check",
  errors: [...verdictCodes, "wrong_room"],
});

export const jwksRoute = defineRoute({
  method: "get",
  path: "/.well-known/jwks.json",
  summary: "Keys that verify admission tokens",
  description:
    "A JSON Web Key Set of the Ed25519 public keys: the current key, the staged next one and recently retired ones; " +
    "cacheable for WAITROOM_JWKS_MAX_AGE_SECONDS (five minutes by default).",
  tags: ["admission"],
  responses: {
    200: {
      description: "A JSON Web Key Set.",
      content: { "application/json": { schema: z.object({ keys: z.array(z.record(z.string(), z.unknown())) }) } },
    },
  },
  errors: [],
});

const keysBody = (description: string, schema: z.ZodType) => ({
  200: { description, content: { "application/json": { schema } } },
});

export const listKeysRoute = defineRoute({
  method: "get",
  path: "/v1/keys",
  summary: "List the signing keys",
  description: "Every key kept, newest first: staged (published, not signing yet), current, retired or revoked.",
  tags: ["admission"],
  security: callers.admin,
  responses: keysBody("The keys.", z.object({ keys: z.array(signingKey) })),
  errors: [],
});

export const rotateRoute = defineRoute({
  method: "post",
  path: "/v1/keys/rotate",
  summary: "Stage the next signing key",
  description:
    "Publishes a new key in the JWKS now; it starts signing after the JWKS cache lifetime plus the replicas' " +
    "key cache lifetime (`activates_at`), so verifiers know it before any token it signs exists. The current key " +
    "then retires: its private half is destroyed, its public half listed until its last tokens have expired. " +
    "With a key already staged, answers that key and changes nothing.",
  tags: ["admission"],
  security: callers.admin,
  responses: keysBody("The staged key.", signingKey),
  errors: [],
});

export const revokeRoute = defineRoute({
  method: "post",
  path: "/v1/keys/{kid}/revoke",
  summary: "Revoke a signing key (emergency)",
  description:
    "At once: /v1/check refuses every token the key signed (invalid_token), the JWKS no longer lists it and " +
    "its private half is destroyed. A revoked current key is replaced by the staged key, or by a new key.",
  tags: ["admission"],
  security: callers.admin,
  request: { params: kidParams },
  responses: keysBody("The revoked key.", signingKey),
  errors: ["not_found"],
});

export type CheckDeps = { sql: Sql; grouped: GroupedQueue; tokens: TokenIssuer; jwksMaxAgeSeconds: number };

export function mountChecks({ mount }: Router, deps: CheckDeps): void {
  const { sql, grouped, tokens } = deps;

  mount(checkRoute, async (c) => {
    const check = c.req.valid("json");
    if ("admission_token" in check) {
      const admission = await tokens.verify(check.admission_token, check.room);
      const verdict = await queue.checkAdmission(sql, admission);
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
    if (state.room_id !== check.room) {
      throw new ApiError("wrong_room", `the ticket is in room '${state.room_id}', not '${check.room}'`);
    }
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
    c.header("cache-control", `public, max-age=${deps.jwksMaxAgeSeconds}`);
    return c.json(await tokens.jwks(), 200);
  });

  const shown = (key: SigningKey) => ({
    ...key,
    created_at: key.created_at.toISOString(),
    activates_at: key.activates_at.toISOString(),
    retired_at: key.retired_at?.toISOString() ?? null,
    revoked_at: key.revoked_at?.toISOString() ?? null,
  });
  mount(listKeysRoute, async (c) => c.json({ keys: (await tokens.keys()).map(shown) }, 200));
  mount(rotateRoute, async (c) => c.json(shown(await tokens.rotate()), 200));
  mount(revokeRoute, async (c) => c.json(shown(await tokens.revoke(c.req.valid("param").kid)), 200));
}
