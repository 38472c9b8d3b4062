import pg from "pg";
import postgres from "postgres";
import type { SessionTimeouts } from "../config/index.js";

export type Sql = postgres.Sql;

export type SqlOptions = {
  max?: number;
  timeouts?: SessionTimeouts;
  /** Called with each statement as it is handed to its connection (diagnostics, tests). */
  onQuery?: (statement: string) => void;
};

/** Startup parameters of a connection with these timeouts; a 0 is not sent (the server's own setting stays). */
export function timeoutParameters(timeouts: SessionTimeouts) {
  return {
    statement_timeout: timeouts.statementTimeoutMs,
    lock_timeout: timeouts.lockTimeoutMs,
    idle_in_transaction_session_timeout: timeouts.idleInTransactionTimeoutMs,
  };
}

/** The app's postgres.js client: bigint columns (counts, positions, event ids) as numbers. */
export function createSql(databaseUrl: string, options: SqlOptions = {}): Sql {
  return postgres(databaseUrl, {
    max: options.max ?? 10,
    connection: options.timeouts ? timeoutParameters(options.timeouts) : {},
    onnotice: () => {},
    ...(options.onQuery ? { debug: (_connection: number, statement: string) => options.onQuery?.(statement) } : {}),
    types: {
      bigint: {
        to: 20,
        from: [20],
        serialize: (value: number) => String(value),
        parse: (value: string) => Number(value),
      },
    },
  });
}

/**
 * A client whose first connection is up. postgres.js learns the server's array types on its first
 * connection, but sql.array() looks them up when a query is built: until then an array parameter
 * is sent as a scalar ("malformed array literal"). Services and tests start with this.
 */
export async function connectSql(databaseUrl: string, options: SqlOptions = {}): Promise<Sql> {
  const sql = createSql(databaseUrl, options);
  try {
    await sql`select 1`;
  } catch (error) {
    await sql.end({ timeout: 1 });
    throw error;
  }
  return sql;
}

/** One short-lived `pg` connection for administrative statements (create a database, say). */
export async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}
