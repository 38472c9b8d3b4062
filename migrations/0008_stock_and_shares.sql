-- Up Migration

-- Finite stock, quotas per holder and a shared pool per day (issue 17).
-- Add-only: new columns of rooms and tickets, and the grants table.

alter table waitroom.rooms
  -- State kept by the stock verbs (not settings: every change is a ledger row).
  add column stock_available integer,
  add column stock_outstanding integer not null default 0,
  add column sold_out_at timestamptz,
  -- Settings.
  add column quota_window_seconds integer,
  add column quota_tiers jsonb,
  add column pool_per_day integer,
  add column time_zone text not null default 'UTC',
  add constraint rooms_stock_not_negative
    check ((stock_available is null or stock_available >= 0) and stock_outstanding >= 0),
  add constraint rooms_quota_window_positive check (quota_window_seconds is null or quota_window_seconds > 0),
  add constraint rooms_quota_tiers_object check (quota_tiers is null or jsonb_typeof(quota_tiers) = 'object'),
  add constraint rooms_quota_needs_tiers check ((quota_window_seconds is null) = (quota_tiers is null)),
  add constraint rooms_pool_per_day_not_negative check (pool_per_day is null or pool_per_day >= 0);

comment on column waitroom.rooms.stock_available is
  'Units of stock neither reserved nor consumed; null = the room has no stock. Changed only by admit (reserve), the returns and waitroom.add_stock, each with a ledger row.';
comment on column waitroom.rooms.stock_outstanding is
  'Units reserved by offers and not yet consumed or returned.';
comment on column waitroom.rooms.sold_out_at is
  'When admission found nothing left and nothing outstanding: the room refuses joins (WRSLD) until waitroom.add_stock adds units.';
comment on column waitroom.rooms.quota_window_seconds is
  'Rolling window of the per-holder quotas; null = no quotas.';
comment on column waitroom.rooms.quota_tiers is
  'Quota per tier: {"<tier>": {"limit": n, "priority": p}, ...}; a ticket without a tier is in tier "default". priority (optional) is the priority a join of that tier gets when it names none.';
comment on column waitroom.rooms.pool_per_day is
  'Most admissions per day (in time_zone) that all tiers draw from; null = no pool.';
comment on column waitroom.rooms.time_zone is 'Time zone whose days are the pool''s periods.';

alter table waitroom.tickets add column tier text;
comment on column waitroom.tickets.tier is 'Quota tier set by the trusted caller at join; null = tier "default".';

-- One row per offer in a room with stock, quotas or a pool: what it took and
-- how that ended. Kept after the ticket is purged: quotas count it for their
-- window, stock counts it until it is consumed or returned.
create table waitroom.grants (
  ticket_id  uuid primary key,
  room_id    text not null,
  holder     text,
  tier       text,
  stock      boolean not null,
  period     date,
  granted_at timestamptz not null,
  settled_at timestamptz,
  outcome    text,
  constraint grants_outcome_known check (outcome is null or outcome in ('consumed', 'returned')),
  constraint grants_settled_iff_outcome check ((settled_at is null) = (outcome is null))
);
comment on table waitroom.grants is
  'One row per admission offer of a room with stock, quotas or a pool: the unit of stock it reserved (stock), the day of the pool it drew from (period), the holder and tier whose quota it counts for, and its outcome (null while held; consumed; returned, which gives the unit and the share back). Reached only through the verbs.';
comment on column waitroom.grants.outcome is
  'null: held (counts for quota and pool, the unit is outstanding); consumed: the unit was sold (still counts); returned: lapsed, left before claiming, or returned by the trusted caller (counts for nothing).';

create index grants_holder_window on waitroom.grants (room_id, holder, granted_at) where holder is not null;
create index grants_period on waitroom.grants (room_id, period) where period is not null;

-- Down Migration
drop table waitroom.grants;
alter table waitroom.tickets drop column tier;
alter table waitroom.rooms
  drop constraint rooms_stock_not_negative,
  drop constraint rooms_quota_window_positive,
  drop constraint rooms_quota_tiers_object,
  drop constraint rooms_quota_needs_tiers,
  drop constraint rooms_pool_per_day_not_negative,
  drop column stock_available,
  drop column stock_outstanding,
  drop column sold_out_at,
  drop column quota_window_seconds,
  drop column quota_tiers,
  drop column pool_per_day,
  drop column time_zone;
