import { describe, expect, it } from "vitest";
import { useTestDatabase } from "../helpers/database.js";
import { useTestServer } from "../helpers/http.js";

/*
 * /metrics names rooms and error counts: a deployment can ask for a key, or
 * serve it on a port of its own that only the scraper's network reaches.
 */

const db = useTestDatabase();
const METRICS_KEY = "metrics-key-for-tests-0123456789";
const keyed = useTestServer(db, { env: { WAITROOM_METRICS_KEY: METRICS_KEY } });
const separate = useTestServer(db, { env: { WAITROOM_METRICS_PORT: "0", WAITROOM_METRICS_KEY: METRICS_KEY } });
const open = useTestServer(db);

const get = async (url: string, key?: string) => {
  const response = await fetch(url, { headers: key ? { authorization: `Bearer ${key}` } : {} });
  const text = await response.text();
  return { status: response.status, type: response.headers.get("content-type"), text };
};
const envelope = (code: string) => ({ error: { code, message: expect.any(String) } });

describe("/metrics", () => {
  it("is open on the main port by default", async () => {
    expect(open.metricsUrl).toBeUndefined();
    const answer = await get(`${open.url}/metrics`);
    expect(answer.status).toBe(200);
    expect(answer.text).toContain("# TYPE waitroom_sse_streams gauge");
  });

  it("requires the key when WAITROOM_METRICS_KEY is set, refusing without it, a wrong one and another scheme", async () => {
    for (const key of [undefined, "wrong-key-0123456789", `${METRICS_KEY}x`]) {
      const refused = await get(`${keyed.url}/metrics`, key);
      expect(refused.status).toBe(401);
      expect(JSON.parse(refused.text)).toEqual(envelope("unauthorized"));
    }
    const basic = await fetch(`${keyed.url}/metrics`, { headers: { authorization: `Basic ${METRICS_KEY}` } });
    expect(basic.status).toBe(401);
    const answer = await get(`${keyed.url}/metrics`, METRICS_KEY);
    expect(answer.status).toBe(200);
    expect(answer.type).toMatch(/^text\/plain/);
    expect(answer.text).toContain("# TYPE waitroom_sse_streams gauge");
  });

  it("is served only on its own port when WAITROOM_METRICS_PORT is set; that port serves nothing else", async () => {
    const metricsUrl = separate.metricsUrl ?? "";
    expect(metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(metricsUrl).not.toBe(separate.url);
    const main = await get(`${separate.url}/metrics`, METRICS_KEY);
    expect(main.status).toBe(404);
    expect(JSON.parse(main.text)).toEqual(envelope("not_found"));

    expect((await get(`${metricsUrl}/metrics`)).status).toBe(401);
    const answer = await get(`${metricsUrl}/metrics`, METRICS_KEY);
    expect(answer.status).toBe(200);
    expect(answer.text).toContain("# TYPE waitroom_sse_streams gauge");
    for (const path of ["/v1/rooms/x/tickets", "/readyz", "/"]) {
      const other = await get(`${metricsUrl}${path}`);
      expect(other.status).toBe(404);
      expect(JSON.parse(other.text)).toEqual(envelope("not_found"));
    }
    // The main port goes on serving the API.
    expect((await get(`${separate.url}/healthz`)).status).toBe(200);
  });
});
