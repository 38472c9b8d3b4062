import { Hono } from "hono";
import type { Sql } from "../db/client.js";

export type AppDeps = { sql: Sql };

/** The HTTP application; everything it needs comes in through deps. */
export function createApp({ sql }: AppDeps): Hono {
  const app = new Hono();
  app.get("/healthz", (c) => c.json({ status: "ok" }));
  app.get("/readyz", async (c) => {
    try {
      await sql`select 1`;
      return c.json({ status: "ready" });
    } catch {
      return c.json({ error: { code: "not_ready", message: "database unreachable" } }, 503);
    }
  });
  return app;
}
