-- Up Migration

-- Tables, indexes and constraints of the waiting room. Queue logic lives in
-- sql/ (functions and views, re-applied on every migrate); this file is never
-- edited once landed: change the schema with a new numbered migration.

create schema if not exists waitroom;

create table waitroom.rooms (
  id                 text primary key,
  capacity           integer not null,
  admit_per_minute   integer,
  session_seconds    integer not null default 600,
  grace_seconds      integer not null default 30,
  claim_seconds      integer not null default 60,
  idle_seconds       integer not null default 120,
  renew_on_heartbeat boolean not null default true,
  mode               text not null default 'open',
  opens_at           timestamptz,
  tick_ms            integer not null default 1000,
  retention_seconds  integer not null default 604800,
  queue_seq          regclass not null,
  created_at         timestamptz not null default now(),
  updated_at         timestamptz not null default now(),
  constraint rooms_id_is_a_slug check (id ~ '^[a-z0-9][a-z0-9_-]{0,47}$'),
  constraint rooms_capacity_not_negative check (capacity >= 0),
  constraint rooms_admit_per_minute_positive check (admit_per_minute is null or admit_per_minute > 0),
  constraint rooms_session_seconds_positive check (session_seconds > 0),
  constraint rooms_grace_seconds_not_negative check (grace_seconds >= 0),
  constraint rooms_claim_seconds_positive check (claim_seconds > 0),
  constraint rooms_idle_seconds_positive check (idle_seconds > 0),
  constraint rooms_mode_known check (mode in ('open', 'paused', 'passthrough', 'closed')),
  constraint rooms_tick_ms_range check (tick_ms between 50 and 60000),
  constraint rooms_retention_at_least_an_hour check (retention_seconds >= 3600)
);

comment on table waitroom.rooms is
  'One row per waiting room: its capacity, inflow limit, timers and mode. Change it with waitroom.configure_room().';
comment on column waitroom.rooms.capacity is 'Maximum occupied seats (admitted + active + draining).';
comment on column waitroom.rooms.admit_per_minute is 'Inflow limit: at most this many admissions in any 60 seconds; null = unlimited.';
comment on column waitroom.rooms.session_seconds is 'How long a claimed (active) seat lasts.';
comment on column waitroom.rooms.grace_seconds is 'Draining window after a session expires: in-flight work may finish, new work is refused.';
comment on column waitroom.rooms.claim_seconds is 'How long an admitted ticket may take to claim before the offer lapses and the seat goes to the next person.';
comment on column waitroom.rooms.idle_seconds is 'A queued ticket not heard from for this long is abandoned (expired).';
comment on column waitroom.rooms.renew_on_heartbeat is 'Sliding sessions: a heartbeat extends an active seat to now + session_seconds.';
comment on column waitroom.rooms.mode is 'open: admit in order | paused: queue but admit nobody | passthrough: admit at join while seats are free | closed: refuse joins.';
comment on column waitroom.rooms.opens_at is 'Scheduled start: nobody is admitted before this time; joins are accepted.';
comment on column waitroom.rooms.tick_ms is 'Admission cadence for the scheduler.';
comment on column waitroom.rooms.retention_seconds is 'Finished tickets and events older than this are purged by waitroom.sweep().';
comment on column waitroom.rooms.queue_seq is 'The room''s own sequence: every new ticket takes the next value as its seq (see waitroom.queue_tally).';

create table waitroom.tickets (
  id                      uuid primary key,
  room_id                 text not null,
  holder                  text,
  token_hash              bytea not null,
  superseded_token_hashes bytea[] not null default '{}',
  instance                integer not null default 1,
  priority                integer not null default 0,
  seq                     bigint not null,
  status                  text not null default 'queued',
  queued_at               timestamptz not null,
  last_seen_at            timestamptz not null,
  admitted_at             timestamptz,
  claim_deadline          timestamptz,
  claimed_at              timestamptz,
  expires_at              timestamptz,
  ended_at                timestamptz,
  end_reason              text,
  constraint tickets_status_known
    check (status in ('queued', 'admitted', 'active', 'draining', 'ended', 'expired', 'left')),
  constraint tickets_holder_length check (holder is null or length(holder) between 1 and 256),
  constraint tickets_priority_range check (priority between -1000 and 1000),
  constraint tickets_token_hash_is_sha256 check (length(token_hash) = 32),
  constraint tickets_offer_has_deadline
    check (status <> 'admitted' or (admitted_at is not null and claim_deadline is not null)),
  constraint tickets_seat_has_expiry
    check (status not in ('active', 'draining') or (claimed_at is not null and expires_at is not null)),
  constraint tickets_end_iff_terminal
    check ((status in ('ended', 'expired', 'left')) = (ended_at is not null and end_reason is not null))
);

comment on table waitroom.tickets is
  'One row per place in a queue. Live states: queued, admitted, active, draining; terminal: ended, expired, left.';
comment on column waitroom.tickets.holder is 'Verified user id (one live ticket per holder per room); null for anonymous tickets.';
comment on column waitroom.tickets.token_hash is 'sha256 of the bearer token; the token itself is returned once by join and never stored.';
comment on column waitroom.tickets.superseded_token_hashes is 'Hashes of tokens replaced by re-joins (newest first, a few kept) so they can be told apart from wrong tokens.';
comment on column waitroom.tickets.instance is 'Incremented on every re-join; older instances are superseded.';
comment on column waitroom.tickets.seq is 'Queue order within a priority band (lower first), from the room''s queue_seq.';
comment on column waitroom.tickets.claim_deadline is 'An admitted ticket must claim before this time.';
comment on column waitroom.tickets.expires_at is 'End of an active seat; draining lasts grace_seconds after it.';

-- No foreign key to rooms on purpose: every join would take a KEY SHARE lock
-- on the room row and concurrent joiners would contend on its multixact.
-- waitroom.join() checks the room exists; waitroom.delete_room() cascades.

-- One live ticket per holder and room: what makes re-joins idempotent.
create unique index tickets_one_live_per_holder on waitroom.tickets (room_id, holder)
  where holder is not null and status in ('queued', 'admitted', 'active', 'draining');
-- Admission order and positions.
create index tickets_queue_order on waitroom.tickets (room_id, priority desc, seq)
  where status = 'queued';
-- Abandoned queued tickets.
create index tickets_queued_presence on waitroom.tickets (room_id, last_seen_at)
  where status = 'queued';
-- Offers waiting to be claimed, by deadline; also counts admitted seats.
create index tickets_offers on waitroom.tickets (room_id, claim_deadline)
  where status = 'admitted';
-- Claimed seats, by expiry; also counts active and draining seats.
create index tickets_sessions on waitroom.tickets (room_id, status, expires_at)
  where status in ('active', 'draining');
-- Finished tickets, for retention.
create index tickets_finished on waitroom.tickets (room_id, ended_at)
  where status in ('ended', 'expired', 'left');

-- Depth in O(1) without a row lock on the join path: joins only draw from
-- the room's sequence; whatever takes a drawn number out of the queue
-- (admission, leave, expiry, a join that lost a race) adds to this tally,
-- spread over shards so concurrent writers rarely share a row.
-- depth = last value of rooms.queue_seq - sum(dequeued).
create table waitroom.queue_tally (
  room_id  text not null,
  shard    smallint not null,
  dequeued bigint not null default 0,
  primary key (room_id, shard),
  constraint queue_tally_shard_range check (shard between 0 and 15)
) with (fillfactor = 50);

comment on table waitroom.queue_tally is
  'Per room, how many numbers drawn from its queue_seq no longer stand for a queued ticket; depth = last queue_seq value - sum(dequeued).';

create table waitroom.events (
  id         bigint generated always as identity primary key,
  room_id    text not null,
  ticket_id  uuid,
  type       text not null,
  data       jsonb not null default '{}',
  created_at timestamptz not null default now()
);

comment on table waitroom.events is
  'Append-only ledger: one row per state change, written in the same transaction. Source for replay, estimates and audit.';
comment on column waitroom.events.ticket_id is 'The ticket concerned; null for room-wide events.';

-- Retention scans by time; a BRIN index costs almost nothing on insert.
create index events_created_at on waitroom.events using brin (created_at);
-- Recent admissions per room: rate limit, observed rate, waits.
create index events_admissions on waitroom.events (room_id, created_at)
  where type = 'admitted';

-- Down Migration
drop schema waitroom cascade;
