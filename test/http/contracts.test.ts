import { describe, expect, it } from "vitest";
import { addStockRequest, historyQuery, joinRequest, roomId, roomSettings } from "../../src/http/contracts.js";
import { terminalStatuses, ticketStatuses } from "../../src/queue/index.js";
import { roomStats, shownSettings } from "../../src/queue/rooms.js";
import { useTestDatabase } from "../helpers/database.js";
import { at, uniqueRoomId } from "../helpers/queue.js";

/*
 * The HTTP layer validates with zod before anything reaches SQL, and SQL enforces the same rules
 * (verbs and table constraints). The two must agree on every value: zod refusing what SQL accepts
 * locks callers out, zod accepting what SQL refuses turns bad input into a 5xx or a different code.
 * Each value below is put to both; the database's answer is the rule.
 */

const db = useTestDatabase();

const rolledBack = Symbol("rolled back");

/** Whether SQL accepts it, in a transaction that is rolled back; a refusal must be `refusal` (WR400), nothing else. */
async function sqlAccepts(
  statement: (sql: typeof db.sql) => Promise<unknown>,
  refusal = "WR400",
): Promise<boolean | string> {
  try {
    await db.sql.begin(async (tx) => {
      await statement(tx as unknown as typeof db.sql);
      throw rolledBack;
    });
  } catch (error) {
    if (error === rolledBack) return true;
    const code = (error as { code?: string }).code;
    return code === refusal ? false : `refused with ${code}: ${(error as Error).message}`;
  }
  return "committed";
}

type Disagreement = { value: unknown; zod: boolean; sql: boolean | string };

async function disagreements(
  values: readonly unknown[],
  zodAccepts: (value: unknown) => boolean,
  statement: (sql: typeof db.sql, value: unknown) => Promise<unknown>,
): Promise<Disagreement[]> {
  const found: Disagreement[] = [];
  for (const value of values) {
    const zod = zodAccepts(value);
    const sql = await sqlAccepts((tx) => statement(tx, value));
    if (zod !== sql) found.push({ value, zod, sql });
  }
  return found;
}

const text = (length: number, unit = "x") => unit.repeat(length);

describe("zod and the database agree", () => {
  it("on room ids", async () => {
    const values = ["a", "0", "a-b_c", "9z", text(48), text(49), "", "A", "-a", "_a", "a b", "é", "a/b", "a.b", "a\nb"];
    const found = await disagreements(
      values,
      (value) => roomId.safeParse(value).success,
      (sql, value) => sql`select waitroom.create_room(${value as string}, 1, '{}', ${at(0)})`,
    );
    // create_room checks the id before it names the room's sequence after it; the table's constraint
    // (rooms_id_is_a_slug) must say the same.
    const byTable: Disagreement[] = [];
    for (const value of values) {
      const zod = roomId.safeParse(value).success;
      const table = await sqlAccepts(
        (sql) => sql`insert into waitroom.rooms (id, capacity, queue_seq, created_at, updated_at)
                     values (${value}, 1, 'waitroom.rooms'::regclass, ${at(0)}, ${at(0)})`,
        "23514",
      );
      if (zod !== table) byTable.push({ value, zod, sql: table });
    }
    expect({ found, byTable }).toEqual({ found: [], byTable: [] });
  });

  it("on holders and priorities of a join", async () => {
    const room = uniqueRoomId();
    await db.sql`select waitroom.create_room(${room}, 1, '{}', ${at(0)})`;
    // Lengths are characters (code points), as PostgreSQL counts them, not UTF-16 units.
    const holders = ["x", text(256), text(257), "", text(256, "é"), text(256, "😀"), text(257, "😀"), "a\u200db"];
    const byHolder = await disagreements(
      holders,
      (holder) => joinRequest.safeParse({ holder }).success,
      (sql, holder) => sql`select * from waitroom.join(${room}, ${holder as string}, 0, ${at(1)})`,
    );
    const priorities = [-1001, -1000, -1, 0, 1, 1000, 1001, 2 ** 31 - 1, -(2 ** 31)];
    const byPriority = await disagreements(
      priorities,
      (priority) => joinRequest.safeParse({ priority }).success,
      (sql, priority) => sql`select * from waitroom.join(${room}, null, ${priority as number}, ${at(1)})`,
    );
    expect({ byHolder, byPriority }).toEqual({ byHolder: [], byPriority: [] });
  });

  it("on stock units to add and minutes of history", async () => {
    const room = uniqueRoomId();
    await db.sql`select waitroom.create_room(${room}, 1, '{}', ${at(0)})`;
    const byUnits = await disagreements(
      [-1, 0, 1, 1_000_000_000, 1_000_000_001, 2 ** 31 - 1],
      (units) => addStockRequest.safeParse({ units }).success,
      (sql, units) => sql`select waitroom.add_stock(${room}, ${units as number}, ${at(1)})`,
    );
    const byMinutes = await disagreements(
      [-1, 0, 1, 60, 1440, 1441],
      (minutes) => historyQuery.safeParse({ minutes }).success,
      (sql, minutes) => sql`select * from waitroom.history(${room}, ${minutes as number}, ${at(1)})`,
    );
    expect({ byUnits, byMinutes }).toEqual({ byUnits: [], byMinutes: [] });
  });

  it("on the ticket statuses, and which of them are terminal", async () => {
    const room = uniqueRoomId();
    await db.sql`select waitroom.create_room(${room}, 1, '{}', ${at(0)})`;
    const [ticket] = await db.sql<
      { ticket_id: string }[]
    >`select ticket_id from waitroom.join(${room}, null, 0, ${at(1)})`;
    // Every deadline set, so that only the status rules decide: the table knows a status when it takes
    // it with or without an end, and holds it terminal when it takes it with one.
    const takes = (status: string, ended: boolean) =>
      sqlAccepts(
        (sql) => sql`
          update waitroom.tickets
             set status = ${status}, admitted_at = ${at(2)}, claim_deadline = ${at(3)}, claimed_at = ${at(2)},
                 expires_at = ${at(3)}, ended_at = ${ended ? at(4) : null}, end_reason = ${ended ? "test" : null}
           where id = ${ticket?.ticket_id ?? ""}`,
        "23514",
      );
    const known: string[] = [];
    const terminal: string[] = [];
    for (const status of [...ticketStatuses, "bogus"]) {
      const withEnd = await takes(status, true);
      const withoutEnd = await takes(status, false);
      if (withEnd === true || withoutEnd === true) known.push(status);
      if (withEnd === true) terminal.push(status);
    }
    expect({ known, terminal }).toEqual({ known: [...ticketStatuses], terminal: [...terminalStatuses] });
  });

  it("on which settings exist: zod's are the columns waitroom._room_settings() names, shown but shuffle_seed", async () => {
    const [row] = await db.sql<{ names: string[] }[]>`select waitroom._room_settings() as names`;
    const inSql = row?.names ?? [];
    const inZod = Object.keys(roomSettings.shape);
    expect({
      onlyInSql: inSql.filter((name) => !inZod.includes(name)),
      onlyInZod: inZod.filter((name) => !inSql.includes(name)),
    }).toEqual({ onlyInSql: [], onlyInZod: [] });

    // What list_rooms shows of a room (waitroom._shown_settings) is what the room's zod type says it shows.
    const room = uniqueRoomId();
    await db.sql`select waitroom.create_room(${room}, 1, '{}', ${at(0)})`;
    const [listed] = await db.sql<{ settings: Record<string, unknown> }[]>`
      select settings from waitroom.list_rooms(${room})`;
    const shownBySql = Object.keys(listed?.settings ?? {});
    const shownByZod = Object.keys(shownSettings.shape);
    expect({
      onlyInSql: shownBySql.filter((name) => !shownByZod.includes(name)),
      onlyInZod: shownByZod.filter((name) => !shownBySql.includes(name)),
    }).toEqual({ onlyInSql: [], onlyInZod: [] });
    expect(shownBySql).not.toContain("shuffle_seed");

    // And what the room's page reads (waitroom.show_room_page) is what RoomPageSettings types: the page_ settings.
    const [page] = await db.sql<{ settings: Record<string, unknown> }[]>`
      select settings from waitroom.show_room_page(${room})`;
    expect(Object.keys(page?.settings ?? {}).sort()).toEqual(
      shownByZod.filter((name) => name.startsWith("page_")).sort(),
    );
  });

  it("on a room's stats: list_rooms builds exactly the numbers zod's roomStats declares, of its types", async () => {
    const room = uniqueRoomId();
    await db.sql`select waitroom.create_room(${room}, 1, ${db.sql.json({ health_url: "https://up.example/health" })}, ${at(0)})`;
    const [listed] = await db.sql<{ stats: Record<string, unknown> }[]>`select stats from waitroom.list_rooms(${room})`;
    const inSql = Object.keys(listed?.stats ?? {});
    const inZod = Object.keys(roomStats.shape);
    expect({
      onlyInSql: inSql.filter((name) => !inZod.includes(name)),
      onlyInZod: inZod.filter((name) => !inSql.includes(name)),
    }).toEqual({ onlyInSql: [], onlyInZod: [] });
    expect(roomStats.strict().safeParse(listed?.stats).error).toBeUndefined();
  });

  it("on every room setting, at and around its bounds", async () => {
    const room = uniqueRoomId();
    // With quotas, so that each quota setting can change alone: a window without tiers (or the other way
    // round) is a rule across two settings that only SQL checks (WR400, nothing changed), so null is not tried.
    await db.sql`select waitroom.create_room(${room}, 1,
      '{"quota_window_seconds": 60, "quota_tiers": {"default": {"limit": 1}}}', ${at(0)})`;
    const candidates: Record<string, unknown[]> = {
      capacity: [-1, 0, 1, 1_000_000, 1_000_001],
      admit_per_minute: [0, 1, 2 ** 31 - 1, null],
      session_seconds: [0, 1, 2 ** 31 - 1],
      grace_seconds: [-1, 0, 1],
      claim_seconds: [0, 1],
      idle_seconds: [0, 1],
      renew_on_heartbeat: [true, false],
      mode: ["open", "paused", "passthrough", "closed", "bogus"],
      opens_at: ["2030-01-02T00:00:00Z", "2030-01-02T00:00:00+02:00", null],
      tick_ms: [49, 50, 60_000, 60_001],
      retention_seconds: [3599, 3600],
      health_url: ["http://upstream.internal/health", "https://example.com/h", null],
      shuffle_seed: [0, -1, 9_007_199_254_740_991, -9_007_199_254_740_991],
      max_queued: [-1, 0, 1, 2 ** 31 - 1, null],
      page_title: [
        "Launch day",
        text(80),
        text(81),
        "",
        "<b>bold</b> stays text",
        "two\nlines",
        "tab\there",
        "next\u0085line",
        "例え 😀",
        null,
      ],
      page_message: ["Thanks for waiting.", text(500), text(501), "", "two\nlines", "bell\u0007", "del\u007f", null],
      page_admitted_text: ["Go ahead", text(200), text(201), "", "a\nb", "\u001b[31m", null],
      page_brand_color: ["#0a7cff", "#ABCDEF", "#abc", "0a7cff", "#0a7cffe", "#gggggg", "red", null],
      page_logo_url: [
        "https://cdn.example.com/logo.svg",
        "https://cdn.example.com:8443/a/b.png?v=2",
        "https://cdn.example.com",
        "http://cdn.example.com/logo.svg",
        "https://cdn.example.com;script-src */x",
        "https://user@cdn.example.com/x",
        "https://cdn.example.com/a b",
        "data:image/png;base64,AAAA",
        `https://cdn.example.com/${text(2048 - 24)}`,
        `https://cdn.example.com/${text(2048 - 23)}`,
        null,
      ],
      page_help_url: [
        "https://status.example.com",
        "http://help.example.com/faq",
        "javascript:alert(1)",
        "ftp://example.com/",
        "https://exa'mple.com/",
        null,
      ],
      page_language: ["en", "de", "es", "fr", "pt", "ja", "zh", "ar", "he", "EN", "en-US", "", null],
      quota_window_seconds: [-1, 0, 1, 2 ** 31 - 1],
      quota_tiers: [
        { default: { limit: 0 } },
        { default: { limit: 999_999_999, priority: -1000 }, pro: { limit: 3, priority: 1000 } },
        { default: { limit: 1_000_000_000 } },
        { default: { limit: -1 } },
        { default: { limit: 1, priority: 1001 } },
        { default: { limit: 1, other: 1 } },
        { pro: { limit: 1 } },
        { [text(64)]: { limit: 1 }, default: { limit: 1 } },
        { [text(65)]: { limit: 1 }, default: { limit: 1 } },
      ],
      pool_per_day: [-1, 0, 1, 2 ** 31 - 1, null],
      // IANA names (PostgreSQL also takes POSIX zones such as "utc+1"; the API does not, on purpose).
      time_zone: ["UTC", "Europe/Paris", "America/Argentina/Buenos_Aires", "Mars/Olympus", ""],
      target_url: [
        "https://shop.example/",
        "http://localhost:8081/deep?x=1",
        "https://shop.example",
        "https://user@shop.example/",
        "https://shop.example/#top",
        "javascript:alert(1)",
        "ftp://shop.example/",
        null,
      ],
      return_origins: [
        [],
        ["https://a.example", "http://localhost:3000"],
        ["https://a.example/"],
        ["HTTPS://A.EXAMPLE"],
        ["https://a.example/path"],
        null,
      ],
      handover: ["cookie", "fragment", "header"],
      auto_continue: [true, false],
      proof_of_work_bits: [-1, 0, 1, 24, 25, null],
      // Not a setting: both must refuse it.
      no_such_setting: [1],
    };
    // Every setting zod knows is tried.
    expect(Object.keys(roomSettings.shape).filter((key) => !(key in candidates))).toEqual([]);
    const found: Array<Disagreement & { setting: string }> = [];
    for (const [setting, values] of Object.entries(candidates)) {
      const differing = await disagreements(
        values,
        (value) => roomSettings.safeParse({ [setting]: value }).success,
        (sql, value) =>
          sql`select waitroom.configure_room(${room}, ${sql.json({ [setting]: value } as never)}, ${at(1)})`,
      );
      found.push(...differing.map((d) => ({ setting, ...d })));
    }
    expect(found).toEqual([]);
  });
});
