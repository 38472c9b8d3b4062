import type pg from "pg";

/*
 * What the lifecycle benchmarks (bench/lifecycles.ts, bench/lifecycles-http.ts)
 * read of the two tables that grow with traffic, through the owner's
 * connection: rows, rows past retention not purged yet (overdue), sizes.
 */

/** The rooms' retention (the least a room may have). */
export const RETENTION_S = 3_600;
/** Rows are stamped this much less than the retention ago: they are due for purging this long after being written. */
export const OVERDUE_AFTER_S = 2;

export type TablesSample = {
  atSeconds: number;
  lifecycles: number;
  tickets: number;
  events: number;
  overdueTickets: number;
  overdueEvents: number;
  ticketsTableBytes: number;
  ticketsIndexBytes: number;
  eventsTableBytes: number;
  eventsIndexBytes: number;
  /** Autovacuum runs on the two tables so far. */
  autovacuums: number;
};

export async function sampleTables(control: pg.Client, startedAt: number, lifecycles: number): Promise<TablesSample> {
  const { rows } = await control.query<Record<string, string>>(`
    select (select count(*) from waitroom.tickets) as tickets,
           (select count(*) from waitroom.events) as events,
           (select count(*) from waitroom.tickets t join waitroom.rooms r on r.id = t.room_id
             where t.status in ('ended', 'expired', 'left')
               and t.ended_at < now() - make_interval(secs => r.retention_seconds)) as overdue_tickets,
           (select count(*) from waitroom.events e join waitroom.rooms r on r.id = e.room_id
             where e.created_at < now() - make_interval(secs => r.retention_seconds)) as overdue_events,
           pg_table_size('waitroom.tickets') as tickets_table, pg_indexes_size('waitroom.tickets') as tickets_index,
           pg_table_size('waitroom.events') as events_table, pg_indexes_size('waitroom.events') as events_index,
           (select sum(autovacuum_count) from pg_stat_user_tables
             where relid in ('waitroom.tickets'::regclass, 'waitroom.events'::regclass)) as autovacuums`);
  const row = rows[0] ?? {};
  const n = (key: string) => Number(row[key]);
  return {
    atSeconds: (performance.now() - startedAt) / 1000,
    lifecycles,
    tickets: n("tickets"),
    events: n("events"),
    overdueTickets: n("overdue_tickets"),
    overdueEvents: n("overdue_events"),
    ticketsTableBytes: n("tickets_table"),
    ticketsIndexBytes: n("tickets_index"),
    eventsTableBytes: n("events_table"),
    eventsIndexBytes: n("events_index"),
    autovacuums: n("autovacuums"),
  };
}

export const totalBytes = (s: TablesSample) =>
  s.ticketsTableBytes + s.ticketsIndexBytes + s.eventsTableBytes + s.eventsIndexBytes;

export const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

/**
 * What docs/operations.md recommends for a busy deployment: autovacuum looks every 5 s and vacuums the two
 * tables after 2 % of their rows changed, so the space of purged rows is reused rather than added to.
 * The naptime is the server's: it is put back when the load is over.
 */
export async function busyAutovacuum(control: pg.Client, on: boolean): Promise<void> {
  await control.query(on ? "alter system set autovacuum_naptime = '5s'" : "alter system reset autovacuum_naptime");
  await control.query("select pg_reload_conf()");
  for (const table of ["waitroom.tickets", "waitroom.events"]) {
    await control.query(
      on
        ? `alter table ${table} set (autovacuum_vacuum_scale_factor = 0.02)`
        : `alter table ${table} reset (autovacuum_vacuum_scale_factor)`,
    );
  }
}
