import type { IncomingMessage, ServerResponse } from "node:http";
import type { z } from "zod";
import type { RateBucket } from "../config/index.js";
import type { Logger } from "../log.js";
import type { Metrics } from "../metrics.js";
import { tooLarge } from "./body.js";
import { ticketTokenOf } from "./credentials.js";
import { asApiError, errorAnswer, parse } from "./errors.js";
import type { Limiter } from "./limits.js";
import { countError, countRequest } from "./observe.js";
import type { Route } from "./route.js";

/*
 * A defined route served on Node's request itself, ahead of the framework: the event stream, whose
 * open is the rush (10,000 at the same instant). The adapter's Web Request, the router, the
 * middleware chain and the validators cost about a third of a stream open's CPU
 * (bench/notes/rush.md). Here the definition is still the route: its own schemas validate, its
 * security (the ticket's token) and its rate-limit bucket are enforced, its error codes are the
 * documented ones, and /openapi.json describes it like any other.
 */

/** A GET route with a path, a query and headers, for the ticket's token. */
export type NodeDefinition = Route & {
  method: "get";
  request: { params: z.ZodType; query: z.ZodType; headers: z.ZodType };
};

export type NodeRequest<D extends NodeDefinition> = {
  /** HEAD is answered by the same handler (Node drops the body of its answer). */
  method: "GET" | "HEAD";
  params: z.infer<D["request"]["params"]>;
  query: z.infer<D["request"]["query"]>;
  headers: z.infer<D["request"]["headers"]>;
  ticketToken: string;
  outgoing: ServerResponse;
};

/** A status (and headers) without a body, or undefined: the handler answered on `outgoing` itself. */
export type NodeAnswer = { status: number; headers?: Readonly<Record<string, string>> } | undefined;

export type NodeHandler<D extends NodeDefinition> = (request: NodeRequest<D>) => Promise<NodeAnswer>;

/** Serves the request if it is this route's (true), else leaves it to the framework (false). */
export type NodeRoute = (incoming: IncomingMessage, outgoing: ServerResponse) => boolean;

export type NodeRouteOptions = {
  metrics: Metrics;
  log: Logger;
  bodyLimitBytes: number;
  /** Absent: per-client rate limits are off. */
  limiter: Limiter | undefined;
};

/** The path's parameters, if `path` is the route's: /v1/tickets/{id}/events → { id }. */
function pathMatcher(template: string): (path: string) => Record<string, string> | undefined {
  const names: string[] = [];
  const pattern = new RegExp(
    `^${template.replace(/\{([^}]+)\}/g, (_, name: string) => {
      names.push(name);
      return "([^/]+)";
    })}$`,
  );
  const decode = (value: string) => {
    try {
      return decodeURIComponent(value);
    } catch {
      return value;
    }
  };
  return (path) => {
    const match = pattern.exec(path);
    return match ? Object.fromEntries(names.map((name, i) => [name, decode(match[i + 1] ?? "")])) : undefined;
  };
}

/** The query's parameters, the first of each name (as the framework reads them). */
function queryOf(search: string): Record<string, string> {
  const query: Record<string, string> = {};
  for (const [name, value] of new URLSearchParams(search)) if (!(name in query)) query[name] = value;
  return query;
}

export function nodeRoute<D extends NodeDefinition>(
  route: D,
  options: NodeRouteOptions,
  handler: NodeHandler<D>,
): NodeRoute {
  const schemes = new Set((route.security ?? []).flatMap((requirement) => Object.keys(requirement)));
  if (!schemes.has("ticketToken") || route["x-checks-origin"] || route.request.body) {
    throw new Error(`${route.path}: a node route takes the ticket's token, no body and no origin check`);
  }
  const inQuery = schemes.has("ticketTokenQuery");
  const bucket: RateBucket | undefined = route["x-rate-limit"];
  const label = route.path.replace(/\{([^}]+)\}/g, ":$1");
  const match = pathMatcher(route.path);
  const codes = route["x-error-codes"];
  const schemas: D["request"] = route.request;
  const { metrics, log, bodyLimitBytes, limiter } = options;

  return (incoming, outgoing) => {
    const method = incoming.method;
    if (method !== "GET" && method !== "HEAD") return false;
    const url = incoming.url ?? "";
    const mark = url.indexOf("?");
    const path = match(mark < 0 ? url : url.slice(0, mark));
    if (!path) return false;
    const started = performance.now();
    const answer = async (): Promise<NodeAnswer> => {
      if (Number(incoming.headers["content-length"] ?? 0) > bodyLimitBytes) throw tooLarge(bodyLimitBytes);
      const search = mark < 0 ? {} : queryOf(url.slice(mark + 1));
      const ticketToken = ticketTokenOf(incoming.headers.authorization, inQuery ? search.token : undefined);
      const request: NodeRequest<D> = {
        method,
        params: parse<D["request"]["params"]>(schemas.params, path, "path"),
        query: parse<D["request"]["query"]>(schemas.query, search, "query"),
        headers: parse<D["request"]["headers"]>(schemas.headers, incoming.headers, "headers"),
        ticketToken,
        outgoing,
      };
      // Last: a refused or invalid call costs no token.
      if (bucket && limiter) limiter.take(bucket, limiter.address({ env: { incoming } }));
      return handler(request);
    };
    const finish = (status: number) => countRequest({ metrics, log }, { method, route: label, status, started });
    answer().then(
      (answered) => {
        if (answered) outgoing.writeHead(answered.status, answered.headers).end();
        finish(outgoing.statusCode);
      },
      (error: unknown) => {
        const failure = asApiError(error, log, { method, route: label });
        countError({ metrics, log }, failure, label, codes);
        const { status, headers: answerHeaders, body } = errorAnswer(failure);
        if (!outgoing.headersSent) {
          outgoing.writeHead(status, { ...answerHeaders, "content-length": String(Buffer.byteLength(body)) }).end(body);
        } else outgoing.destroy();
        finish(status);
      },
    );
    return true;
  };
}
