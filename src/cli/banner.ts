import type { Config } from "../config/index.js";

/*
 * What a person starting the service in a terminal needs to read first: where it is and where its
 * pages are. Machines keep reading the JSON log lines, which are unchanged.
 */

/** A URL one can open: a service bound to every interface (0.0.0.0, ::) is reached at localhost. */
export function reachableUrl(listening: string): string {
  const url = new URL(listening);
  if (url.hostname === "0.0.0.0" || url.hostname === "[::]") url.hostname = "localhost";
  return url.origin;
}

export function startBanner(
  url: string,
  config: Pick<Config, "adminKey" | "databaseUrl" | "dataDir" | "embeddedPostgresPort" | "worker">,
): string {
  const base = reachableUrl(url);
  const database = config.databaseUrl
    ? `DATABASE_URL (${new URL(config.databaseUrl).host})`
    : `embedded PostgreSQL in ${config.dataDir}, on 127.0.0.1:${config.embeddedPostgresPort}`;
  const rows: Array<[string, string]> = [
    ["waiting room", `${base}/rooms/<room>`],
    [
      "dashboard",
      `${base}/admin  ${config.adminKey ? "(sign in with WAITROOM_ADMIN_KEY)" : "(off: WAITROOM_ADMIN_KEY is not set)"}`,
    ],
    ["API reference", `${base}/docs`],
    ["database", database],
    ["scheduler", config.worker ? "running in this process" : "off here (WAITROOM_WORKER=false)"],
  ];
  const width = Math.max(...rows.map(([label]) => label.length));
  return [
    "",
    `  waitroom is running at ${base}`,
    "",
    ...rows.map(([label, value]) => `  ${label.padEnd(width)}  ${value}`),
    "",
    "  Ctrl-C stops it. JSON logs follow.",
    "",
    "",
  ].join("\n");
}
