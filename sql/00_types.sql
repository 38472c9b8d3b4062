-- Named return types shared by several verbs.

create type waitroom.verdict as (
  ok         boolean,
  code       text,
  status     text,
  expires_at timestamptz
);
comment on type waitroom.verdict is
  'Answer of check/claim/heartbeat/leave: ok, a precise code (ok, unknown, superseded, queued, not_claimed, already_claimed, draining, ended, expired, left), the ticket status and the deadline that matters for it.';

create type waitroom.sweep_result as (
  offers_expired   bigint,
  idle_expired     bigint,
  sessions_drained bigint,
  sessions_ended   bigint,
  tickets_purged   bigint,
  events_purged    bigint
);
comment on type waitroom.sweep_result is 'What one waitroom.sweep() call changed, by kind.';
