-- admit: offer free seats to the next tickets in line.

-- Readers of admissions by time sum this tally (one row per admission)
-- instead of indexing every admitted ledger row. Admissions of a room are
-- serialised by its lock; two at one instant (a pinned clock) share a row.
create function waitroom._tally_admitted(p_room text, p_at timestamptz, p_count integer) returns void
language sql
as $$
  insert into waitroom.admission_tally as a (room_id, admitted_at, admitted)
  values (p_room, p_at, p_count)
  on conflict (room_id, admitted_at) do update set admitted = a.admitted + excluded.admitted
$$;
comment on function waitroom._tally_admitted(text, timestamptz, integer) is
  'Record in waitroom.admission_tally that p_count tickets of the room were admitted at p_at (the created_at of their ledger rows). Called by admit, the only writer of admitted rows.';

-- The body of admit. Ledger rows about the tickets in p_unannounced are not
-- published: passthrough joins learn their own admission from join's answer,
-- so joining alone sends no NOTIFY.
create function waitroom._admit(p_room text, p_max integer, p_now timestamptz, p_unannounced uuid[])
returns table (ticket_id uuid, holder text, priority integer, claim_deadline timestamptz)
language plpgsql
as $$
#variable_conflict use_column
declare
  v_now        timestamptz;
  r            waitroom.rooms;
  v_occupied   bigint;
  v_budget     bigint;
  v_deadline   timestamptz;
  -- The deadline as JSON once, not converted to text again for every admitted row.
  v_deadline_json jsonb;
  -- Ids of the ledger rows written, to announce at the end.
  v_event_ids  bigint[];
  v_logged     bigint[];
  -- The admitted tickets, in admission order.
  v_tickets    uuid[];
  v_holders    text[];
  v_priorities integer[];
  v_stock      waitroom.stock_level;
begin
  -- Each statement below must see every admission committed before the lock
  -- was granted; only READ COMMITTED takes a fresh snapshot per statement.
  if current_setting('transaction_isolation') <> 'read committed' then
    perform waitroom._fail('WR400', 'waitroom.admit must run at READ COMMITTED isolation');
  end if;
  if p_max is not null and p_max < 0 then
    perform waitroom._fail('WR400', 'p_max must not be negative');
  end if;
  perform waitroom._lock_room(p_room);
  -- The clock is read after the lock, not at transaction start: admissions
  -- committed by whoever held the lock before must fall inside the rate
  -- window, and ours must be stamped later than theirs.
  v_now := coalesce(waitroom._pinned_clock(p_now), clock_timestamp());
  r := waitroom._room(p_room);
  if r.mode not in ('open', 'passthrough') or r.opens_at > v_now then
    return;
  end if;

  -- Record lapsed offers and finished sessions first so their seats count as free.
  select e.event_ids into v_event_ids from waitroom._expire(p_room, 1000, v_now) e;

  -- The opening: the tickets that joined before opens_at are drawn into a
  -- random order first (once per room, see waitroom._draw).
  if r.opens_at is not null and r.shuffled_at is null then
    v_event_ids := v_event_ids || waitroom._draw(r, v_now);
  end if;

  -- Upstream health gate: fail closed. Only a healthy last probe lets anyone
  -- in; set_health wakes the room when it turns healthy again.
  if r.health_url is not null and r.healthy is not true then
    v_budget := 0;
  else
    select (select count(*) from waitroom.tickets t where t.room_id = p_room and t.status = 'admitted')
         + (select count(*) from waitroom.tickets t where t.room_id = p_room and t.status in ('active', 'draining'))
      into v_occupied;
    v_budget := least(r.capacity - v_occupied, coalesce(p_max, r.capacity));
    if r.mode = 'open' and r.admit_per_minute is not null then
      v_budget := least(v_budget, r.admit_per_minute - (
        select coalesce(sum(a.admitted), 0) from waitroom.admission_tally a
         where a.room_id = p_room
           and a.admitted_at > v_now - interval '1 minute' and a.admitted_at <= v_now));
    end if;
  end if;

  -- Stock and the pool bound the offers too (read after _expire gave back
  -- what lapsed offers held). Nothing left and nothing outstanding: sold out.
  if r.stock_available is not null then
    v_stock := waitroom._stock_level(p_room);
    if v_stock.stock_available = 0 and v_stock.stock_outstanding = 0 then
      v_event_ids := v_event_ids || waitroom._sell_out(p_room, v_now);
    end if;
    v_budget := least(v_budget, v_stock.stock_available);
  end if;
  if r.pool_per_day is not null then
    v_budget := least(v_budget, waitroom._pool_left(r, v_now));
  end if;

  if v_budget > 0 then
    v_deadline := v_now + make_interval(secs => r.claim_seconds);
    v_deadline_json := to_jsonb(v_deadline);
    -- The admitted rows come back as arrays of plain values, not as JSON:
    -- at 10,000 admissions building and re-parsing JSON cost a quarter of the call.
    with picked as (
      select t.id
        from waitroom.tickets t
       where t.room_id = p_room and t.status = 'queued'
         and t.last_seen_at > v_now - make_interval(secs => r.idle_seconds)
         -- A holder with no share left waits for its window (join refused it,
         -- unless its tier's limit was lowered since).
         and (r.quota_tiers is null or t.holder is null
              or (waitroom._shares(r, t.holder, t.tier, v_now)).shares_left > 0)
       order by t.priority desc, t.seq
       limit v_budget
         for update skip locked
    ), done as (
      update waitroom.tickets t
         set status = 'admitted', admitted_at = v_now, claim_deadline = v_deadline
        from picked where t.id = picked.id
      returning t.id, t.holder, t.priority, t.seq, t.queued_at
    )
    select waitroom._log(array_agg(row(p_room, d.id, 'admitted',
             jsonb_build_object('claim_deadline', v_deadline_json,
                                'waited_ms', greatest((extract(epoch from v_now - d.queued_at) * 1000)::bigint, 0))
           )::waitroom.ledger_entry order by d.priority desc, d.seq), v_now),
           array_agg(d.id order by d.priority desc, d.seq),
           array_agg(d.holder order by d.priority desc, d.seq),
           array_agg(d.priority order by d.priority desc, d.seq)
      into v_logged, v_tickets, v_holders, v_priorities
      from done d;
    if cardinality(v_logged) > 0 then
      perform waitroom._tally_dequeued(p_room, cardinality(v_logged));
      perform waitroom._tally_admitted(p_room, v_now, cardinality(v_logged));
      v_event_ids := v_event_ids || v_logged;
      if r.stock_available is not null or r.quota_tiers is not null or r.pool_per_day is not null then
        v_event_ids := v_event_ids || waitroom._grant(r, v_tickets, v_now);
      end if;
    end if;
  end if;

  if p_unannounced is not null then
    -- NOT IN a subquery is hashed; <> all (array) would compare every row
    -- with every ticket of a batch of 10,000 passthrough joins.
    v_event_ids := array(
      select e.id
        from waitroom.events e
       where e.id = any (v_event_ids)
         and (e.ticket_id is null or e.ticket_id not in (select unnest(p_unannounced))));
  end if;
  perform waitroom._publish_ids(v_event_ids);
  return query
  select a.id, a.holder, a.priority, v_deadline
    from unnest(v_tickets, v_holders, v_priorities) as a(id, holder, priority);
end
$$;
comment on function waitroom._admit(text, integer, timestamptz, uuid[]) is
  'waitroom.admit, publishing the ledger rows it wrote except those about the tickets in p_unannounced.';

create function waitroom.admit(
  p_room text,
  p_max  integer default null,
  p_now  timestamptz default null
) returns table (ticket_id uuid, holder text, priority integer, claim_deadline timestamptz)
language sql
as $$ select * from waitroom._admit(p_room, p_max, p_now, null) $$;
comment on function waitroom.admit(text, integer, timestamptz) is
  'Admit the next queued tickets (priority desc, then join order) into free seats, within admit_per_minute and p_max; one row per admitted ticket. Serialised per room by an advisory lock: occupied seats never exceed capacity. Never offers more than the room''s stock left, its pool''s share of the day or a holder''s quota (each offer of such a room is a grant, see 47_stock.sql); a room with stock of which nothing is left or outstanding is sold out: its queued tickets end (reason sold_out). Admits nobody when the room is paused, closed, before opens_at, or when it has a health_url whose last probe was not healthy; the first admission at or after opens_at makes the opening draw (see waitroom.shuffle_audit).';
