import type { IncomingMessage } from "node:http";
import type { Context } from "hono";
import { ApiError } from "./errors.js";
import type { AppEnv } from "./route.js";

/*
 * Request bodies, read straight from Node's request: building Hono's Web body stream to read `{}`
 * cost more than the join itself (bench/notes/http-join.md), and zod-openapi's own JSON validator
 * reads through it. Routes declare their body schema in their definition; mount() validates it with
 * what this module reads.
 */

/** HTTP/1.1 delimits every body by Content-Length or Transfer-Encoding: without either there is none. */
function hasBody(c: Context): boolean {
  const length = c.req.header("content-length");
  return c.req.header("transfer-encoding") !== undefined || (length !== undefined && length !== "0");
}

export const tooLarge = (limit: number) => new ApiError("payload_too_large", `the body exceeds ${limit} bytes`);

/** The body as text; stops reading past `limit` (the answer then closes the connection). */
function readBody(incoming: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const stop = () => {
      incoming.off("data", onData);
      incoming.off("end", onEnd);
      incoming.off("error", onError);
      incoming.off("close", onClose);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        stop();
        incoming.pause();
        reject(tooLarge(limit));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      stop();
      resolve(Buffer.concat(chunks, size).toString("utf8"));
    };
    const onError = (error: Error) => {
      stop();
      reject(error);
    };
    const onClose = () => {
      stop();
      reject(new ApiError("invalid_request", "the request body was cut short"));
    };
    incoming.on("data", onData);
    incoming.on("end", onEnd);
    incoming.on("error", onError);
    incoming.on("close", onClose);
  });
}

/** The JSON body, {} when empty; anything but JSON is unsupported_media_type or invalid_request. */
export async function jsonBody(c: Context<AppEnv>, limit: number): Promise<unknown> {
  if (!hasBody(c)) return {};
  const text = await readBody(c.env.incoming, limit);
  if (text.trim() === "") return {};
  const type = c.req.header("content-type") ?? "";
  if (!/^application\/json\b/i.test(type)) {
    throw new ApiError("unsupported_media_type", "the body must be JSON (Content-Type: application/json)");
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError("invalid_request", "the body is not valid JSON");
  }
}
