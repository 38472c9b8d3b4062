/*
 * A minimal Server-Sent Events reader on fetch's streaming body, as a browser
 * EventSource would see the stream (without reconnecting): every message is
 * stamped with performance.now() when the chunk that completed it was read.
 */

export type SseMessage = { event: string; data: string; id: string | undefined; at: number };

export class SseReader {
  readonly messages: SseMessage[] = [];
  readonly #abort = new AbortController();
  #waiters: Array<() => void> = [];
  #ended: Error | undefined;
  /** Settles when the response headers arrived (rejects on a non-200 answer). */
  readonly opened: Promise<void>;

  constructor(url: string) {
    this.opened = this.#read(url);
    // The read loop's failures surface through next(); opened's rejection is for the caller who awaits it.
    this.opened.catch(() => {});
  }

  async #read(url: string): Promise<void> {
    const response = await fetch(url, { headers: { accept: "text/event-stream" }, signal: this.#abort.signal });
    if (response.status !== 200 || !response.body) {
      const error = new Error(`event stream answered ${response.status}`);
      this.#finish(error);
      throw error;
    }
    void this.#consume(response.body);
  }

  async #consume(body: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for await (const chunk of body) {
        const at = performance.now();
        buffer += decoder.decode(chunk, { stream: true }).replace(/\r\n?/g, "\n");
        let end = buffer.indexOf("\n\n");
        while (end >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          this.#parse(block, at);
          end = buffer.indexOf("\n\n");
        }
      }
      this.#finish(new Error("event stream ended"));
    } catch (error) {
      this.#finish(error instanceof Error ? error : new Error(String(error)));
    }
  }

  #parse(block: string, at: number): void {
    let event = "message";
    let id: string | undefined;
    const data: string[] = [];
    for (const line of block.split("\n")) {
      if (line === "" || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
      else if (field === "id") id = value;
    }
    if (data.length === 0) return; // retry: lines and comments only
    this.messages.push({ event, data: data.join("\n"), id, at });
    this.#wake();
  }

  #finish(error: Error): void {
    this.#ended ??= error;
    this.#wake();
  }

  #wake(): void {
    for (const wake of this.#waiters.splice(0)) wake();
  }

  /** The first message (from index `from` on) with this event name, waiting up to timeoutMs for it. */
  async next(event: string, timeoutMs: number, from = 0): Promise<SseMessage> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const found = this.messages.slice(from).find((message) => message.event === event);
      if (found) return found;
      if (this.#ended) throw new Error(`no '${event}' event: ${this.#ended.message}`);
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`no '${event}' event within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  close(): void {
    this.#finish(new Error("closed"));
    this.#abort.abort();
  }
}
