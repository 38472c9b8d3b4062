-- admit: offer free seats to the next tickets in line.

-- The body of admit. Ledger rows about the tickets in p_unannounced are not
-- published: passthrough joins learn their own admission from join's answer,
-- so joining alone sends no NOTIFY.
create function waitroom._admit(p_room text, p_max integer, p_now timestamptz, p_unannounced uuid[])
returns table (ticket_id uuid, holder text, priority integer, claim_deadline timestamptz)
language plpgsql
as $$
#variable_conflict use_column
declare
  v_now      timestamptz;
  r          waitroom.rooms;
  v_occupied bigint;
  v_budget   bigint;
  v_admitted jsonb;
  v_events   jsonb;
  v_events_admitted jsonb;
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
  v_now := coalesce(p_now, clock_timestamp());
  r := waitroom._room(p_room);
  if r.mode not in ('open', 'passthrough') or r.opens_at > v_now then
    return;
  end if;

  -- Record lapsed offers and finished sessions first so their seats count as free.
  select e.events into v_events from waitroom._expire(p_room, 1000, v_now) e;

  -- The opening: the tickets that joined before opens_at are drawn into a
  -- random order first (once per room, see waitroom._draw).
  if r.opens_at is not null and r.shuffled_at is null then
    v_events := v_events || waitroom._draw(r, v_now);
  end if;

  -- Upstream health gate: fail closed. Only a healthy last probe lets anyone
  -- in; set_health wakes the room when it turns healthy again.
  if r.health_url is not null and r.healthy is not true then
    perform waitroom._publish(v_events);
    return;
  end if;

  select (select count(*) from waitroom.tickets t where t.room_id = p_room and t.status = 'admitted')
       + (select count(*) from waitroom.tickets t where t.room_id = p_room and t.status in ('active', 'draining'))
    into v_occupied;
  v_budget := least(r.capacity - v_occupied, coalesce(p_max, r.capacity));
  if r.mode = 'open' and r.admit_per_minute is not null then
    v_budget := least(v_budget, r.admit_per_minute - (
      select count(*) from waitroom.events e
       where e.room_id = p_room and e.type = 'admitted'
         and e.created_at > v_now - interval '1 minute' and e.created_at <= v_now));
  end if;
  if v_budget <= 0 then
    perform waitroom._publish(v_events);
    return;
  end if;

  with picked as (
    select t.id
      from waitroom.tickets t
     where t.room_id = p_room and t.status = 'queued'
       and t.last_seen_at > v_now - make_interval(secs => r.idle_seconds)
     order by t.priority desc, t.seq
     limit v_budget
       for update skip locked
  ), done as (
    update waitroom.tickets t
       set status = 'admitted', admitted_at = v_now,
           claim_deadline = v_now + make_interval(secs => r.claim_seconds)
      from picked where t.id = picked.id
    returning t.id, t.holder, t.priority, t.seq, t.claim_deadline, t.queued_at
  ), logged as (
    insert into waitroom.events as e (room_id, ticket_id, type, data, created_at)
    select p_room, d.id, 'admitted',
           jsonb_build_object('claim_deadline', d.claim_deadline,
                              'waited_ms', (extract(epoch from v_now - d.queued_at) * 1000)::bigint),
           v_now
      from done d
    returning e.*
  )
  select (select jsonb_agg(jsonb_build_object(
                   'ticket_id', d.id, 'holder', d.holder, 'priority', d.priority, 'claim_deadline', d.claim_deadline)
                 order by d.priority desc, d.seq)
            from done d),
         (select jsonb_agg(to_jsonb(l) order by l.id) from logged l)
    into v_admitted, v_events_admitted;

  if v_admitted is not null then
    perform waitroom._dequeue(p_room, jsonb_array_length(v_admitted));
  end if;
  perform waitroom._publish(coalesce(jsonb_agg(e), '[]'))
     from jsonb_array_elements(v_events || coalesce(v_events_admitted, '[]')) e
    where (e ->> 'ticket_id') is null or (e ->> 'ticket_id')::uuid <> all (coalesce(p_unannounced, '{}'));
  return query
  select a.* from jsonb_to_recordset(v_admitted) as a(ticket_id uuid, holder text, priority integer, claim_deadline timestamptz);
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
  'Admit the next queued tickets (priority desc, then join order) into free seats, within admit_per_minute and p_max; one row per admitted ticket. Serialised per room by an advisory lock: occupied seats never exceed capacity. Admits nobody when the room is paused, closed, before opens_at, or when it has a health_url whose last probe was not healthy; the first admission at or after opens_at makes the opening draw (see waitroom.shuffle_audit).';
