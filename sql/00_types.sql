-- Named return types shared by several verbs.

create type waitroom.verdict as (
  ok         boolean,
  code       text,
  status     text,
  expires_at timestamptz
);
comment on type waitroom.verdict is
  'Answer of check/heartbeat/leave (and the first four columns of claim_result): ok, a precise code (ok, unknown, superseded, queued, not_claimed, already_claimed, draining, ended, expired, left), the ticket status and the deadline that matters for it.';

create type waitroom.ledger_entry as (
  room_id   text,
  ticket_id uuid,
  type      text,
  data      jsonb
);
comment on type waitroom.ledger_entry is
  'One ledger row to write with waitroom._log (which stamps its time): the room, the ticket (null for room-wide events), the event type and its data.';

create type waitroom.sweep_result as (
  offers_expired   bigint,
  idle_expired     bigint,
  sessions_drained bigint,
  sessions_ended   bigint,
  tickets_purged   bigint,
  events_purged    bigint,
  batch_full       boolean
);
comment on type waitroom.sweep_result is
  'What one waitroom.sweep() call changed, by kind; batch_full when some kind reached p_limit, so more of it may be due and the scheduler sweeps again at once.';

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
  id         text,
  settings   jsonb,
  created_at timestamptz,
  updated_at timestamptz,
  stats      jsonb
);
comment on type waitroom.room_listing is
  'A room as the admin API shows it (list_rooms): its settings, a JSON object of every setting (see _room_settings) but shuffle_seed, hidden until the draw; and stats, a JSON object of queued, admitted, active, draining, free_seats, admitted_last_minute, oldest_wait_seconds, median_wait_seconds, health, stock_available, stock_outstanding, sold_out and pool_left.';

create type waitroom.continuation as (
  url           text,
  handover      text,
  auto_continue boolean
);
comment on type waitroom.continuation is
  'Answer of continue_to: where the page sends an admitted visitor (null: nowhere configured), how the admission is handed over (cookie or fragment) and whether the page goes there by itself.';

create type waitroom.room_page as (
  room_id  text,
  settings jsonb
);
comment on type waitroom.room_page is
  'What the waiting-room page of a room shows of its settings (show_room_page): its page_ settings (title, message, brand colour, logo URL, admitted text, help link, default language) as one JSON object, each null where the page keeps its default.';

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

-- Stock, quotas and the pool (47_stock.sql).
create type waitroom.stock_level as (
  room_id           text,
  stock_available   integer,
  stock_outstanding integer,
  sold_out          boolean
);
comment on type waitroom.stock_level is
  'A room''s stock: units available (null = no stock), units reserved by offers and not settled, and whether it is sold out.';

create type waitroom.settlement as (
  ok              boolean,
  code            text,
  room_id         text,
  outcome         text,
  stock_available integer
);
comment on type waitroom.settlement is
  'Answer of settle: ok, a code (ok; not_granted: no offer of this ticket took stock or a share; already_consumed, already_returned: settled before), the room, the outcome recorded and the units available after it.';

create type waitroom.shares as (
  tier           text,
  quota_limit    integer,
  window_seconds integer,
  used           integer,
  shares_left    integer,
  next_share_at  timestamptz
);
comment on type waitroom.shares is
  'A holder''s quota in a room: its tier, the tier''s limit per window, the window, the offers counted in it (held or consumed, not returned), what is left, and when the next share becomes available (null while some are left).';
