import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { connectSql, type Sql } from "../../src/db/client.js";
import { asServiceRole, useTestDatabase } from "../helpers/database.js";
import { at, createRoom, join } from "../helpers/queue.js";

/*
 * One door: the service's role reaches the tables only through the verbs. The
 * catalog shows it holds no privilege on any relation (so every statement the
 * service sends that touches a table directly fails, and the HTTP, stream and
 * scheduler tests all run as this role), and the clock is not its to move.
 */

const db = useTestDatabase();
const serviceRole = inject("serviceRole").name;

/** Every privilege `role` holds on a table, view or sequence of schema waitroom or public. */
async function relationPrivileges(role: string): Promise<string[]> {
  const rows = await db.sql<{ privilege: string }[]>`
    select c.oid::regclass::text || ' ' || p.privilege as privilege
      from pg_class c
      join pg_namespace n on n.oid = c.relnamespace
     cross join unnest(array['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) p(privilege)
     where n.nspname in ('waitroom', 'public') and c.relkind in ('r', 'p', 'v', 'm', 'f')
       and has_table_privilege(${role}, c.oid, p.privilege)
    union all
    select c.oid::regclass::text || ' ' || p.privilege
      from pg_class c
      join pg_namespace n on n.oid = c.relnamespace
     cross join unnest(array['USAGE', 'SELECT', 'UPDATE']) p(privilege)
     where n.nspname in ('waitroom', 'public') and c.relkind = 'S'
       and has_sequence_privilege(${role}, c.oid, p.privilege)
     order by 1`;
  return rows.map((row) => row.privilege);
}

describe("the service's role", () => {
  it("holds no privilege on any table, view or sequence of schema waitroom or public", async () => {
    // The catalog really lists them: the test would pass vacuously on an empty schema.
    const [relations] = await db.sql<{ n: number }[]>`
      select count(*)::int as n from pg_class where relnamespace = 'waitroom'::regnamespace and relkind in ('r', 'v', 'S')`;
    expect(relations?.n).toBeGreaterThan(5);
    expect(await relationPrivileges(serviceRole)).toEqual([]);
    expect(await relationPrivileges("waitroom_app")).toEqual([]);
    expect(await relationPrivileges("waitroom_worker")).toEqual([]);
  });

  it("is refused when it reads or writes a table directly", async () => {
    for (const statement of [
      "select count(*) from waitroom.tickets",
      "select kid from waitroom.signing_keys",
      "update waitroom.rooms set capacity = 1000",
      "select * from waitroom.room_stats",
      "select * from public.waitroom_sql_state",
    ]) {
      await expect(db.serviceSql.unsafe(statement), statement).rejects.toMatchObject({ code: "42501" });
    }
  });

  it("may call every verb and no private helper; every verb runs as its owner with search_path pinned", async () => {
    const rows = await db.sql<{ fn: string; granted: boolean; definer: boolean; config: string[] | null }[]>`
      select p.oid::regprocedure::text as fn, has_function_privilege(${serviceRole}, p.oid, 'EXECUTE') as granted,
             p.prosecdef as definer, p.proconfig as config
        from pg_proc p
       where p.pronamespace = 'waitroom'::regnamespace
       order by 1`;
    const verbs = rows.filter((row) => !row.fn.startsWith("waitroom._"));
    const helpers = rows.filter((row) => row.fn.startsWith("waitroom._"));
    expect(verbs.length).toBeGreaterThan(20);
    expect(helpers.length).toBeGreaterThan(10);
    expect(verbs.filter((row) => !row.granted || !row.definer).map((row) => row.fn)).toEqual([]);
    const pinned = (row: { config: string[] | null }) => row.config?.includes("search_path=pg_catalog, pg_temp");
    expect(verbs.filter((row) => !pinned(row)).map((row) => row.fn)).toEqual([]);
    expect(helpers.filter((row) => row.granted).map((row) => row.fn)).toEqual([]);
  });

  it("is a member of waitroom_app and waitroom_worker and of nothing else", async () => {
    const rows = await db.sql<{ role: string }[]>`
      select g.rolname as role
        from pg_auth_members m
        join pg_roles g on g.oid = m.roleid
        join pg_roles u on u.oid = m.member
       where u.rolname = ${serviceRole}
       order by 1`;
    expect(rows.map((row) => row.role)).toEqual(["waitroom_app", "waitroom_worker"]);
    const [attributes] = await db.sql`
      select rolsuper, rolcreaterole, rolcreatedb, rolbypassrls from pg_roles where rolname = ${serviceRole}`;
    expect(attributes).toEqual({ rolsuper: false, rolcreaterole: false, rolcreatedb: false, rolbypassrls: false });
  });
});

/** One call of each verb that takes p_now ($1), on a room and ticket of the fixture. */
function callsWithNow(room: string, ticket: { ticket_id: string; token: string }): Record<string, string> {
  const id = `'${ticket.ticket_id}'::uuid`;
  const token = `'${ticket.token}'`;
  return {
    create_room: `select waitroom.create_room('${room}-new', 1, '{}', $1)`,
    configure_room: `select waitroom.configure_room('${room}', '{"tick_ms": 900}', $1)`,
    put_room: `select waitroom.put_room('${room}', '{"tick_ms": 800}', $1)`,
    join: `select * from waitroom.join('${room}', null, 0, $1)`,
    join_many: `select * from waitroom.join_many('${room}', 2, null, null, $1)`,
    admit: `select * from waitroom.admit('${room}', null, $1)`,
    claim: `select * from waitroom.claim(${id}, ${token}, $1)`,
    heartbeat: `select * from waitroom.heartbeat(${id}, ${token}, $1)`,
    heartbeat_state: `select * from waitroom.heartbeat_state(${id}, ${token}, $1)`,
    check: `select * from waitroom.check(${id}, ${token}, $1)`,
    touch: `select waitroom.touch(array[${id}], $1)`,
    check_admission: `select * from waitroom.check_admission(${id}, 1, 'kid', $1)`,
    renew_admission: `select * from waitroom.renew_admission(${id}, 1, 'kid', $1)`,
    positions: `select * from waitroom.positions('${room}', array[${id}], $1)`,
    position: `select * from waitroom.position(${id}, $1)`,
    ticket_states: `select * from waitroom.ticket_states(array[${id}], array[${token}], $1)`,
    sweep: `select * from waitroom.sweep(1000, '${room}', $1)`,
    tick: `select waitroom.tick('${room}', $1)`,
    health_due: `select waitroom.health_due('${room}', $1)`,
    opening_wait: `select waitroom.opening_wait('${room}', $1)`,
    set_health: `select waitroom.set_health('${room}', true, null, $1)`,
    history: `select * from waitroom.history('${room}', 60, $1)`,
    add_stock: `select * from waitroom.add_stock('${room}', 5, $1)`,
    settle: `select * from waitroom.settle(${id}, 'consumed', $1)`,
    holder_shares: `select * from waitroom.holder_shares('${room}', 'someone', null, $1)`,
    ticket_shares: `select * from waitroom.ticket_shares(${id}, ${token}, $1)`,
    leave: `select * from waitroom.leave(${id}, ${token}, $1)`,
    delete_room: `select waitroom.delete_room('${room}-gone', $1)`,
  };
}

describe("p_now", () => {
  let room: string;
  let calls: Record<string, string>;
  let clockRole: string;
  let clockSql: Sql | undefined;

  beforeAll(async () => {
    room = await createRoom(db.sql, 1, { idle_seconds: 3600, claim_seconds: 3600 });
    await db.sql`select waitroom.create_room(${`${room}-gone`}, 1)`;
    calls = callsWithNow(room, await join(db.sql, room));
    clockRole = `waitroom_clock_test_${randomBytes(4).toString("hex")}`;
    const password = randomBytes(12).toString("hex");
    await db.sql.unsafe(`create role ${clockRole} login password '${password}' in role waitroom_app, waitroom_clock`);
    const url = new URL(asServiceRole(db.url));
    url.username = clockRole;
    url.password = password;
    clockSql = await connectSql(url.toString(), { max: 1 });
  });
  afterAll(async () => {
    await clockSql?.end({ timeout: 5 });
    await db.sql.unsafe(`drop role if exists ${clockRole}`);
  });

  it("is tried below for every verb that takes it", async () => {
    const rows = await db.sql<{ name: string }[]>`
      select p.proname as name from pg_proc p
       where p.pronamespace = 'waitroom'::regnamespace and p.proname !~ '^_' and 'p_now' = any (p.proargnames)`;
    expect(rows.map((row) => row.name).sort()).toEqual(Object.keys(calls).sort());
  });

  it("is refused with WR403 from the service's role, by every verb, and nothing changes", async () => {
    const before = await db.sql`select count(*)::int as events from waitroom.events`;
    for (const [verb, statement] of Object.entries(calls)) {
      await expect(db.serviceSql.unsafe(statement, [at(5)]), verb).rejects.toMatchObject({
        code: "WR403",
        message: expect.stringContaining(`role ${serviceRole} may not pass p_now`),
      });
    }
    expect(await db.sql`select count(*)::int as events from waitroom.events`).toEqual(before);
    // Without p_now the same role is served.
    await expect(db.serviceSql`select * from waitroom.join(${room}, null, 0)`).resolves.toHaveLength(1);
  });

  it("is honoured for the schema's owner (the superuser here) and for members of waitroom_clock", async () => {
    const [joined] = await (clockSql as Sql)<{ ticket_id: string }[]>`
      select ticket_id from waitroom.join(${room}, null, 0, ${at(7)})`;
    const [row] = await db.sql`select queued_at from waitroom.tickets where id = ${joined?.ticket_id ?? null}`;
    expect(row?.queued_at).toEqual(at(7));
    for (const [verb, statement] of Object.entries(calls)) {
      await expect(db.sql.unsafe(statement, [at(10)]), verb).resolves.toBeDefined();
    }
  });
});
