-- Stock, quotas and the pool (issue 17): what an admission offer takes and
-- gives back.
--
-- A room may have
--  * stock: units an offer reserves one of; a lapsed offer, a leave before
--    claiming or an explicit return gives it back; a claim keeps it; the
--    trusted caller confirms its consumption (settle) or returns it. When
--    nothing is left and nothing is outstanding the room is sold out: admit
--    ends every queued ticket (reason sold_out) and joins are refused (WRSLD)
--    until add_stock adds units;
--  * quotas: per holder, at most a tier's limit of offers in any
--    quota_window_seconds (WRQUO at join, with the time the next share
--    becomes available; admit skips a holder over it);
--  * a pool: at most pool_per_day offers per day in the room's time zone.
-- Each offer of such a room is a row of waitroom.grants, made in admit's
-- transaction; stock counters live on the room row. Every reservation,
-- return, consumption and addition is a ledger row (reserved, returned,
-- consumed, stock_added); waitroom.stock_ledger reconciles the counters with
-- the ledger.

-- Checked by _save_room (create_room, configure_room): what the table's
-- constraints cannot say.
create function waitroom._stock_settings_error(r waitroom.rooms) returns text
language plpgsql stable
as $$
declare
  v_bad text;
begin
  if r.quota_tiers is not null then
    if not r.quota_tiers ? 'default' then
      return 'quota_tiers must have a tier "default" (for tickets joined without a tier)';
    end if;
    select t.key into v_bad
      from jsonb_each(r.quota_tiers) t
     where length(t.key) not between 1 and 64
        or jsonb_typeof(t.value) <> 'object'
        or exists (select from jsonb_object_keys(t.value) k where k not in ('limit', 'priority'))
        or jsonb_typeof(t.value -> 'limit') is distinct from 'number'
        or (t.value ->> 'limit') !~ '^\d{1,9}$'
        or (t.value ? 'priority' and ((t.value ->> 'priority') !~ '^-?\d{1,4}$'
                                      or (t.value ->> 'priority')::integer not between -1000 and 1000))
     limit 1;
    if found then
      return format('quota tier %L must be {"limit": 0 to 999999999, "priority": -1000 to 1000 (optional)} and named by 1 to 64 characters', v_bad);
    end if;
  end if;
  begin
    perform now() at time zone r.time_zone;
  exception when invalid_parameter_value then
    return format('time_zone %L is not a time zone PostgreSQL knows', r.time_zone);
  end;
  return null;
end
$$;
comment on function waitroom._stock_settings_error(waitroom.rooms) is
  'Why the room''s quota_tiers or time_zone are invalid, or null.';

-- Inlined in the join bodies.
create function waitroom._tier_error(p_tiers jsonb, p_tier text) returns text
language sql immutable parallel safe
as $$
  select case
    when p_tier is null then null
    when p_tiers is null then 'tier: the room has no quota tiers'
    when not p_tiers ? p_tier then format('tier: unknown tier %L', left(p_tier, 64))
  end
$$;
comment on function waitroom._tier_error(jsonb, text) is
  'Why a join''s tier is invalid in a room with these quota_tiers (unknown, or the room has none), or null.';

create function waitroom._tier_priority(p_tiers jsonb, p_tier text, p_priority integer) returns integer
language sql immutable parallel safe
as $$
  select case when p_priority = 0 then coalesce((p_tiers -> coalesce(p_tier, 'default') ->> 'priority')::integer, 0)
              else p_priority end
$$;
comment on function waitroom._tier_priority(jsonb, text, integer) is
  'The priority of a join: the one it names, or when that is 0 (the default) the priority its tier maps to.';

-- The one definition of what a holder has used: offers in the window that
-- were not returned.
create function waitroom._shares(r waitroom.rooms, p_holder text, p_tier text, p_now timestamptz)
returns waitroom.shares
language sql stable
as $$
  select coalesce(p_tier, 'default'), q.quota_limit, r.quota_window_seconds, u.used,
         greatest(q.quota_limit - u.used, 0),
         case when u.used >= q.quota_limit then (
           -- A share comes back when the oldest offer counted falls out of the window.
           select g.granted_at + make_interval(secs => r.quota_window_seconds)
             from waitroom.grants g
            where g.room_id = r.id and g.holder = p_holder
              and g.granted_at > p_now - make_interval(secs => r.quota_window_seconds)
              and g.outcome is distinct from 'returned'
            order by g.granted_at
           offset u.used - q.quota_limit
            limit 1) end
    from (select (r.quota_tiers -> coalesce(p_tier, 'default') ->> 'limit')::integer as quota_limit) q,
         lateral (select count(*)::integer as used
                    from waitroom.grants g
                   where g.room_id = r.id and g.holder = p_holder
                     and g.granted_at > p_now - make_interval(secs => r.quota_window_seconds)
                     and g.outcome is distinct from 'returned') u
   where r.quota_window_seconds is not null and p_holder is not null
$$;
comment on function waitroom._shares(waitroom.rooms, text, text, timestamptz) is
  'The holder''s quota at p_now in its tier (no row when the room has no quotas or there is no holder).';

-- At join, for a holder that is about to get a new ticket (a re-join of a
-- live ticket keeps it and is never refused).
create function waitroom._check_quota(p_room text, p_holder text, p_tier text, p_now timestamptz) returns void
language plpgsql stable
as $$
declare
  s waitroom.shares;
begin
  s := waitroom._shares(waitroom._room(p_room), p_holder, p_tier, p_now);
  if s.shares_left = 0 then
    raise exception using errcode = 'WRQUO',
      message = format('holder has used its %s admissions of tier %L per %s seconds in room %L',
                       s.quota_limit, s.tier, s.window_seconds, p_room),
      -- The HTTP layer reads the time from here (ISO 8601; empty when the tier allows none).
      detail = coalesce(to_char(s.next_share_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), '');
  end if;
end
$$;
comment on function waitroom._check_quota(text, text, text, timestamptz) is
  'WRQUO (detail: when the next share becomes available) when the holder has no share left in its tier.';

create function waitroom._pool_period(r waitroom.rooms, p_now timestamptz) returns date
language sql stable
as $$ select (p_now at time zone r.time_zone)::date $$;
comment on function waitroom._pool_period(waitroom.rooms, timestamptz) is 'The pool''s period at p_now: the day in the room''s time zone.';

create function waitroom._pool_left(r waitroom.rooms, p_now timestamptz) returns integer
language sql stable
as $$
  -- No pool: null (greatest() would ignore the null difference and answer 0).
  select case when r.pool_per_day is not null then greatest(r.pool_per_day - (
    select count(*) from waitroom.grants g
     where g.room_id = r.id and g.period = waitroom._pool_period(r, p_now)
       and g.outcome is distinct from 'returned'), 0)::integer end
$$;
comment on function waitroom._pool_left(waitroom.rooms, timestamptz) is
  'Offers the room''s pool can still make today (null without a pool).';

-- Called by admit, under the room's lock, for the tickets it just offered seats.
create function waitroom._grant(r waitroom.rooms, p_tickets uuid[], p_now timestamptz) returns bigint[]
language plpgsql
as $$
declare
  v_ids bigint[];
begin
  with granted as (
    insert into waitroom.grants (ticket_id, room_id, holder, tier, stock, period, granted_at)
    select t.id, r.id, t.holder, t.tier, r.stock_available is not null,
           case when r.pool_per_day is not null then waitroom._pool_period(r, p_now) end, p_now
      from waitroom.tickets t
     where t.id = any (p_tickets)
    returning *
  )
  select waitroom._log(array_agg(row(r.id, g.ticket_id, 'reserved',
           jsonb_build_object('stock', g.stock, 'period', g.period, 'tier', g.tier))::waitroom.ledger_entry), p_now)
    into v_ids
    from granted g;
  if r.stock_available is not null then
    -- The room's constraint refuses a negative stock: admit never offers more than is left.
    update waitroom.rooms
       set stock_available = stock_available - cardinality(p_tickets),
           stock_outstanding = stock_outstanding + cardinality(p_tickets)
     where id = r.id;
  end if;
  return coalesce(v_ids, '{}');
end
$$;
comment on function waitroom._grant(waitroom.rooms, uuid[], timestamptz) is
  'Record the offers just made in a room with stock, quotas or a pool: a grant and a reserved ledger row each, one unit of stock each taken. Returns the ledger ids.';

-- Lapsed offers (sweep, admit), a leave before claiming, and settle's
-- 'returned' give back what their offers took; a grant is returned once.
create function waitroom._return_grants(p_tickets uuid[], p_reason text, p_now timestamptz) returns bigint[]
language plpgsql
as $$
declare
  v_ids bigint[];
begin
  if p_tickets is null then
    return '{}';
  end if;
  with returned as (
    update waitroom.grants g
       set outcome = 'returned', settled_at = p_now
     where g.ticket_id = any (p_tickets) and g.outcome is null
    returning g.ticket_id, g.room_id, g.stock
  ), per_room as (
    select b.room_id, count(*) as units from returned b where b.stock group by b.room_id
  ), restocked as (
    update waitroom.rooms r
       set stock_available = r.stock_available + p.units, stock_outstanding = r.stock_outstanding - p.units
      from per_room p
     where r.id = p.room_id
    returning r.id
  )
  select waitroom._log(array_agg(row(b.room_id, b.ticket_id, 'returned',
           jsonb_build_object('stock', b.stock, 'reason', p_reason))::waitroom.ledger_entry), p_now)
    into v_ids
    from returned b;
  return coalesce(v_ids, '{}');
end
$$;
comment on function waitroom._return_grants(uuid[], text, timestamptz) is
  'Give back what these tickets'' unsettled offers took (their unit of stock, their quota and pool shares), with a returned ledger row each naming p_reason. Returns the ledger ids.';

-- Called by admit under the room's lock when nothing is left and nothing is
-- outstanding. Every queued ticket ends, each once (the status predicate),
-- including one a join queued after an earlier tick had sold the room out.
create function waitroom._sell_out(p_room text, p_now timestamptz) returns bigint[]
language plpgsql
as $$
declare
  v_ids   bigint[] := '{}';
  v_ended bigint;
begin
  update waitroom.rooms set sold_out_at = p_now where id = p_room and sold_out_at is null;
  if found then
    -- Streams show it as a room event before their tickets end.
    v_ids := waitroom._log(array[row(p_room, null, 'room_sold_out', null)::waitroom.ledger_entry], p_now);
  end if;
  with ended as (
    update waitroom.tickets t
       set status = 'ended', ended_at = p_now, end_reason = 'sold_out'
     where t.room_id = p_room and t.status = 'queued'
    returning t.id
  )
  select count(*),
         v_ids || waitroom._log(array_agg(row(p_room, d.id, 'ended', '{"reason":"sold_out"}')::waitroom.ledger_entry),
                                p_now)
    into v_ended, v_ids
    from ended d;
  if v_ended > 0 then
    perform waitroom._tally_dequeued(p_room, v_ended);
  end if;
  return v_ids;
end
$$;
comment on function waitroom._sell_out(text, timestamptz) is
  'Mark the room sold out (a room_sold_out ledger row the first time) and end every queued ticket with reason sold_out. Returns the ledger ids.';

create function waitroom._stock_level(p_room text) returns waitroom.stock_level
language sql stable
as $$
  select r.id, r.stock_available, r.stock_outstanding, r.sold_out_at is not null
    from waitroom.rooms r where r.id = p_room
$$;
comment on function waitroom._stock_level(text) is 'The room''s stock_level as it stands.';

create function waitroom.add_stock(p_room text, p_units integer, p_now timestamptz default null)
returns waitroom.stock_level
language plpgsql
as $$
declare
  v_now timestamptz := waitroom._now(p_now);
  r waitroom.rooms;
begin
  if p_units is null or p_units not between 1 and 1000000000 then
    perform waitroom._fail('WR400', 'units must be between 1 and 1000000000');
  end if;
  -- Serialised with admit: a sell-out and a restock never interleave.
  perform waitroom._lock_room(p_room);
  r := waitroom._room(p_room);
  if coalesce(r.stock_available, 0)::bigint + p_units > 2147483647 then
    perform waitroom._fail('WR400', format('room %L would hold more than 2147483647 units', p_room));
  end if;
  update waitroom.rooms
     set stock_available = coalesce(stock_available, 0) + p_units, sold_out_at = null
   where id = p_room;
  -- Streams of a sold-out room's later tickets learn that it reopened.
  perform waitroom._publish_ids(waitroom._log(
    array[row(p_room, null, 'stock_added', jsonb_build_object('units', p_units, 'initial', r.stock_available is null))]
      ::waitroom.ledger_entry[]
    || case when r.sold_out_at is not null
         then array[row(p_room, null, 'room_restocked', jsonb_build_object('units', p_units))::waitroom.ledger_entry]
         else '{}'::waitroom.ledger_entry[] end,
    v_now));
  perform waitroom._wake(p_room);
  return waitroom._stock_level(p_room);
end
$$;
comment on function waitroom.add_stock(text, integer, timestamptz) is
  'Add p_units (1 to 10^9) to the room''s stock; the first call gives the room a stock. Reopens a sold-out room to joins (room_restocked). Writes a stock_added ledger row; serialised with admit. WR404 unknown room, WR400 bad units.';

create function waitroom.stock(p_room text) returns waitroom.stock_level
language plpgsql stable
as $$
begin
  perform waitroom._room(p_room);
  return waitroom._stock_level(p_room);
end
$$;
comment on function waitroom.stock(text) is 'The room''s stock: available, outstanding, sold out. WR404 unknown room.';

create function waitroom.settle(p_ticket uuid, p_outcome text, p_now timestamptz default null)
returns waitroom.settlement
language plpgsql
as $$
declare
  v_now timestamptz := waitroom._now(p_now);
  g waitroom.grants;
  v_available integer;
  v_outstanding integer;
begin
  if p_outcome is null or p_outcome not in ('consumed', 'returned') then
    perform waitroom._fail('WR400', 'outcome must be consumed or returned');
  end if;
  -- The grant's row lock first: concurrent settles of one ticket take
  -- turns, and each judges the grant as it now is, in one read. (Judging by
  -- an UPDATE's predicate and then reading again could see an admission's
  -- grant commit in between: no answer fitted that.)
  select * into g from waitroom.grants where ticket_id = p_ticket for no key update;
  if not found then
    return row(false, 'not_granted', null, null, null)::waitroom.settlement;
  elsif g.outcome is not null then
    return row(false, 'already_' || g.outcome, g.room_id, g.outcome, null)::waitroom.settlement;
  end if;
  if p_outcome = 'returned' then
    perform waitroom._return_grants(array[p_ticket], 'returned', v_now);
    perform waitroom._wake(g.room_id);
  else
    update waitroom.grants set outcome = 'consumed', settled_at = v_now where ticket_id = p_ticket;
    if g.stock then
      update waitroom.rooms set stock_outstanding = stock_outstanding - 1 where id = g.room_id
      returning stock_available, stock_outstanding into v_available, v_outstanding;
      -- The last unit is sold: admission ends the queue (see _sell_out).
      if v_available = 0 and v_outstanding = 0 then
        perform waitroom._wake(g.room_id);
      end if;
    end if;
    perform waitroom._log(array[row(g.room_id, p_ticket, 'consumed', jsonb_build_object('stock', g.stock))
      ::waitroom.ledger_entry], v_now);
  end if;
  return row(true, 'ok', g.room_id, p_outcome, (select r.stock_available from waitroom.rooms r where r.id = g.room_id))
    ::waitroom.settlement;
end
$$;
comment on function waitroom.settle(uuid, text, timestamptz) is
  'The trusted caller reports how an admission ended: consumed (the unit of stock is sold; the shares stay used) or returned (the work or payment failed: the unit and the quota and pool shares come back, and the room is woken). Once per ticket. Codes: ok, not_granted, already_consumed, already_returned. WR400 bad outcome.';

create function waitroom.holder_shares(p_room text, p_holder text, p_tier text default null, p_now timestamptz default null)
returns setof waitroom.shares
language plpgsql stable
as $$
declare
  r waitroom.rooms := waitroom._room(p_room);
begin
  if waitroom._tier_error(r.quota_tiers, p_tier) is not null then
    perform waitroom._fail('WR400', waitroom._tier_error(r.quota_tiers, p_tier));
  end if;
  return query select * from waitroom._shares(r, p_holder, p_tier, waitroom._now(p_now)) s where s.tier is not null;
end
$$;
comment on function waitroom.holder_shares(text, text, text, timestamptz) is
  'A holder''s quota in the room (tier null = "default"): limit, used and left in the rolling window, and when the next share becomes available. No row when the room has no quotas. WR404 unknown room, WR400 unknown tier.';

create function waitroom.ticket_shares(p_ticket uuid, p_token text, p_now timestamptz default null)
returns setof waitroom.shares
language sql stable
as $$
  select s.*
    from waitroom.tickets t
    join waitroom.rooms r on r.id = t.room_id
   cross join lateral waitroom._shares(r, t.holder, t.tier, waitroom._now(p_now)) s
   where t.id = p_ticket and t.token_hash = waitroom._hash(p_token) and s.tier is not null
$$;
comment on function waitroom.ticket_shares(uuid, text, timestamptz) is
  'The quota of the ticket''s holder in its room, for the ticket''s current token (what GET /v1/tickets/{id} shows); no row for a wrong token, an anonymous ticket or a room without quotas.';

create view waitroom.stock_ledger as
select r.id as room_id,
       r.stock_available,
       r.stock_outstanding,
       l.added,
       l.reserved,
       l.returned,
       l.consumed,
       l.reserved - l.returned - l.consumed as ledger_outstanding,
       l.added - l.consumed - (l.reserved - l.returned - l.consumed) as ledger_available,
       (select count(*) from waitroom.grants g where g.room_id = r.id and g.stock and g.outcome is null) as grants_outstanding,
       r.stock_available = l.added - l.consumed - (l.reserved - l.returned - l.consumed)
         and r.stock_outstanding = l.reserved - l.returned - l.consumed
         and r.stock_outstanding = (select count(*) from waitroom.grants g
                                     where g.room_id = r.id and g.stock and g.outcome is null) as agrees
  from waitroom.rooms r
  cross join lateral (
    select coalesce(sum((e.data ->> 'units')::bigint) filter (where e.type = 'stock_added'), 0) as added,
           count(*) filter (where e.type = 'reserved') as reserved,
           count(*) filter (where e.type = 'returned') as returned,
           count(*) filter (where e.type = 'consumed') as consumed
      from waitroom.events e
     where e.room_id = r.id
       and (e.type = 'stock_added' or (e.type in ('reserved', 'returned', 'consumed') and (e.data ->> 'stock')::boolean))
  ) l
 where r.stock_available is not null;
comment on view waitroom.stock_ledger is
  'Stock of every room that has one, reconciled from the ledger: added, reserved, returned and consumed units; outstanding = reserved - returned - consumed; available = added - consumed - outstanding. agrees when the room''s counters match the ledger and its unsettled grants. Reads the room''s whole ledger (stock rows are kept past retention).';
