import net from "node:net";

/*
 * One event stream read straight off a TCP socket: the rush's clients hold
 * up to 19,000 of them on the same two cores as the service, and Node's
 * http.get cost them about as much CPU per stream as the service spent
 * answering it (bench/notes/rush.md). This speaks the little of HTTP/1.1 the
 * stream needs, as load generators like autocannon do: one GET, the status
 * line and headers, a chunked (or close-delimited) body; then Server-Sent
 * Events blocks. The body is read as latin1 (one character per byte, so chunk
 * sizes stay byte counts): the benchmark only reads event names and numbers.
 */

export type EventStreamHandlers = {
  /** The TCP connection is established. */
  connected(): void;
  /** One SSE block (the lines between blank lines), at the moment the read that completed it ended. */
  message(block: string): void;
  /** The stream ended before it was answered with 200 (the reason: "HTTP 404", "ECONNRESET", …). */
  refused(why: string): void;
  /** The stream ended after its 200: the service closed it, or the connection failed. */
  ended(why: string): void;
};

type Phase = "head" | "size" | "data" | "crlf" | "raw" | "done";

export function openEventStream(
  target: { host: string; port: number; path: string; localAddress?: string },
  handlers: EventStreamHandlers,
): { destroy(): void } {
  const socket = net.connect({ host: target.host, port: target.port, localAddress: target.localAddress });
  socket.setEncoding("latin1");
  let phase: Phase = "head";
  let input = "";
  let events = "";
  let chunkLeft = 0;
  let answered = false;

  const finish = (why: string) => {
    if (phase === "done") return;
    phase = "done";
    if (answered) handlers.ended(why);
    else handlers.refused(why);
    socket.destroy();
  };
  const body = (text: string) => {
    events += text;
    let end = events.indexOf("\n\n");
    while (end >= 0) {
      handlers.message(events.slice(0, end));
      events = events.slice(end + 2);
      end = events.indexOf("\n\n");
    }
  };
  const head = (text: string): Phase => {
    const [statusLine = "", ...lines] = text.split("\r\n");
    const status = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1];
    if (status !== "200") {
      finish(status ? `HTTP ${status}` : "not HTTP");
      return "done";
    }
    const headers = new Map<string, string>();
    for (const line of lines) {
      const colon = line.indexOf(":");
      headers.set(
        line.slice(0, colon).trim().toLowerCase(),
        line
          .slice(colon + 1)
          .trim()
          .toLowerCase(),
      );
    }
    if (!headers.get("content-type")?.startsWith("text/event-stream")) {
      finish("not an event stream");
      return "done";
    }
    answered = true;
    return headers.get("transfer-encoding") === "chunked" ? "size" : "raw";
  };

  socket.once("connect", () => {
    handlers.connected();
    socket.write(
      `GET ${target.path} HTTP/1.1\r\nHost: ${target.host}:${target.port}\r\nAccept: text/event-stream\r\n\r\n`,
    );
  });
  socket.on("data", (text: string) => {
    input += text;
    for (;;) {
      if (phase === "head") {
        const end = input.indexOf("\r\n\r\n");
        if (end < 0) return;
        const headText = input.slice(0, end);
        input = input.slice(end + 4);
        phase = head(headText);
      } else if (phase === "size") {
        const end = input.indexOf("\r\n");
        if (end < 0) return;
        chunkLeft = Number.parseInt(input.slice(0, end), 16);
        input = input.slice(end + 2);
        if (!Number.isInteger(chunkLeft)) return finish("bad chunk");
        if (chunkLeft === 0) return finish("closed by the service");
        phase = "data";
      } else if (phase === "data") {
        if (input === "") return;
        const part = input.slice(0, chunkLeft);
        input = input.slice(part.length);
        chunkLeft -= part.length;
        body(part);
        if (chunkLeft === 0) phase = "crlf";
      } else if (phase === "crlf") {
        if (input.length < 2) return;
        input = input.slice(2);
        phase = "size";
      } else if (phase === "raw") {
        body(input);
        input = "";
        return;
      } else {
        return;
      }
    }
  });
  socket.on("end", () => finish("closed by the service"));
  socket.on("error", (error: NodeJS.ErrnoException) => finish(error.code ?? error.message));
  socket.on("close", () => finish("closed"));
  return {
    destroy: () => {
      phase = "done";
      socket.destroy();
    },
  };
}
