import type { StreamClient } from "../events/hub.js";

const encoder = new TextEncoder();

export const sseHeaders = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache, no-transform",
  connection: "keep-alive",
  // nginx and friends: pass each event through at once.
  "x-accel-buffering": "no",
} as const;

/**
 * A text/event-stream body with a bounded buffer. Writes never wait: a client
 * that lets more than `bufferBytes` pile up is disconnected (it reconnects and
 * resumes with Last-Event-ID) instead of holding memory or anyone else up.
 */
export function sseStream(
  bufferBytes: number,
  onGone: () => void,
): { body: ReadableStream<Uint8Array>; client: StreamClient } {
  let controller: ReadableStreamDefaultController<Uint8Array> | undefined;
  let open = true;
  const finish = () => {
    if (!open) return false;
    open = false;
    onGone();
    return true;
  };
  const body = new ReadableStream<Uint8Array>(
    {
      start: (c) => {
        controller = c;
      },
      cancel: () => {
        finish();
      },
    },
    new ByteLengthQueuingStrategy({ highWaterMark: bufferBytes }),
  );
  const client: StreamClient = {
    write(text) {
      if (!open || !controller) return false;
      if ((controller.desiredSize ?? 0) <= 0) {
        // Too far behind: drop what is queued and cut the connection.
        if (finish()) controller.error(new Error("event stream client too slow"));
        return false;
      }
      controller.enqueue(encoder.encode(text));
      return true;
    },
    close() {
      if (finish()) controller?.close();
    },
  };
  return { body, client };
}
