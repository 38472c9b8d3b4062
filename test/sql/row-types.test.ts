import { describe, expect, it } from "vitest";
import type { z } from "zod";
import {
  continuationRow,
  historyBucketRow,
  joinedRow,
  settlementRow,
  sharesRow,
  stockLevelRow,
  ticketStateRow,
  verdictRow,
} from "../../src/queue/index.js";
import { roomListingRow } from "../../src/queue/rooms.js";
import { useTestDatabase } from "../helpers/database.js";

/*
 * The TypeScript rows that are declared from a type of schema waitroom (and the HTTP contracts made from
 * them): each has the SQL type's attributes, in its order. A column added, renamed or moved on one side
 * only fails here.
 */

const db = useTestDatabase();

const rows: ReadonlyArray<[sqlType: string, row: z.ZodObject]> = [
  ["waitroom.verdict", verdictRow],
  ["waitroom.ticket_state", ticketStateRow],
  ["waitroom.continuation", continuationRow],
  ["waitroom.stock_level", stockLevelRow],
  ["waitroom.settlement", settlementRow],
  ["waitroom.shares", sharesRow],
  ["waitroom.room_listing", roomListingRow],
];

/** Rows of functions that return a table: the function, its row, and the columns it answers before the row's. */
const tables: ReadonlyArray<[fn: string, row: z.ZodObject, leading: string[]]> = [
  ["waitroom.join(text, text, integer, timestamptz, text)", joinedRow, []],
  ["waitroom.join_many(text, integer, text[], integer[], timestamptz, text[], integer)", joinedRow, ["ordinal"]],
  ["waitroom.history(text, integer, timestamptz)", historyBucketRow, []],
];

describe("TypeScript rows and the SQL types they read", () => {
  it.each(rows)("%s has the attributes its TypeScript row declares, in the same order", async (sqlType, row) => {
    const attributes = await db.sql<{ name: string }[]>`
      select attname as name from pg_attribute
       where attrelid = (select typrelid from pg_type where oid = ${sqlType}::regtype)
         and attnum > 0 and not attisdropped
       order by attnum`;
    expect(attributes.map((attribute) => attribute.name)).toEqual(Object.keys(row.shape));
  });

  it.each(tables)("%s answers the columns its TypeScript row declares, in the same order", async (fn, row, leading) => {
    const columns = await db.sql<{ name: string }[]>`
      select a.name from pg_proc p, unnest(p.proargnames, p.proargmodes) with ordinality a(name, mode, n)
       where p.oid = ${fn}::regprocedure and a.mode = 't'
       order by a.n`;
    expect(columns.map((column) => column.name)).toEqual([...leading, ...Object.keys(row.shape)]);
  });
});
