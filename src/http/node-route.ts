import type { IncomingMessage, ServerResponse } from "node:http";
import type { z } from "zod";
import type { Logger } from "../log.js";
import type { Metrics } from "../metrics.js";
import { tooLarge } from "./body.js";
import { asApiError, errorAnswer, parse } from "./errors.js";
import { type GuardOptions, guardOf } from "./guard.js";
import { countError, countRequest } from "./observe.js";
import type { Route } from "./route.js";

/*
 * A defined route served on Node's request itself, ahead of the framework: the calls of the rush,
 * by the thousand in one second (the join, the event stream). The adapter's Web Request, the router,
 * the middleware chain and the validators cost about a third of a stream open's CPU and nearly half
 * of a join's (bench/notes/rush.md, bench/notes/http-join.md). Here the definition is still the
 * route: its own schemas validate, its guard (guard.ts: security, origin, body, rate limit) is the
 * one the framework's routes use, its error codes are the documented ones, and /openapi.json
 * describes it like any other.
 */

type JsonSchemaOf<B> = B extends { content: { "application/json": { schema: infer S extends z.ZodType } } } ? S : never;

/** A GET or POST route; a POST may take a JSON body. */
export type NodeDefinition = Route & { method: "get" | "post" };

type Part<D extends NodeDefinition, K extends "params" | "query" | "headers"> = D["request"] extends {
  [P in K]: infer S extends z.ZodType;
}
  ? z.infer<S>
  : undefined;

type BodyOf<D extends NodeDefinition> = D["request"] extends { body: infer B } ? z.infer<JsonSchemaOf<B>> : undefined;

/** Whether one of a route's security requirements names the ticket's token. */
type NamesTicketToken<R> = R extends unknown ? ("ticketToken" extends keyof R ? true : never) : never;

/** A string on routes secured by the ticket's token, which the guard then requires. */
type TicketTokenOf<D extends NodeDefinition> = D extends { security: readonly (infer R)[] }
  ? [NamesTicketToken<R>] extends [never]
    ? undefined
    : string
  : undefined;

export type NodeRequest<D extends NodeDefinition> = {
  /** HEAD is answered by the same handler as GET (Node drops the body of its answer). */
  method: D["method"] extends "get" ? "GET" | "HEAD" : "POST";
  params: Part<D, "params">;
  query: Part<D, "query">;
  headers: Part<D, "headers">;
  body: BodyOf<D>;
  ticketToken: TicketTokenOf<D>;
  /** The caller presented the server key. */
  trusted: boolean;
  outgoing: ServerResponse;
};

/**
 * A status (and headers) with a JSON body or none, or undefined: the handler answered on `outgoing`
 * itself.
 */
export type NodeAnswer = { status: number; headers?: Readonly<Record<string, string>>; json?: unknown } | undefined;

export type NodeHandler<D extends NodeDefinition> = (request: NodeRequest<D>) => Promise<NodeAnswer>;

/** Serves the request if it is this route's (true), else leaves it to the framework (false). */
export type NodeRoute = (incoming: IncomingMessage, outgoing: ServerResponse) => boolean;

export type NodeRouteOptions = GuardOptions & { metrics: Metrics; log: Logger };

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

function answerWith(outgoing: ServerResponse, answer: NonNullable<NodeAnswer>): void {
  if (answer.json === undefined) {
    outgoing.writeHead(answer.status, answer.headers).end();
    return;
  }
  const body = JSON.stringify(answer.json);
  outgoing
    .writeHead(answer.status, {
      ...answer.headers,
      "content-type": "application/json",
      "content-length": String(Buffer.byteLength(body)),
    })
    .end(body);
}

export function nodeRoute<D extends NodeDefinition>(
  route: D,
  options: NodeRouteOptions,
  handler: NodeHandler<D>,
): NodeRoute {
  const methods = route.method === "get" ? ["GET", "HEAD"] : ["POST"];
  const label = route.path.replace(/\{([^}]+)\}/g, ":$1");
  const match = pathMatcher(route.path);
  const codes = route["x-error-codes"];
  const { params, query, headers } = route.request ?? {};
  if (Array.isArray(headers)) throw new Error(`${route.path}: a node route takes one schema of its headers`);
  const guard = guardOf(route, options);
  const { metrics, log, bodyLimitBytes } = options;

  return (incoming, outgoing) => {
    const method = incoming.method ?? "";
    if (!methods.includes(method)) return false;
    const url = incoming.url ?? "";
    const mark = url.indexOf("?");
    const path = match(mark < 0 ? url : url.slice(0, mark));
    if (!path) return false;
    const started = performance.now();
    const answer = async (): Promise<NodeAnswer> => {
      if (Number(incoming.headers["content-length"] ?? 0) > bodyLimitBytes) throw tooLarge(bodyLimitBytes);
      const caller = { env: { incoming } };
      const search = mark < 0 ? {} : queryOf(url.slice(mark + 1));
      const { ticketToken, trusted } = guard.credentials(caller, () => search.token);
      const body = await guard.body(incoming);
      const call = {
        method,
        params: params ? parse(params, path, "path") : undefined,
        query: query ? parse(query, search, "query") : undefined,
        headers: headers ? parse(headers, incoming.headers, "headers") : undefined,
        body,
        ticketToken,
        trusted,
        outgoing,
      } as NodeRequest<D>;
      guard.rateLimit(caller, trusted, body);
      return handler(call);
    };
    const finish = (status: number) => countRequest({ metrics, log }, { method, route: label, status, started });
    answer().then(
      (answered) => {
        if (answered) answerWith(outgoing, answered);
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
