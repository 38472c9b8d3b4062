import type pg from "pg";

/*
 * EXPLAIN (ANALYZE, BUFFERS) of every statement a call runs, nested ones
 * included: a plpgsql function is one opaque node to EXPLAIN, so the plans of
 * the statements inside it come from auto_explain (log_analyze, log_buffers,
 * log_nested_statements), whose LOG messages reach this session as notices
 * while client_min_messages is log.
 */

export type ExplainedStatement = {
  /** The statement, whitespace collapsed. */
  text: string;
  durationMs: number;
  /** Shared buffers hit and read by the statement (its plan's root, children included). */
  sharedHit: number;
  sharedRead: number;
  /** The plan node that looked at the most rows, e.g. "Seq Scan on tickets (49,300 rows, 700 filtered out)". */
  widestScan: { node: string; rows: number; removed: number } | null;
  /** Calls a waitroom function: its time includes statements listed separately. */
  wrapper: boolean;
};

type PlanNode = {
  "Node Type"?: string;
  "Relation Name"?: string;
  "Index Name"?: string;
  "Actual Rows"?: number;
  "Actual Loops"?: number;
  "Rows Removed by Filter"?: number;
  "Rows Removed by Join Filter"?: number;
  "Shared Hit Blocks"?: number;
  "Shared Read Blocks"?: number;
  Plans?: PlanNode[];
};

function widestScan(plan: PlanNode): ExplainedStatement["widestScan"] {
  let best: ExplainedStatement["widestScan"] = null;
  const visit = (node: PlanNode) => {
    const loops = node["Actual Loops"] ?? 1;
    const rows = (node["Actual Rows"] ?? 0) * loops;
    const removed = ((node["Rows Removed by Filter"] ?? 0) + (node["Rows Removed by Join Filter"] ?? 0)) * loops;
    const type = node["Node Type"] ?? "";
    if (node["Relation Name"] && (!best || rows + removed > best.rows + best.removed)) {
      const via = node["Index Name"] ? ` using ${node["Index Name"]}` : "";
      best = { node: `${type}${via} on ${node["Relation Name"]}`, rows, removed };
    }
    for (const child of node.Plans ?? []) visit(child);
  };
  visit(plan);
  return best;
}

/** Run `sql` once with auto_explain on for this session; every statement it ran, in completion order. */
export async function explainNested(
  client: pg.Client,
  sql: string,
  params: unknown[] = [],
): Promise<ExplainedStatement[]> {
  const functions = await client.query<{ name: string }>(
    "select distinct proname as name from pg_proc where pronamespace = 'waitroom'::regnamespace",
  );
  const callsWaitroom = new RegExp(`\\bwaitroom\\.(?:${functions.rows.map((row) => row.name).join("|")})\\s*\\(`, "i");
  const messages: string[] = [];
  const onNotice = (notice: { message?: string }) => {
    if (notice.message?.startsWith("duration:")) messages.push(notice.message);
  };
  await client.query("load 'auto_explain'");
  await client.query(`
    set auto_explain.log_analyze = on;
    set auto_explain.log_buffers = on;
    set auto_explain.log_timing = on;
    set auto_explain.log_nested_statements = on;
    set auto_explain.log_format = json;
    set auto_explain.log_level = log;
    set client_min_messages = log;
    set auto_explain.log_min_duration = 0`);
  client.on("notice", onNotice);
  try {
    await client.query(sql, params);
  } finally {
    await client.query("set auto_explain.log_min_duration = -1; reset client_min_messages");
    client.off("notice", onNotice);
  }
  const statements: ExplainedStatement[] = [];
  for (const message of messages) {
    const match = /^duration: ([\d.]+) ms\s+plan:\s*([\s\S]*)$/.exec(message);
    if (!match?.[1] || !match[2]) continue;
    let parsed: { "Query Text"?: string; Plan?: PlanNode };
    try {
      parsed = JSON.parse(match[2]);
    } catch {
      continue;
    }
    const text = (parsed["Query Text"] ?? "").replace(/\s+/g, " ").trim();
    const plan = parsed.Plan ?? {};
    statements.push({
      text,
      durationMs: Number(match[1]),
      sharedHit: plan["Shared Hit Blocks"] ?? 0,
      sharedRead: plan["Shared Read Blocks"] ?? 0,
      widestScan: widestScan(plan),
      wrapper: functions.rows.length > 0 && callsWaitroom.test(text),
    });
  }
  return statements;
}

/**
 * The slowest statements inside the call, the call itself (logged last) and the wrappers that take
 * nearly all of it left out. A statement that calls waitroom functions (`wrapper`) is timed with the
 * statements inside them, which are listed too.
 */
export function slowestInside(statements: readonly ExplainedStatement[], count: number): ExplainedStatement[] {
  const whole = statements.at(-1)?.durationMs ?? 0;
  return (
    statements
      .slice(0, -1)
      // Calls that pass the whole call through (admit → _admit) say nothing the total does not.
      .filter((statement) => statement.text !== "" && !(statement.wrapper && statement.durationMs >= 0.9 * whole))
      .sort((a, b) => b.durationMs - a.durationMs)
      .slice(0, count)
  );
}
