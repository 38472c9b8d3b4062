import type { ServerResponse } from "node:http";
import type { StreamClient } from "../events/hub.js";

export const sseHeaders = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache, no-transform",
  connection: "keep-alive",
  // nginx and friends: pass each event through at once.
  "x-accel-buffering": "no",
} as const;

export type SseResponse = {
  /** What the hub writes to. Until start(), writes are held (the open may still be refused). */
  client: StreamClient;
  /**
   * Send the headers and everything written so far; from now on writes go straight to the socket.
   * False when the stream is already over (the client left while it was being opened, say).
   */
  start(): boolean;
};

/**
 * A text/event-stream written straight to Node's response: a Web ReadableStream per stream, piped
 * by the adapter, cost as much CPU as the rest of an open (bench/notes/rush.md). Writes never wait:
 * a client that lets more than `bufferBytes` pile up in the process is disconnected (it reconnects
 * and resumes with Last-Event-ID) instead of holding memory or anyone else up.
 */
export function sseResponse(outgoing: ServerResponse, bufferBytes: number, onGone: () => void): SseResponse {
  let started = false;
  let open = true;
  let held: string[] = [];
  const finish = () => {
    if (!open) return false;
    open = false;
    onGone();
    return true;
  };
  // The client went away, or the response ended.
  outgoing.once("close", finish);
  const client: StreamClient = {
    write(text) {
      if (!open) return false;
      if (!started) {
        held.push(text);
        return true;
      }
      if (outgoing.writableLength > bufferBytes) {
        // Too far behind: drop what is queued and cut the connection.
        if (finish()) outgoing.destroy();
        return false;
      }
      outgoing.write(text);
      return true;
    },
    close() {
      // Before start() the held text is still sent, then the response ends.
      if (finish() && started) outgoing.end();
    },
  };
  return {
    client,
    start() {
      started = true;
      if (outgoing.destroyed) return false;
      outgoing.writeHead(200, sseHeaders);
      outgoing.write(held.join(""));
      held = [];
      if (!open) outgoing.end();
      return open;
    },
  };
}
