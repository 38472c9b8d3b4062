-- Named return types shared by several verbs.

create type waitroom.verdict as (
  ok         boolean,
  code       text,
  status     text,
  expires_at timestamptz
);
comment on type waitroom.verdict is
  'Answer of check/heartbeat/leave (and the first four columns of claim_result): ok, a precise code (ok, unknown, superseded, queued, not_claimed, already_claimed, draining, ended, expired, left), the ticket status and the deadline that matters for it.';

-- What a stream shows of a ticket: the one declaration of a ticket's state,
-- which positions returns and ticket_states and heartbeat_state carry (as
-- their column state). TypeScript reads it as ticketStateRow
-- (src/queue/index.ts), which test/sql/row-types.test.ts holds to it.
create type waitroom.ticket_state as (
  ticket_id        uuid,
  room_id          text,
  status           text,
  "position"       bigint,
  depth            bigint,
  approximate      boolean,
  eta_seconds      integer,
  eta_low_seconds  integer,
  eta_high_seconds integer,
  expires_at       timestamptz,
  "instance"       integer,
  end_reason       text
);
comment on type waitroom.ticket_state is
  'A ticket''s state as a stream shows it (returned by positions and position, carried by ticket_states and heartbeat_state): status, place in the queue and its ETA, the deadline that matters for the status, the instance and why it ended.';
comment on column waitroom.ticket_state.ticket_id is 'The ticket.';
comment on column waitroom.ticket_state.room_id is 'Its room.';
comment on column waitroom.ticket_state.status is 'Its status now (queued, admitted, active, draining, ended, expired, left): an offer or seat past its deadline reads as what the next sweep will make it.';
comment on column waitroom.ticket_state."position" is '1 = next; null unless queued.';
comment on column waitroom.ticket_state.depth is 'Tickets queued in the room.';
comment on column waitroom.ticket_state.approximate is 'true deep in a long queue (past position 10000), where the position is interpolated.';
comment on column waitroom.ticket_state.eta_seconds is 'Estimated wait from the admission rate of the last five minutes; null without a basis (not queued, or nobody admitted).';
comment on column waitroom.ticket_state.eta_low_seconds is 'Low end of the range the wait is expected in; null without a basis.';
comment on column waitroom.ticket_state.eta_high_seconds is 'High end of that range; null without a basis, or when a recent minute admitted nobody.';
comment on column waitroom.ticket_state.expires_at is 'Claim deadline of an offer, end of an active seat, end of grace while draining; null otherwise.';
comment on column waitroom.ticket_state."instance" is 'The ticket''s instance, incremented on every re-join: an admission token names the one it was issued for.';
comment on column waitroom.ticket_state.end_reason is 'Why an ended ticket ended (session_over, claim_timeout, idle, left, sold_out); null while it lives.';

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
  'Answer of claim and renew_admission: the verdict (ok, code, status, expires_at) and, when ok, what an admission token carries: the ticket''s holder (null for an anonymous one), room and instance; null on any other answer.';

create type waitroom.room_listing as (
  id         text,
  settings   jsonb,
  created_at timestamptz,
  updated_at timestamptz,
  stats      jsonb
);
comment on type waitroom.room_listing is
  'A room as the admin API shows it (list_rooms): its settings, a JSON object of every setting (see _room_settings) but shuffle_seed, hidden until the draw; and stats, a JSON object of the room''s live numbers from the view room_stats (which list_rooms names).';

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
