import type { IncomingMessage } from "node:http";
import { ApiError } from "./errors.js";

/*
 * Request bodies, read straight from Node's request: building Hono's Web body stream to read `{}`
 * cost more than the join itself (bench/notes/http-join.md), and zod-openapi's own JSON validator
 * reads through it. Routes declare their body schema in their definition; their guard (guard.ts)
 * validates what this module reads.
 */

/** HTTP/1.1 delimits every body by Content-Length or Transfer-Encoding: without either there is none. */
function hasBody(incoming: IncomingMessage): boolean {
  const length = incoming.headers["content-length"];
  return incoming.headers["transfer-encoding"] !== undefined || (length !== undefined && length !== "0");
}

export const tooLarge = (limit: number) => new ApiError("payload_too_large", `the body exceeds ${limit} bytes`);

/**
 * The body as text; stops reading past `limit` (the answer then closes the connection). The promise
 * settles once: whatever the request emits after that changes nothing. Few closures: under tsx each
 * one is named as it is made, and a join makes these by the thousand per second.
 */
function readBody(incoming: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    incoming.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
      else if (!incoming.isPaused()) {
        incoming.pause();
        reject(tooLarge(limit));
      }
    });
    incoming.on("end", () => resolve(Buffer.concat(chunks, size).toString("utf8")));
    incoming.on("error", reject);
    // After "end" this is a no-op; before it, the client went away mid-body.
    incoming.on("close", () => reject(new ApiError("invalid_request", "the request body was cut short")));
  });
}

/** The JSON body, {} when empty; anything but JSON is unsupported_media_type or invalid_request. */
export async function jsonBody(incoming: IncomingMessage, limit: number): Promise<unknown> {
  if (!hasBody(incoming)) return {};
  const text = await readBody(incoming, limit);
  if (text.trim() === "") return {};
  const type = incoming.headers["content-type"] ?? "";
  if (!/^application\/json\b/i.test(type)) {
    throw new ApiError("unsupported_media_type", "the body must be JSON (Content-Type: application/json)");
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError("invalid_request", "the body is not valid JSON");
  }
}
