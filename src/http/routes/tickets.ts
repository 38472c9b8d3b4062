import type { ServerResponse } from "node:http";
import { z } from "@hono/zod-openapi";
import type { Sql } from "../../db/client.js";
import { formatSse, type Hub, RETRY_MS, ticketView } from "../../events/hub.js";
import type { Metrics } from "../../metrics.js";
import type { GroupedQueue } from "../../queue/grouped.js";
import type { PresentedToken } from "../../queue/index.js";
import * as queue from "../../queue/index.js";
import type { TokenIssuer } from "../../tokens/index.js";
import {
  challengeResponse,
  claimResponse,
  eventId,
  heartbeatResponse,
  joinRequest,
  joinResponse,
  roomParams,
  ticketAnswer,
  ticketParams,
} from "../contracts.js";
import { ApiError, verdictError } from "../errors.js";
import type { ProofOfWork } from "../proof-of-work.js";
import { callers, defineRoute, type Router } from "../route.js";
import { sseHeaders, sseResponse } from "../sse.js";

/*
 * A visitor's ticket, from join to leave: the routes a waiting-room page and the SDK call.
 */

export const joinRoute = defineRoute({
  method: "post",
  path: "/v1/rooms/{room}/tickets",
  summary: "Join a room's queue",
  description:
    "Anyone may join. With the server key (the protected app's backend) a join may also set `holder` " +
    "(one live ticket per holder: re-joining supersedes the old ticket), `priority` and `tier` (the holder's " +
    "quota tier). A sold-out room answers sold_out; a holder with no share left in its tier answers " +
    "quota_exceeded with `available_at`, when its next share comes back (and Retry-After).",
  tags: ["tickets"],
  security: callers.anyoneOrServer,
  request: {
    params: roomParams,
    body: { content: { "application/json": { schema: joinRequest } }, required: false },
  },
  responses: {
    202: {
      description: "The ticket, its token and where to stream it.",
      content: { "application/json": { schema: joinResponse } },
    },
  },
  "x-rate-limit": "join",
  "x-checks-origin": true,
  errors: [
    "forbidden",
    "not_found",
    "room_closed",
    "room_full",
    "sold_out",
    "quota_exceeded",
    "proof_required",
    "proof_invalid",
    "proof_expired",
    "proof_replayed",
    "wrong_room",
  ],
});

export const challengeRoute = defineRoute({
  method: "get",
  path: "/v1/rooms/{room}/challenge",
  summary: "A proof-of-work challenge for an anonymous join",
  description:
    "For a room with `proof_of_work_bits`: find a nonce such that SHA-256 of `<challenge>:<nonce>` (UTF-8) " +
    "starts with `bits` zero bits, then join with `proof_of_work: {challenge, nonce}`. Signed, for this room " +
    "only, single-use, valid until `expires_at`. A room without proof of work answers `bits` 0.",
  tags: ["tickets"],
  request: { params: roomParams },
  responses: {
    200: { description: "The challenge.", content: { "application/json": { schema: challengeResponse } } },
  },
  "x-rate-limit": "ticket",
  errors: ["not_found"],
});

export const ticketRoute = defineRoute({
  method: "get",
  path: "/v1/tickets/{id}",
  summary: "Read a ticket's state",
  description:
    "Status, position, depth and estimated wait. Streams carry the same state as it changes. In a room with " +
    "quotas, `shares` shows the holder's: used, left, and when the next one comes back.",
  tags: ["tickets"],
  security: callers.ticket,
  request: { params: ticketParams },
  responses: { 200: { description: "Current state.", content: { "application/json": { schema: ticketAnswer } } } },
  "x-rate-limit": "ticket",
  errors: ["superseded"],
});

export const eventsRoute = defineRoute({
  method: "get",
  path: "/v1/tickets/{id}/events",
  summary: "Stream a ticket's state (Server-Sent Events)",
  description:
    "A state snapshot, then `state`, `admitted`, `active`, `draining`, `ended`, `superseded` and `room` " +
    "events; every `data:` line is a ticket state. `Last-Event-ID` (or `?lastEventId=`) resumes after an event.",
  tags: ["tickets"],
  security: callers.ticketOrQuery,
  request: {
    params: ticketParams,
    query: z.object({
      token: z.string().optional().describe("The ticket's token, for EventSource (which cannot send headers)."),
      lastEventId: eventId.optional().describe("Resume after this event id, for clients that cannot set the header."),
    }),
    headers: z.object({
      "last-event-id": eventId.optional().describe("Resume after this event id (EventSource sends it)."),
    }),
  },
  responses: {
    200: { description: "The stream.", content: { "text/event-stream": { schema: z.string() } } },
    204: { description: "The ticket is over and the client has seen how it ended: stop reconnecting." },
  },
  "x-rate-limit": "stream",
  errors: ["superseded"],
});

export const claimRoute = defineRoute({
  method: "post",
  path: "/v1/tickets/{id}/claim",
  summary: "Claim an admission offer",
  description:
    "Turns the offer into an active seat and returns a signed admission token for the protected app. " +
    "Idempotent: retried with the ticket's current token while the seat is held (active or draining), it " +
    "answers the same seat (the same `expires_at`) with a freshly signed token and changes nothing.",
  tags: ["tickets"],
  security: callers.ticket,
  request: { params: ticketParams },
  responses: {
    200: {
      description: "The seat and its admission token.",
      content: { "application/json": { schema: claimResponse } },
    },
  },
  "x-rate-limit": "ticket",
  errors: ["superseded", "not_admitted", "expired", "ended", "left"],
});

export const heartbeatRoute = defineRoute({
  method: "post",
  path: "/v1/tickets/{id}/heartbeat",
  summary: "Say the holder is present",
  description:
    "Keeps a queued place from idling out; extends an active seat where the room renews on heartbeat. " +
    "While the ticket holds a seat the answer carries a fresh admission token: heartbeat more often than " +
    "WAITROOM_ADMISSION_TOKEN_SECONDS to keep the token handed to the protected app current.",
  tags: ["tickets"],
  security: callers.ticket,
  request: { params: ticketParams },
  responses: {
    200: {
      description: "Current state (and, for a held seat, a fresh admission token).",
      content: { "application/json": { schema: heartbeatResponse } },
    },
  },
  "x-rate-limit": "ticket",
  errors: ["superseded", "expired", "ended", "left", "draining"],
});

export const leaveRoute = defineRoute({
  method: "delete",
  path: "/v1/tickets/{id}",
  summary: "Leave",
  description: "The place or seat is released at once.",
  tags: ["tickets"],
  security: callers.ticket,
  request: { params: ticketParams },
  responses: { 204: { description: "Left." } },
  "x-rate-limit": "ticket",
  errors: ["superseded", "expired", "ended", "left"],
});

export type TicketDeps = {
  sql: Sql;
  grouped: GroupedQueue;
  hub: Hub;
  tokens: TokenIssuer;
  metrics: Metrics;
  proofOfWork: ProofOfWork;
  streamBufferBytes: number;
};

/**
 * The stream of a presented token, answered on Node's response (or over, or refused with the token's
 * verdict). Apart from the handler on purpose: what the live stream keeps (its close listener)
 * must not close over the request's context, or every open stream would hold its request's Hono
 * context, headers and validated input for as long as it lives.
 */
async function openStream(
  hub: Hub,
  outgoing: ServerResponse,
  bufferBytes: number,
  presented: PresentedToken,
  resumeAfter: number | undefined,
): Promise<{ kind: "streaming" | "over" } | { kind: "refused"; code: string }> {
  let unsubscribe = () => {};
  const stream = sseResponse(outgoing, bufferBytes, () => unsubscribe());
  stream.client.write(formatSse({ retry: RETRY_MS }));
  const opened = await hub.open(presented, stream.client, resumeAfter);
  if (opened.kind !== "streaming") return opened;
  unsubscribe = opened.unsubscribe;
  // A client that left while its stream was being opened is not kept subscribed.
  if (!stream.start()) unsubscribe();
  return { kind: "streaming" };
}

export function mountTickets({ mount, mountOnNode }: Router, deps: TicketDeps): void {
  const { sql, grouped, hub, tokens, metrics, proofOfWork } = deps;

  // The rush sends tens of thousands in one second: served on Node's request, ahead of the framework.
  mountOnNode(joinRoute, async ({ params: { room }, body: { proof_of_work: proof, ...request }, trusted }) => {
    if (!trusted && (request.holder !== undefined || request.priority !== undefined || request.tier !== undefined)) {
      throw new ApiError("forbidden", "holder, priority and tier may only be set with the server key");
    }
    // The server key is exempt (no proof is asked of the protected app's backend); an anonymous
    // join without a proof shows 0 bits: enough only in a room that asks for none.
    const proven = trusted ? undefined : proof ? await proofOfWork.verify(room, proof) : 0;
    const joined = await grouped.join(room, proven === undefined ? request : { ...request, proven });
    metrics.joins.inc();
    return {
      status: 202,
      json: {
        ...joined,
        // join answers in O(1); the stream's first state carries the estimate.
        eta_seconds: null,
        events_url: `/v1/tickets/${joined.ticket_id}/events`,
      } satisfies z.input<typeof joinResponse>,
    };
  });

  mount(challengeRoute, async (c) => {
    const { room } = c.req.valid("param");
    const bits = (await queue.proofOfWorkBits(sql, room)) ?? 0;
    c.header("cache-control", "no-store");
    return c.json(await proofOfWork.issue(room, bits), 200);
  });

  /** The ticket's state, unless the token is unknown or superseded. */
  const stateOf = async (ticketId: string, token: string) => {
    const { code, state } = await grouped.tokenState({ ticketId, token });
    if (!state) throw verdictError(code);
    return state;
  };

  mount(ticketRoute, async (c) => {
    const { id } = c.req.valid("param");
    const state = await stateOf(id, c.var.ticketToken);
    const shares = await queue.ticketShares(sql, id, c.var.ticketToken);
    return c.json(
      {
        ...ticketView(state),
        ...(shares
          ? {
              shares: {
                ...shares,
                next_share_at: shares.next_share_at ? new Date(shares.next_share_at).toISOString() : null,
              },
            }
          : {}),
      },
      200,
    );
  });

  // The rush opens thousands of these at once: served on Node's request, ahead of the framework.
  mountOnNode(eventsRoute, async ({ method, params, query, headers, ticketToken, outgoing }) => {
    const resume = headers["last-event-id"] || query.lastEventId || undefined;
    const resumeAfter = resume === undefined ? undefined : Number(resume);
    const presented = { ticketId: params.id, token: ticketToken };
    // 204 tells EventSource to stop reconnecting: the ticket is over and the client has seen how it ended.
    const over = { status: 204 };
    if (method === "HEAD") {
      // A HEAD opens no stream: it says what a GET would.
      const state = await stateOf(presented.ticketId, presented.token);
      return queue.terminalStatuses.has(state.status) && resumeAfter === undefined
        ? over
        : { status: 200, headers: sseHeaders };
    }
    const opened = await openStream(hub, outgoing, deps.streamBufferBytes, presented, resumeAfter);
    if (opened.kind === "refused") throw verdictError(opened.code);
    return opened.kind === "over" ? over : undefined;
  });

  /** A fresh admission token for the seat a claim or heartbeat found held. */
  const admission = async (seat: {
    holder: string | null;
    room: string;
    ticketId: string;
    instance: number;
    expiresAt: Date;
  }) => {
    const signed = await tokens.sign(seat);
    return { admission_token: signed.token, admission_expires_at: signed.expiresAt.toISOString() };
  };

  mount(claimRoute, async (c) => {
    const { id } = c.req.valid("param");
    const claimed = await queue.claim(sql, id, c.var.ticketToken);
    if (!claimed.ok || !claimed.expires_at || !claimed.status || !claimed.room_id || claimed.instance === null) {
      throw verdictError(claimed.code);
    }
    const signed = await admission({
      holder: claimed.holder,
      room: claimed.room_id,
      ticketId: id,
      instance: claimed.instance,
      expiresAt: claimed.expires_at,
    });
    metrics.claims.inc();
    return c.json(
      { ticket_id: id, status: claimed.status, ...signed, expires_at: claimed.expires_at.toISOString() },
      200,
    );
  });

  mount(heartbeatRoute, async (c) => {
    const { id } = c.req.valid("param");
    const { code, state, holder } = await queue.heartbeat(sql, id, c.var.ticketToken);
    if (code !== "ok" || !state) throw verdictError(code);
    const seatEnds = state.status === "active" || state.status === "draining" ? state.expires_at : null;
    const signed = seatEnds
      ? await admission({
          holder,
          room: state.room_id,
          ticketId: id,
          instance: state.instance,
          expiresAt: new Date(seatEnds),
        })
      : {};
    return c.json({ ...ticketView(state), ...signed }, 200);
  });

  mount(leaveRoute, async (c) => {
    const verdict = await queue.leave(sql, c.req.valid("param").id, c.var.ticketToken);
    if (!verdict.ok) throw verdictError(verdict.code);
    return c.body(null, 204);
  });
}
