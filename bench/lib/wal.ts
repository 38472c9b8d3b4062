import type pg from "pg";

/** One kind of WAL record, e.g. "Heap/INSERT", over a measured interval. */
export type WalRecordKind = {
  kind: string;
  records: number;
  /** Record bytes including full-page images. */
  bytes: number;
  fullPageImageBytes: number;
};

export async function currentWalLsn(client: pg.Client): Promise<string> {
  const { rows } = await client.query<{ lsn: string }>("select pg_current_wal_lsn()::text as lsn");
  const lsn = rows[0]?.lsn;
  if (!lsn) throw new Error("pg_current_wal_lsn() returned nothing");
  return lsn;
}

export async function walBytesBetween(client: pg.Client, start: string, end: string): Promise<number> {
  const { rows } = await client.query<{ bytes: string }>("select pg_wal_lsn_diff($2::pg_lsn, $1::pg_lsn) as bytes", [
    start,
    end,
  ]);
  return Number(rows[0]?.bytes);
}

/** pg_walinspect ships with PostgreSQL 15+ (contrib); false when the server lacks it. */
export async function enableWalInspect(client: pg.Client): Promise<boolean> {
  try {
    await client.query("create extension if not exists pg_walinspect");
    return true;
  } catch {
    return false;
  }
}

/** What the WAL between two positions is made of, by record type, largest first. */
export async function walComposition(client: pg.Client, start: string, end: string): Promise<WalRecordKind[]> {
  const { rows } = await client.query<{ kind: string; records: string; bytes: string; fpi_bytes: string }>(
    `select "resource_manager/record_type" as kind, count as records,
            combined_size as bytes, fpi_size as fpi_bytes
       from pg_get_wal_stats($1::pg_lsn, $2::pg_lsn, per_record => true)
      where count > 0
      order by combined_size desc`,
    [start, end],
  );
  return rows.map((row) => ({
    kind: row.kind,
    records: Number(row.records),
    bytes: Number(row.bytes),
    fullPageImageBytes: Number(row.fpi_bytes),
  }));
}
