import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { cp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { runner } from "node-pg-migrate";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { withClient } from "../src/db/client.js";
import { MIGRATIONS_TABLE, migrate, migrationNames, sqlDir } from "../src/db/migrate.js";
import { createLogger } from "../src/log.js";
import { asServiceRole } from "./helpers/database.js";

const run = promisify(execFile);
const log = createLogger("silent");
const root = join(import.meta.dirname, "..");

const created: string[] = [];
const clients: pg.Client[] = [];
const scratch: string[] = [];

/** A new, empty database on the test server; dropped after the file. */
async function emptyDatabase(): Promise<string> {
  const name = `waitroom_migrate_${randomBytes(5).toString("hex")}`;
  await withClient(inject("serverUrl"), (client) => client.query(`create database ${name}`));
  created.push(name);
  const url = new URL(inject("serverUrl"));
  url.pathname = `/${name}`;
  return url.toString();
}

async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  clients.push(client);
  return client;
}

/** Ended after each test, so a failing test's open transaction cannot hold up the next ones. */
let perTest: pg.Client[] = [];
async function connectForTest(url: string): Promise<pg.Client> {
  const client = await connect(url);
  perTest.push(client);
  return client;
}

afterEach(async () => {
  await Promise.all(perTest.map((client) => client.end().catch(() => {})));
  perTest = [];
});

/** A copy of sql/ to change in a test. */
async function sqlCopy(): Promise<string> {
  const dir = join(tmpdir(), `waitroom-sql-${randomBytes(5).toString("hex")}`);
  await cp(sqlDir, dir, { recursive: true });
  scratch.push(dir);
  return dir;
}

/** How a promise stands after `ms`, without waiting for it any longer. */
async function stateAfter(promise: Promise<unknown>, ms: number): Promise<"pending" | "resolved" | "rejected"> {
  const outcome = promise.then(
    () => "resolved" as const,
    () => "rejected" as const,
  );
  return Promise.race([outcome, new Promise<"pending">((resolve) => setTimeout(() => resolve("pending"), ms))]);
}

/** Identity of every function, view and type of schema waitroom: drop + create changes it, a no-op does not. */
async function catalogIdentity(client: pg.Client): Promise<string[]> {
  const { rows } = await client.query<{ item: string }>(`
    select p.oid || ' ' || p.oid::regprocedure || ' ' || p.xmin as item
      from pg_proc p where p.pronamespace = 'waitroom'::regnamespace
    union all
    select c.oid || ' ' || c.oid::regclass || ' ' || c.xmin
      from pg_class c where c.relnamespace = 'waitroom'::regnamespace and c.relkind = 'v'
    order by 1`);
  return rows.map((row) => row.item);
}

afterAll(async () => {
  await Promise.all(clients.map((client) => client.end().catch(() => {})));
  await withClient(inject("serverUrl"), async (client) => {
    for (const name of created) await client.query(`drop database if exists ${name} with (force)`);
  });
  await Promise.all(scratch.map((dir) => rm(dir, { recursive: true, force: true })));
});

describe("migrate on an empty database", () => {
  let url: string;
  let db: pg.Client;

  beforeAll(async () => {
    url = await emptyDatabase();
    db = await connect(url);
  });

  it("succeeds from 3 concurrent callers; exactly one applies the schema", async () => {
    const { rows } = await db.query("select count(*)::int as n from pg_namespace where nspname = 'waitroom'");
    expect(rows[0].n).toBe(0);

    const results = await Promise.all([migrate(url, log), migrate(url, log), migrate(url, log)]);

    expect(results.filter((result) => result.migrations.includes("0001_schema"))).toHaveLength(1);
    expect(results.filter((result) => result.sqlApplied)).toHaveLength(1);
    expect(results.flatMap((result) => result.migrations)).toEqual(await migrationNames());
  });

  it("creates the waitroom functions and views", async () => {
    const { rows } = await db.query(
      "select count(*)::int as n from pg_proc where pronamespace = 'waitroom'::regnamespace",
    );
    expect(rows[0].n).toBeGreaterThan(10);
    const names = await db.query<{ name: string }>(`
      select proname as name from pg_proc where pronamespace = 'waitroom'::regnamespace
      union select relname from pg_class where relnamespace = 'waitroom'::regnamespace and relkind in ('r', 'v')`);
    expect(names.rows.map((row) => row.name)).toEqual(
      expect.arrayContaining([
        ...["create_room", "configure_room", "join", "admit", "claim", "heartbeat", "leave", "check", "position"],
        ...["sweep", "room_stats", "queue", "recent_events", "rooms", "tickets", "events"],
      ]),
    );
    // And they work.
    await db.query("select waitroom.create_room('smoke', 1)");
    const joined = await db.query("select * from waitroom.join('smoke', 'alice')");
    expect(joined.rows[0]).toMatchObject({ status: "queued" });
  });

  it("gives every non-underscore function, table, view and type of schema waitroom a comment", async () => {
    const { rows } = await db.query<{ kind: string; name: string; comment: string | null }>(`
      select 'function' as kind, p.oid::regprocedure::text as name, obj_description(p.oid, 'pg_proc') as comment
        from pg_proc p
       where p.pronamespace = 'waitroom'::regnamespace and p.proname !~ '^_'
      union all
      select case c.relkind when 'v' then 'view' else 'table' end, c.oid::regclass::text,
             obj_description(c.oid, 'pg_class')
        from pg_class c
       where c.relnamespace = 'waitroom'::regnamespace and c.relkind in ('r', 'p', 'v', 'm') and c.relname !~ '^_'
      union all
      select 'type', t.oid::regtype::text, obj_description(t.oid, 'pg_type')
        from pg_type t join pg_class c on c.oid = t.typrelid
       where t.typnamespace = 'waitroom'::regnamespace and c.relkind = 'c'`);
    expect(rows.filter((row) => row.kind === "function").length).toBeGreaterThan(10);
    expect(rows.filter((row) => row.kind === "view").length).toBeGreaterThanOrEqual(3);
    expect(rows.filter((row) => row.kind === "table").length).toBeGreaterThanOrEqual(3);
    const missing = rows.filter((row) => !row.comment?.trim()).map((row) => `${row.kind} ${row.name}`);
    expect(missing).toEqual([]);
  });

  it("records each migration once in the migrations table", async () => {
    const { rows } = await db.query("select name from public.waitroom_migrations order by id");
    expect(rows.map((row) => row.name)).toEqual(await migrationNames());
  });

  it("does nothing when run again, and still succeeds", async () => {
    const before = await catalogIdentity(db);
    const migrations = await db.query("select id, name, run_on from public.waitroom_migrations order by id");
    expect(before.length).toBeGreaterThan(10);

    const again = await migrate(url, log);

    expect(again).toEqual({ migrations: [], sqlApplied: false });
    expect(await catalogIdentity(db)).toEqual(before);
    expect((await db.query("select id, name, run_on from public.waitroom_migrations order by id")).rows).toEqual(
      migrations.rows,
    );
    // The room made before is untouched.
    expect((await db.query("select id from waitroom.rooms")).rows).toEqual([{ id: "smoke" }]);
  });

  it("restores a function dropped by hand", async () => {
    const sweep = await db.query<{ signature: string }>(
      `select oid::regprocedure::text as signature from pg_proc
        where pronamespace = 'waitroom'::regnamespace and proname = 'sweep' order by oid limit 1`,
    );
    const signature = sweep.rows[0]?.signature as string;
    await db.query(`drop function ${signature}`);
    const result = await migrate(url, log);
    expect(result).toEqual({ migrations: [], sqlApplied: true });
    const { rows } = await db.query("select to_regprocedure($1) is not null as ok", [signature]);
    expect(rows[0].ok).toBe(true);
  });
});

describe("migrate from separate processes", () => {
  it("2 `npx tsx src/main.ts migrate` processes and an in-process caller all succeed", async () => {
    const url = await emptyDatabase();
    const child = () =>
      run("npx", ["tsx", "src/main.ts", "migrate"], {
        cwd: root,
        env: { ...process.env, DATABASE_URL: url, LOG_LEVEL: "info" },
        timeout: 60_000,
      });
    const [first, second, inProcess] = await Promise.all([child(), child(), migrate(url, log)]);

    const logged = [first, second].map(({ stdout }) =>
      stdout
        .split("\n")
        .filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line) as { msg: string; migrations?: string[] }),
    );
    for (const lines of logged) {
      expect(lines.map((line) => line.msg)).toEqual([
        expect.stringMatching(/^database (migrated|already up to date)$/),
      ]);
    }
    const applied = [
      ...logged.flatMap((lines) => lines.flatMap((line) => line.migrations ?? [])),
      ...inProcess.migrations,
    ];
    expect(applied).toEqual(await migrationNames());

    const db = await connect(url);
    const { rows } = await db.query("select name from public.waitroom_migrations order by id");
    expect(rows).toEqual((await migrationNames()).map((name) => ({ name })));
    const count = await db.query(
      "select count(*)::int as n from pg_proc where pronamespace = 'waitroom'::regnamespace",
    );
    expect(count.rows[0].n).toBeGreaterThan(10);
  });
});

describe("re-applying sql/", () => {
  let url: string;
  let db: pg.Client;

  beforeAll(async () => {
    url = await emptyDatabase();
    await migrate(url, log);
    db = await connect(url);
  });

  it("rolls back everything when a file fails", async () => {
    const dir = await sqlCopy();
    // A change early in the order, then a file that fails.
    await writeFile(
      join(dir, "05_changed.sql"),
      "comment on type waitroom.verdict is 'changed by a migrate that must roll back';\n" +
        "create function waitroom.should_not_exist() returns int language sql as 'select 1';\n",
    );
    await writeFile(join(dir, "95_broken.sql"), "select 1 / 0;\n");
    const before = await catalogIdentity(db);

    await expect(migrate(url, log, { sqlDir: dir })).rejects.toThrow(/sql\/95_broken\.sql: division by zero/);

    expect(await catalogIdentity(db)).toEqual(before);
    const { rows } = await db.query(`
      select to_regprocedure('waitroom.should_not_exist()') as fn,
             obj_description('waitroom.verdict'::regtype, 'pg_type') as comment`);
    expect(rows[0].fn).toBeNull();
    expect(rows[0].comment).not.toMatch(/roll back/);
    // What was recorded as applied is still the real sql/: nothing to do.
    expect(await migrate(url, log)).toEqual({ migrations: [], sqlApplied: false });
  });

  it("a migrate with nothing new leaves a client's open transaction alone", async () => {
    const client = await connectForTest(url);
    await client.query("begin");
    await client.query("select waitroom.create_room('mid', 2)");
    await client.query("select * from waitroom.join('mid', 'alice')");

    expect(await migrate(url, log)).toEqual({ migrations: [], sqlApplied: false });

    // Same functions, same plans: the transaction carries on and commits.
    const bob = await client.query("select * from waitroom.join('mid', 'bob')");
    expect(bob.rows[0]).toMatchObject({ status: "queued" });
    const stats = await client.query("select queued from waitroom.room_stats where room_id = 'mid'");
    expect(Number(stats.rows[0].queued)).toBe(2);
    await client.query("commit");
    const tickets = await db.query("select holder from waitroom.tickets where room_id = 'mid' order by seq");
    expect(tickets.rows.map((row) => row.holder)).toEqual(["alice", "bob"]);
  });

  it("applies a changed sql/ while a client is mid-transaction; the client's session carries on", async () => {
    const dir = await sqlCopy();
    await writeFile(join(dir, "99_note.sql"), "comment on view waitroom.room_stats is 'v2';\n");
    const client = await connectForTest(url);
    await client.query("begin");
    await client.query("select waitroom.create_room('mid2', 2)");
    await client.query("select * from waitroom.join('mid2', 'alice')");

    expect(await migrate(url, log, { sqlDir: dir })).toEqual({ migrations: [], sqlApplied: true });

    // Functions and types were dropped and re-created under the open transaction: its next call may
    // fail with "cache lookup failed" (PostgreSQL's answer to a function, or a type a function uses —
    // join writes waitroom.ledger_entry rows — replaced mid-transaction), nothing else.
    const next = await client.query("select * from waitroom.join('mid2', 'bob')").then(
      () => "ok",
      (error: Error) => error.message,
    );
    expect(next).toMatch(/^(ok|cache lookup failed for (function|type) \d+)$/);
    await client.query(next === "ok" ? "commit" : "rollback");
    // The same session then works with the new definitions.
    await client.query("select waitroom.create_room('after', 2)");
    const carol = await client.query("select * from waitroom.join('after', 'carol')");
    expect(carol.rows[0]).toMatchObject({ status: "queued", position: "1" });
    const comment = await db.query("select obj_description('waitroom.room_stats'::regclass, 'pg_class') as c");
    expect(comment.rows[0].c).toBe("v2");
  });

  it("waits for a transaction that holds a view, without blocking or deadlocking anyone meanwhile", async () => {
    // The database now holds the copy's sql/ (previous test): the real sql/ is a change to apply.
    const reader = await connectForTest(url);
    await reader.query("begin");
    await reader.query("select * from waitroom.room_stats");

    const migrating = migrate(url, log);
    expect(await stateAfter(migrating, 1_500)).toBe("pending");

    // Meanwhile the reader can use the other views and functions, and so can everyone else.
    const other = await connectForTest(url);
    const elsewhere = Promise.all([
      other.query("select count(*) from waitroom.queue"),
      other.query("select count(*) from waitroom.room_stats"),
      other.query("select * from waitroom.join('mid', 'carol')"),
    ]);
    expect(await stateAfter(elsewhere, 3_000)).toBe("resolved");
    await reader.query("select count(*) from waitroom.queue");
    await reader.query("select count(*) from waitroom.recent_events");
    await reader.query("select * from waitroom.join('mid', 'dave')");
    await reader.query("commit");

    expect(await migrating).toEqual({ migrations: [], sqlApplied: true });
    const comment = await db.query("select obj_description('waitroom.room_stats'::regclass, 'pg_class') as c");
    expect(comment.rows[0].c).not.toBe("v2");
    const holders = await db.query("select holder from waitroom.tickets where room_id = 'mid' order by seq");
    expect(holders.rows.map((row) => row.holder)).toEqual(["alice", "bob", "carol", "dave"]);
  });

  it("stops waiting and rolls back when aborted", async () => {
    const dir = await sqlCopy();
    await writeFile(join(dir, "99_note.sql"), "comment on view waitroom.room_stats is 'v3';\n");
    const holder = await connectForTest(url);
    await holder.query("select pg_advisory_lock(8602272712111386477)"); // the migrate lock
    const controller = new AbortController();
    const migrating = migrate(url, log, { sqlDir: dir, signal: controller.signal });
    expect(await stateAfter(migrating, 500)).toBe("pending");

    controller.abort(new Error("test abort"));
    await expect(migrating).rejects.toThrow("test abort");
    await holder.query("select pg_advisory_unlock(8602272712111386477)");

    const comment = await db.query("select obj_description('waitroom.room_stats'::regclass, 'pg_class') as c");
    expect(comment.rows[0].c).not.toBe("v3");
    expect(await migrate(url, log)).toEqual({ migrations: [], sqlApplied: false });
  });

  it("needs no privilege beyond the service's role against a current schema, and cannot migrate as it", async () => {
    const service = asServiceRole(url);
    expect(await migrate(service, log)).toEqual({ migrations: [], sqlApplied: false });
    const dir = await sqlCopy();
    await writeFile(join(dir, "99_note.sql"), "comment on view waitroom.room_stats is 'v4';\n");
    await expect(migrate(service, log, { sqlDir: dir })).rejects.toThrow(/permission denied|must be owner/);
    const comment = await db.query("select obj_description('waitroom.room_stats'::regclass, 'pg_class') as c");
    expect(comment.rows[0].c).not.toBe("v4");
  });

  it("changes a type that functions return (waitroom.ticket_state) on a database that holds tickets", async () => {
    const attributes = async () => {
      const { rows } = await db.query<{ name: string }>(`
        select attname as name from pg_attribute
         where attrelid = 'waitroom.ticket_state'::regclass and attnum > 0 and not attisdropped order by attnum`);
      return rows.map((row) => row.name);
    };
    const real = await attributes();
    const dir = await sqlCopy();
    const types = join(dir, "00_types.sql");
    const text = await readFile(types, "utf8");
    expect(text).toContain("  end_reason       text\n);");
    await writeFile(types, text.replace("  end_reason       text\n);", "  end_reason       text,\n  spare text\n);"));
    await db.query("select waitroom.create_room('shape', 1)");
    const { rows: joined } = await db.query("select * from waitroom.join('shape', 'ada')");
    const ticket = joined[0];

    expect(await migrate(url, log, { sqlDir: dir })).toEqual({ migrations: [], sqlApplied: true });
    expect(await attributes()).toEqual([...real, "spare"]);
    // Back to the real sql/: positions and the verbs that carry its rows are made anew over the real type.
    expect(await migrate(url, log)).toEqual({ migrations: [], sqlApplied: true });
    expect(await attributes()).toEqual(real);
    const { rows } = await db.query(
      "select ordinal, code, (state).status, (state).position from waitroom.ticket_states(array[$1::uuid], array[$2])",
      [ticket.ticket_id, ticket.token],
    );
    expect(rows).toEqual([{ ordinal: 1, code: "queued", status: "queued", position: "1" }]);
  });
});

/** A new database migrated up to (not including) `migration`, and the names of the migrations left to run. */
async function databaseBefore(migration: string) {
  const url = await emptyDatabase();
  const before = join(tmpdir(), `waitroom-migrations-${randomBytes(5).toString("hex")}`);
  scratch.push(before);
  await cp(join(root, "migrations"), before, { recursive: true });
  const all = await migrationNames(join(root, "migrations"));
  expect(all).toContain(migration);
  const names = all.filter((name) => name >= migration);
  for (const name of names) await rm(join(before, `${name}.sql`));
  const client = await connectForTest(url);
  await runner({ dbClient: client, dir: before, migrationsTable: MIGRATIONS_TABLE, direction: "up", log: () => {} });
  return { url, client, names };
}

describe("migration 0010 (the admission tally)", () => {
  it("counts the admissions a database already holds in its ledger", async () => {
    // The schema as it stood before 0010, rows written straight into the ledger.
    const { url, client, names } = await databaseBefore("0010_admission_tally");
    await client.query(`
      insert into waitroom.events (room_id, ticket_id, type, created_at)
      select room, gen_random_uuid(), type, at
        from (values ('a', 'admitted', timestamptz '2030-01-01 00:00:00', 3),
                     ('a', 'admitted', timestamptz '2030-01-01 00:00:01', 2),
                     ('b', 'admitted', timestamptz '2030-01-01 00:00:00', 1),
                     ('a', 'joined',   timestamptz '2030-01-01 00:00:00', 4)) v(room, type, at, n)
       cross join generate_series(1, v.n)`);

    expect((await migrate(url, log)).migrations).toEqual(names);
    const { rows } = await client.query(
      "select room_id, admitted_at, admitted from waitroom.admission_tally order by room_id, admitted_at",
    );
    expect(rows).toEqual([
      { room_id: "a", admitted_at: new Date("2030-01-01T00:00:00Z"), admitted: 3 },
      { room_id: "a", admitted_at: new Date("2030-01-01T00:00:01Z"), admitted: 2 },
      { room_id: "b", admitted_at: new Date("2030-01-01T00:00:00Z"), admitted: 1 },
    ]);
  });
});

describe("migration 0011 (drawn places taken at join time)", () => {
  it("turns the places of tickets drawn before it into seqs below every sequence number, in the same order", async () => {
    // The schema before 0011, with a room drawn the old way: draw_rank beside a permuted sequence number.
    const { url, client, names } = await databaseBefore("0011_drawn_places_at_join");
    await client.query(`
      create sequence public.drawn_room_seq;
      insert into waitroom.rooms (id, capacity, queue_seq) values ('drawn', 10, 'public.drawn_room_seq');
      insert into waitroom.tickets (id, room_id, token_hash, seq, queued_at, last_seen_at, draw_rank)
      select ('00000000-0000-0000-0000-00000000000' || v.n)::uuid, 'drawn', sha256('x'), v.seq, now(), now(), v.rank
        from (values (1, 3, 2), (2, 1, 3), (3, 2, 1), (4, 4, null)) v(n, seq, rank)`);

    expect((await migrate(url, log)).migrations).toEqual(names);
    const { rows } = await client.query(
      "select right(id::text, 1) as ticket, seq < 0 as drawn from waitroom.tickets order by seq",
    );
    // Drawn first, in the draw's order (ranks 1, 2, 3), then the one that joined after the opening.
    expect(rows).toEqual([
      { ticket: "3", drawn: true },
      { ticket: "1", drawn: true },
      { ticket: "2", drawn: true },
      { ticket: "4", drawn: false },
    ]);
    const { rows: columns } = await client.query(
      "select 1 from information_schema.columns where table_schema = 'waitroom' and column_name = 'draw_rank'",
    );
    expect(columns).toEqual([]);
  });
});
