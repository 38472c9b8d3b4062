/*
 * An incremental text/event-stream parser (the WHATWG "interpret an event
 * stream" rules). EventSource cannot send an Authorization header, cannot
 * be given a fetch and hides reconnects, so the SDK reads the stream over
 * fetch and parses it here. Chunks may split anywhere, even inside "\r\n".
 */

export type SseMessage = {
  /** The `event:` field; "message" when there was none. */
  event: string;
  /** The `data:` lines joined with "\n". */
  data: string;
  /** The `id:` field of this message's own block; undefined when it had none. */
  id: string | undefined;
};

export type SseHandlers = {
  message(message: SseMessage): void;
  /** A valid `retry:` field: the reconnection delay the server asks for, in ms. */
  retry(ms: number): void;
};

export class SseParser {
  readonly #on: SseHandlers;
  /** An incomplete line carried over to the next chunk. */
  #pending = "";
  #data: string[] = [];
  #event = "";
  #id: string | undefined;

  constructor(handlers: SseHandlers) {
    this.#on = handlers;
  }

  /** Feed decoded text (TextDecoder already drops a leading BOM). */
  push(chunk: string): void {
    const text = this.#pending + chunk;
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (c !== "\n" && c !== "\r") continue;
      // A chunk ending in "\r" may be half of "\r\n": wait for the next one to know.
      if (c === "\r" && i === text.length - 1) break;
      this.#line(text.slice(start, i));
      if (c === "\r" && text[i + 1] === "\n") i++;
      start = i + 1;
    }
    this.#pending = text.slice(start);
  }

  /** The stream ended: an event without its closing blank line is dropped, as the spec says. */
  reset(): void {
    this.#pending = "";
    this.#data = [];
    this.#event = "";
    this.#id = undefined;
  }

  #line(line: string): void {
    if (line === "") {
      this.#dispatch();
      return;
    }
    if (line.startsWith(":")) return; // a comment, such as the server's keep-alive
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (field) {
      case "event":
        this.#event = value;
        break;
      case "data":
        this.#data.push(value);
        break;
      case "id":
        if (!value.includes("\u0000")) this.#id = value;
        break;
      case "retry":
        if (/^\d+$/.test(value)) this.#on.retry(Number(value));
        break;
      // Unknown fields are ignored.
    }
  }

  #dispatch(): void {
    const message = { event: this.#event || "message", data: this.#data.join("\n"), id: this.#id };
    const hasData = this.#data.length > 0;
    this.#data = [];
    this.#event = "";
    this.#id = undefined;
    // A block without data (e.g. only `retry:` or a comment) is not an event.
    if (hasData) this.#on.message(message);
  }
}
