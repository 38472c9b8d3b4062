-- Named return types shared by several verbs.

create type waitroom.verdict as (
  ok         boolean,
  code       text,
  status     text,
  expires_at timestamptz
);
comment on type waitroom.verdict is
  'Answer of check/heartbeat/leave (and the first four columns of claim_result): ok, a precise code (ok, unknown, superseded, queued, not_claimed, already_claimed, draining, ended, expired, left), the ticket status and the deadline that matters for it.';

create type waitroom.sweep_result as (
  offers_expired   bigint,
  idle_expired     bigint,
  sessions_drained bigint,
  sessions_ended   bigint,
  tickets_purged   bigint,
  events_purged    bigint
);
comment on type waitroom.sweep_result is 'What one waitroom.sweep() call changed, by kind.';

create type waitroom.claim_result as (
  ok         boolean,
  code       text,
  status     text,
  expires_at timestamptz,
  holder     text,
  room_id    text,
  "instance" integer
);
comment on type waitroom.claim_result is
  'Answer of claim: the verdict (ok, code, status, expires_at) and, when ok, what an admission token carries: the ticket''s holder (null for an anonymous one), room and instance; null on any other answer.';

create type waitroom.room_listing as (
  id                 text,
  capacity           integer,
  admit_per_minute   integer,
  session_seconds    integer,
  grace_seconds      integer,
  claim_seconds      integer,
  idle_seconds       integer,
  renew_on_heartbeat boolean,
  mode               text,
  opens_at           timestamptz,
  tick_ms            integer,
  retention_seconds  integer,
  health_url         text,
  max_queued         integer,
  proof_of_work_bits integer,
  created_at         timestamptz,
  updated_at         timestamptz,
  stats              jsonb
);
comment on type waitroom.room_listing is
  'A room as the admin API shows it (list_rooms): its settings (not shuffle_seed, hidden until the draw) and stats, a JSON object of queued, admitted, active, draining, free_seats, admitted_last_minute, oldest_wait_seconds, median_wait_seconds and health.';

create type waitroom.signing_key as (
  kid          text,
  state        text,
  created_at   timestamptz,
  activates_at timestamptz,
  retired_at   timestamptz,
  revoked_at   timestamptz
);
comment on type waitroom.signing_key is
  'A signing key as operators see it (never its private half): state staged (published, not signing yet), current (signs), retired (replaced; still verifies its tokens) or revoked (refused at once); when it was published, starts or started signing, was retired, was revoked.';
