import { describe, expect, it } from "vitest";
import {
  heartbeat,
  joinMany,
  type TicketState,
  ticketStateRow,
  ticketStates,
  ticketStatuses,
} from "../../src/queue/index.js";
import { useTestDatabase } from "../helpers/database.js";
import { admit, at, createRoom, join, verdict } from "../helpers/queue.js";

const db = useTestDatabase();

type Row = { ordinal: number; code: string; ticket_id: string | null; status: string | null; position: number | null };

const states = (pairs: { ticket_id: string; token: string }[], now = at(1)) =>
  db.sql<Row[]>`
    select ordinal, code, (state).ticket_id, (state).status, (state).position
      from waitroom.ticket_states(${db.sql.array(pairs.map((p) => p.ticket_id))}::uuid[],
                                  ${db.sql.array(pairs.map((p) => p.token))}::text[], ${now})`;

describe("waitroom.ticket_state, the one declaration of a ticket's state", () => {
  it("is what positions and position return and what ticket_states and heartbeat_state carry", async () => {
    const rows = await db.sql<{ name: string; state_type: string }[]>`
      select p.proname as name,
             coalesce(
               (select a.type::regtype::text
                  from unnest(p.proallargtypes, p.proargmodes, p.proargnames) a(type, mode, name)
                 where a.mode = 't' and a.name = 'state'),
               p.prorettype::regtype::text) as state_type
        from pg_proc p
       where p.pronamespace = 'waitroom'::regnamespace
         and p.proname in ('positions', 'position', 'ticket_states', 'heartbeat_state')
       order by p.proname`;
    expect(rows).toEqual(
      ["heartbeat_state", "position", "positions", "ticket_states"].map((name) => ({
        name,
        state_type: "waitroom.ticket_state",
      })),
    );
  });

  it("reads into TicketState for tickets of every status, through positions, ticket_states and heartbeat", async () => {
    const room = await createRoom(db.sql, 3, {
      claim_seconds: 10,
      session_seconds: 10,
      grace_seconds: 10,
      idle_seconds: 100,
    });
    const [active, offered, queued, gone] = [
      await join(db.sql, room),
      await join(db.sql, room),
      await join(db.sql, room, { now: at(0.5) }),
      await join(db.sql, room, { now: at(0.5) }),
    ];
    await admit(db.sql, room, at(1), 2);
    await verdict(db.sql, "claim", active, at(1));
    await verdict(db.sql, "leave", gone, at(1));
    const ids = db.sql.array([active, offered, queued, gone].map((ticket) => ticket.ticket_id));
    const read: TicketState[] = [];
    // Active then draining then ended; admitted then expired; queued; left.
    for (const now of [at(5), at(15), at(25)]) {
      read.push(...(await db.sql<TicketState[]>`select * from waitroom.positions(${room}, ${ids}::uuid[], ${now})`));
    }
    expect(new Set(read.map((row) => row.status))).toEqual(new Set(ticketStatuses));

    // The service's own calls, on a clock of now: ticket_states' and heartbeat_state's state flattened.
    const live = await createRoom(db.sql, 0, { idle_seconds: 3600 });
    const [mine] = await joinMany(db.sql, live, [{}]);
    if (!mine) throw new Error("join_many answered nothing");
    const [opened] = await ticketStates(db.sql, [{ ticketId: mine.ticket_id, token: mine.token }]);
    const beat = await heartbeat(db.sql, mine.ticket_id, mine.token);
    expect(opened?.state).toMatchObject({ ticket_id: mine.ticket_id, status: "queued", position: 1 });
    expect(beat.state).toEqual(opened?.state);
    read.push(...[opened?.state, beat.state].filter((state) => state !== undefined));

    for (const row of read) expect(ticketStateRow.strict().parse(row)).toEqual(row);
  });
});

describe("ticket_states", () => {
  it("answers every presented pair in order, with the state only where the token is the ticket's own", async () => {
    const room = await createRoom(db.sql, 1, { idle_seconds: 3600 });
    const other = await createRoom(db.sql, 0, { idle_seconds: 3600 });
    const first = await join(db.sql, room);
    const second = await join(db.sql, room);
    const elsewhere = await join(db.sql, other);
    const held = await join(db.sql, room, { holder: "ada" });
    const again = await join(db.sql, room, { holder: "ada" });
    await admit(db.sql, room, at(1));
    const rows = await states([
      second,
      { ticket_id: first.ticket_id, token: second.token },
      elsewhere,
      { ticket_id: held.ticket_id, token: held.token },
      again,
      first,
      second,
      { ticket_id: "00000000-0000-4000-8000-000000000000", token: first.token },
    ]);
    expect(rows).toEqual([
      { ordinal: 1, code: "queued", ticket_id: second.ticket_id, status: "queued", position: 1 },
      { ordinal: 2, code: "unknown", ticket_id: null, status: null, position: null },
      { ordinal: 3, code: "queued", ticket_id: elsewhere.ticket_id, status: "queued", position: 1 },
      { ordinal: 4, code: "superseded", ticket_id: null, status: null, position: null },
      { ordinal: 5, code: "queued", ticket_id: again.ticket_id, status: "queued", position: 2 },
      { ordinal: 6, code: "not_claimed", ticket_id: first.ticket_id, status: "admitted", position: null },
      { ordinal: 7, code: "queued", ticket_id: second.ticket_id, status: "queued", position: 1 },
      { ordinal: 8, code: "unknown", ticket_id: null, status: null, position: null },
    ]);
  });

  it("agrees with check and positions for finished tickets", async () => {
    const room = await createRoom(db.sql, 0, { idle_seconds: 3600 });
    const gone = await join(db.sql, room);
    await verdict(db.sql, "leave", gone, at(1));
    expect(await states([gone], at(2))).toEqual([
      { ordinal: 1, code: "left", ticket_id: gone.ticket_id, status: "left", position: null },
    ]);
  });

  it("says why a finished ticket ended, and nothing while it lives", async () => {
    const room = await createRoom(db.sql, 0, { idle_seconds: 3600 });
    const gone = await join(db.sql, room);
    const waiting = await join(db.sql, room);
    await verdict(db.sql, "leave", gone, at(1));
    // A stream whose state read wins the race with the ledger event shows this reason (src/events/hub.ts).
    const rows = await db.sql<{ ticket_id: string; end_reason: string | null }[]>`
      select (state).ticket_id, (state).end_reason
        from waitroom.ticket_states(${db.sql.array([gone.ticket_id, waiting.ticket_id])}::uuid[],
                                    ${db.sql.array([gone.token, waiting.token])}::text[], ${at(2)})
       order by ordinal`;
    expect(rows).toEqual([
      { ticket_id: gone.ticket_id, end_reason: "left" },
      { ticket_id: waiting.ticket_id, end_reason: null },
    ]);
  });

  it("reads the queue once per room, not once per ticket (counted in index entries)", async () => {
    const room = await createRoom(db.sql, 0, { idle_seconds: 3600 });
    const tickets = await db.sql<{ ticket_id: string; token: string }[]>`
      select (j).ticket_id, (j).token
        from (select waitroom.join(${room}, null, 0, ${at(0)}) as j from generate_series(1, 2000) offset 0) joined`;
    const [counted] = await db.sql.begin(async (tx) => {
      await tx`select count(*) from waitroom.ticket_states(
        ${tx.array(tickets.map((t) => t.ticket_id))}::uuid[], ${tx.array(tickets.map((t) => t.token))}::text[], ${at(1)})`;
      return tx<{ entries: number }[]>`
        select sum(pg_stat_get_xact_tuples_returned(c.oid))::int as entries
          from pg_class c where c.relnamespace = 'waitroom'::regnamespace and c.relkind = 'i'`;
    });
    // One read ranks the queue's 2,000 tickets once, plus a few lookups per ticket (≈ 8,000 entries
    // once the table is analysed, ≈ 40,000 on a fresh one); a read per ticket would rank
    // 1 + 2 + … + 2,000 ≈ 2,000,000.
    expect(counted?.entries).toBeLessThan(200_000);
  });

  it("refuses arrays of different lengths", async () => {
    const room = await createRoom(db.sql, 0);
    const ticket = await join(db.sql, room);
    await expect(
      db.sql`select * from waitroom.ticket_states(${db.sql.array([ticket.ticket_id])}::uuid[], '{}'::text[])`,
    ).rejects.toMatchObject({ code: "WR400" });
  });
});
