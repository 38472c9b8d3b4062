import { readdir, readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { createClient, type SseMessage, SseParser, WaitroomError, type WaitroomEvent } from "../../sdk/index.js";

/*
 * The SDK's parser and reconnect loop against a scripted fetch: exact
 * control over chunking, timing and failures that a real server cannot
 * give. test/sdk/sdk.test.ts runs the same code against the real one.
 */

const TICKET = "0193a1b2-0000-7000-8000-000000000001";

const state = (fields: Record<string, unknown> = {}) =>
  JSON.stringify({
    ticket_id: TICKET,
    room_id: "launch",
    status: "queued",
    position: 2,
    depth: 2,
    approximate: false,
    eta_seconds: null,
    eta_low_seconds: null,
    eta_high_seconds: null,
    expires_at: null,
    ...fields,
  });

const sse = (text: string) => new Response(text, { headers: { "content-type": "text/event-stream" } });
const envelope = (status: number, code: string) =>
  Response.json({ error: { code, message: `${code} for a test` } }, { status });

/** A stream that stays open (until the request is aborted) after sending `text`. */
function openStream(text: string, signal: AbortSignal | null | undefined): Response {
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new TextEncoder().encode(text));
      signal?.addEventListener("abort", () => controller.error(signal.reason));
    },
  });
  return new Response(body, { headers: { "content-type": "text/event-stream" } });
}

type Call = { at: number; url: string; lastEventId: string | null; authorization: string | null };

/** A fetch that answers from a script, one step per call, and records each call. */
function scripted(steps: Array<(init: RequestInit | undefined) => Response | Promise<Response>>) {
  const calls: Call[] = [];
  const fetch: typeof globalThis.fetch = async (input, init) => {
    const headers = new Headers(init?.headers);
    calls.push({
      at: performance.now(),
      url: String(input),
      lastEventId: headers.get("last-event-id"),
      authorization: headers.get("authorization"),
    });
    const step = steps[calls.length - 1];
    if (!step) throw new Error(`unexpected call ${calls.length}`);
    return step(init);
  };
  return { fetch, calls };
}

function parse(chunks: string[]) {
  const messages: SseMessage[] = [];
  const retries: number[] = [];
  const parser = new SseParser({ message: (m) => messages.push(m), retry: (ms) => retries.push(ms) });
  for (const chunk of chunks) parser.push(chunk);
  return { messages, retries };
}

describe("the SSE parser", () => {
  const input =
    "retry: 1500\n\n: keep-alive\n\n" +
    'event: state\ndata: {"a":1}\n\n' +
    "id: 7\r\nevent: admitted\r\ndata: line1\r\ndata:line2\r\nunknown: field\r\n\r\n" +
    "retry: soon\nevent: x\rdata\r\r" +
    "data: dropped without its blank line";
  const expected = {
    messages: [
      { event: "state", data: '{"a":1}', id: undefined },
      { event: "admitted", data: "line1\nline2", id: "7" },
      { event: "x", data: "", id: undefined },
    ],
    retries: [1500],
  };

  it("reads fields, comments, retry and every line ending", () => {
    expect(parse([input])).toEqual(expected);
  });

  it("gives the same messages however the stream is cut into chunks, even inside \\r\\n", () => {
    for (let i = 0; i <= input.length; i++) {
      expect(parse([input.slice(0, i), input.slice(i)]), `cut at ${i}`).toEqual(expected);
    }
    expect(parse([...input])).toEqual(expected);
  });
});

describe("subscribe's reconnect loop", () => {
  it("honours retry:, backs off on failures, sends Last-Event-ID, de-duplicates and stops on 204", async () => {
    const { fetch, calls } = scripted([
      () => sse(`retry: 50\n\nevent: state\ndata: ${state()}\n\nevent: room\nid: 5\ndata: ${state({ room: {} })}\n\n`),
      () => envelope(503, "not_ready"),
      () => Promise.reject(new TypeError("fetch failed")),
      // The replay repeats event 5, which was already delivered.
      () =>
        sse(
          `event: room\nid: 5\ndata: ${state({ room: {} })}\n\nevent: admitted\nid: 6\ndata: ${state({ status: "admitted", position: null })}\n\n`,
        ),
      () => new Response(null, { status: 204 }),
    ]);
    const ticket = createClient({ baseUrl: "http://waitroom.test/", fetch }).ticket(TICKET, "secret");
    const events: WaitroomEvent[] = [];
    const errors: unknown[] = [];
    const end = await ticket.subscribe((event) => events.push(event), { onError: (error) => errors.push(error) });

    expect(end).toEqual({ reason: "over", lastEventId: "6" });
    expect(events.map((e) => [e.type, e.id])).toEqual([
      ["state", undefined],
      ["room", "5"],
      ["admitted", "6"],
    ]);
    expect(calls.map((c) => c.url)).toEqual(Array(5).fill(`http://waitroom.test/v1/tickets/${TICKET}/events`));
    expect(calls.map((c) => c.authorization)).toEqual(Array(5).fill("Bearer secret"));
    expect(calls.map((c) => c.lastEventId)).toEqual([null, "5", "5", "5", "6"]);
    expect(errors).toEqual([expect.any(WaitroomError), expect.any(TypeError)]);
    expect(errors[0]).toMatchObject({ status: 503, code: "not_ready" });

    // Delays: retry (50 ms, not the default 2 s), then doubling while attempts fail, reset by a good connection;
    // each stretched by up to half for jitter.
    const gaps = calls.slice(1).map((c, i) => c.at - (calls[i] as Call).at);
    const [first, second, third, fourth] = gaps as [number, number, number, number];
    expect(first).toBeGreaterThanOrEqual(45);
    expect(first).toBeLessThan(500);
    expect(second).toBeGreaterThanOrEqual(95);
    expect(third).toBeGreaterThanOrEqual(195);
    expect(fourth).toBeGreaterThanOrEqual(45);
    expect(fourth).toBeLessThan(190);
  });

  it("gives up at once on an error a retry cannot fix", async () => {
    const { fetch, calls } = scripted([() => envelope(401, "unauthorized")]);
    const ticket = createClient({ baseUrl: "http://waitroom.test", fetch }).ticket(TICKET, "secret");
    const failure = await ticket.subscribe(() => {}).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(WaitroomError);
    expect(failure).toMatchObject({ status: 401, code: "unauthorized", message: "unauthorized for a test" });
    expect(calls).toHaveLength(1);
  });

  it("reconnects when a stream goes quiet for idleTimeoutMs", async () => {
    const { fetch, calls } = scripted([
      (init) => openStream(`retry: 10\n\nevent: state\nid: 3\ndata: ${state()}\n\n`, init?.signal),
      () => new Response(null, { status: 204 }),
    ]);
    const ticket = createClient({ baseUrl: "http://waitroom.test", fetch }).ticket(TICKET, "secret");
    const errors: unknown[] = [];
    const end = await ticket.subscribe(() => {}, { idleTimeoutMs: 100, onError: (error) => errors.push(error) });
    expect(end.reason).toBe("over");
    expect(calls).toHaveLength(2);
    expect(calls[1]?.at).toBeGreaterThanOrEqual((calls[0]?.at ?? 0) + 100);
    expect(errors).toHaveLength(1);
  });

  it("stops when its signal aborts, closing the open stream", async () => {
    const { fetch, calls } = scripted([(init) => openStream(`event: state\ndata: ${state()}\n\n`, init?.signal)]);
    const ticket = createClient({ baseUrl: "http://waitroom.test", fetch }).ticket(TICKET, "secret");
    const controller = new AbortController();
    const events: WaitroomEvent[] = [];
    const end = await ticket.subscribe(
      (event) => {
        events.push(event);
        controller.abort();
      },
      { signal: controller.signal },
    );
    expect(end).toEqual({ reason: "aborted", lastEventId: undefined });
    expect(events).toHaveLength(1);
    expect(calls).toHaveLength(1);
  });

  it("turns an answer without the error envelope into a WaitroomError too", async () => {
    const { fetch } = scripted([() => new Response("<html>Bad Gateway</html>", { status: 502 })]);
    const failure = await createClient({ baseUrl: "http://waitroom.test", fetch })
      .join("launch")
      .catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(WaitroomError);
    expect(failure).toMatchObject({ status: 502, code: "unexpected_response", name: "WaitroomError" });
    expect((failure as Error).message).toContain("Bad Gateway");
  });
});

describe("the SDK's source", () => {
  it("imports nothing but its own files, so a browser bundle needs no Node built-ins or packages", async () => {
    const dir = new URL("../../sdk/", import.meta.url);
    const files = (await readdir(dir)).filter((file) => file.endsWith(".ts"));
    expect(files).toContain("index.ts");
    for (const file of files) {
      const source = await readFile(new URL(file, dir), "utf8");
      const imports = [...source.matchAll(/\bfrom\s+"([^"]+)"|\bimport\(\s*"([^"]+)"/g)].map((m) => m[1] ?? m[2]);
      for (const specifier of imports) expect(specifier, `${file} imports ${specifier}`).toMatch(/^\.\/[\w-]+\.js$/);
      expect(source, file).not.toMatch(/\b(process|Buffer|require|__dirname)\b/);
    }
  });
});
