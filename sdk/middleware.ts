/*
 * Middleware that lets through only requests carrying a valid admission
 * token, for Hono, Express and plain node:http. Each is typed by the shape it
 * uses (structurally), so the SDK depends on none of them. A refused request
 * gets the service's error envelope: {"error": {"code": <reason>, "message"}}.
 */
import { AdmissionError, type AdmissionFailure, type AdmissionVerifier, type VerifiedAdmission } from "./verify.js";

export type MiddlewareOptions = {
  /** Also take the token from this cookie (after `Authorization: Bearer`). */
  cookie?: string;
};

/** Request headers as node:http and Express hold them (lower-case names). */
type NodeHeaders = Record<string, string | string[] | undefined>;

/** A refusal, ready to send. */
export type Refusal = { status: number; headers: Record<string, string>; body: string };

const statusFor: Record<AdmissionFailure, number> = {
  missing: 401,
  malformed: 401,
  unsupported_algorithm: 401,
  unknown_key: 401,
  bad_signature: 401,
  wrong_issuer: 401,
  expired: 401,
  not_yet_valid: 401,
  // A valid seat of another room: the visitor is known, but not let in here (as POST /v1/check says).
  wrong_room: 403,
  jwks_unavailable: 503,
};

function refusal(error: AdmissionError): Refusal {
  const status = statusFor[error.reason];
  const headers: Record<string, string> = { "content-type": "application/json", "cache-control": "no-store" };
  if (status === 401) headers["www-authenticate"] = `Bearer error="invalid_token", error_description="${error.reason}"`;
  return { status, headers, body: JSON.stringify({ error: { code: error.reason, message: error.message } }) };
}

/** The token of a request: `Authorization: Bearer …`, else the named cookie. */
export function admissionToken(header: (name: string) => string | undefined, cookie?: string): string | undefined {
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(header("authorization") ?? "");
  if (bearer) return bearer[1];
  if (!cookie) return undefined;
  for (const pair of (header("cookie") ?? "").split(";")) {
    const at = pair.indexOf("=");
    if (at > 0 && pair.slice(0, at).trim() === cookie) return decodeURIComponent(pair.slice(at + 1).trim());
  }
  return undefined;
}

/** Verify a request's token: its admission, or the answer that refuses it. */
export async function admit(
  verifier: AdmissionVerifier,
  header: (name: string) => string | undefined,
  options: MiddlewareOptions = {},
): Promise<{ admission: VerifiedAdmission } | { refusal: Refusal }> {
  const token = admissionToken(header, options.cookie);
  try {
    if (!token) throw new AdmissionError("missing", "no admission token: wait your turn in the waiting room");
    return { admission: await verifier.verify(token) };
  } catch (error) {
    if (error instanceof AdmissionError) return { refusal: refusal(error) };
    throw error;
  }
}

const nodeHeader = (headers: NodeHeaders) => (name: string) => {
  const value = headers[name];
  return Array.isArray(value) ? value.join(", ") : value;
};

/** What the Hono middleware uses of a Context. */
export type HonoContextLike = {
  req: { header(name: string): string | undefined };
  set(key: "admission", value: VerifiedAdmission): void;
};

/** Hono: `app.use(honoAdmission(verifier))`; the admission is `c.get("admission")`. */
export function honoAdmission(verifier: AdmissionVerifier, options: MiddlewareOptions = {}) {
  return async (c: HonoContextLike, next: () => Promise<void>): Promise<Response | undefined> => {
    const result = await admit(verifier, (name) => c.req.header(name), options);
    if ("refusal" in result) {
      const { status, headers, body } = result.refusal;
      return new Response(body, { status, headers });
    }
    c.set("admission", result.admission);
    await next();
    return undefined;
  };
}

/** What the Express middleware uses of a request and a response. */
export type ExpressRequestLike = { headers: NodeHeaders };
export type ExpressResponseLike = {
  locals: Record<string, unknown>;
  status(code: number): unknown;
  set(headers: Record<string, string>): unknown;
  send(body: string): unknown;
};

/** Express (4 and 5): `app.use(expressAdmission(verifier))`; the admission is `res.locals.admission`. */
export function expressAdmission(verifier: AdmissionVerifier, options: MiddlewareOptions = {}) {
  return (request: ExpressRequestLike, response: ExpressResponseLike, next: (error?: unknown) => void): void => {
    admit(verifier, nodeHeader(request.headers), options).then((result) => {
      if ("refusal" in result) {
        const { status, headers, body } = result.refusal;
        response.status(status);
        response.set(headers);
        response.send(body);
        return;
      }
      response.locals.admission = result.admission;
      next();
    }, next);
  };
}

/** What the node:http guard uses of a request and a response. */
export type NodeRequestLike = { headers: NodeHeaders };
export type NodeResponseLike = {
  writeHead(status: number, headers: Record<string, string>): unknown;
  end(body: string): unknown;
};

/**
 * Plain node:http: `const admission = await guard(req, res); if (!admission) return;` in a request
 * handler. A refused request has been answered when it resolves undefined.
 */
export function nodeAdmission(verifier: AdmissionVerifier, options: MiddlewareOptions = {}) {
  return async (request: NodeRequestLike, response: NodeResponseLike): Promise<VerifiedAdmission | undefined> => {
    const result = await admit(verifier, nodeHeader(request.headers), options);
    if ("admission" in result) return result.admission;
    const { status, headers, body } = result.refusal;
    response.writeHead(status, headers);
    response.end(body);
    return undefined;
  };
}
