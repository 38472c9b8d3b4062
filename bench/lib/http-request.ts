import http from "node:http";

/*
 * One HTTP request on a keep-alive agent, as the load generators send them
 * (bench/lib/http-load-child.ts, bench/lib/lifecycle-load-child.ts): the
 * status, and the body only when asked for (reading it costs the generator).
 */

export type Answer = { status: number; body: string | null };

export type RequestShape = {
  method: string;
  /** Sent as `Content-Type: application/json`, as a browser's fetch sends a JSON body; none when unset. */
  jsonBody?: string;
  /** A ticket's token, sent as `Authorization: Bearer …`. */
  bearer?: string;
};

export function request(agent: http.Agent, url: URL, shape: RequestShape, keepBody: boolean): Promise<Answer> {
  const headers: http.OutgoingHttpHeaders =
    shape.jsonBody === undefined
      ? { "content-length": "0" }
      : { "content-type": "application/json", "content-length": Buffer.byteLength(shape.jsonBody) };
  if (shape.bearer !== undefined) headers.authorization = `Bearer ${shape.bearer}`;
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: shape.method, agent, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => {
        if (keepBody) chunks.push(chunk);
      });
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, body: keepBody ? Buffer.concat(chunks).toString("utf8") : null }),
      );
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(shape.jsonBody);
  });
}
