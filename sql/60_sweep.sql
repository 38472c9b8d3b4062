-- sweep: maintenance driven by time; safe to run concurrently and repeatedly.

-- The horizon engine, shared by sweep (all rooms) and admit (its own room,
-- so that seats whose horizon passed count as free before it admits).
-- State transitions driven by time, for one room or all; each kind bounded
-- by p_limit, rows picked with SKIP LOCKED so concurrent callers share work.
create function waitroom._expire(p_room text, p_limit integer, p_now timestamptz)
returns table (
  offers_expired bigint, idle_expired bigint, sessions_drained bigint, sessions_ended bigint, freed_rooms text[],
  event_ids bigint[]
)
language plpgsql
as $$
#variable_conflict use_column
declare
  v_freed  text[];
  v_rooms  text[];
  v_counts bigint[];
  v_ids    bigint[];
  v_lapsed uuid[];
begin
  -- Offers nobody claimed in time: the seat goes back to the pool.
  with lapsed as (
    select t.id
      from waitroom.rooms r
      join waitroom.tickets t on t.room_id = r.id
     where (p_room is null or r.id = p_room)
       and t.status = 'admitted' and t.claim_deadline <= p_now
     limit p_limit
       for update of t skip locked
  ), done as (
    update waitroom.tickets t
       set status = 'expired', ended_at = p_now, end_reason = 'claim_timeout'
      from lapsed where t.id = lapsed.id
    returning t.id, t.room_id
  )
  select count(*), array_agg(distinct d.room_id),
         waitroom._log(array_agg(row(d.room_id, d.id, 'expired', '{"reason":"claim_timeout"}')::waitroom.ledger_entry), p_now),
         array_agg(d.id)
    into offers_expired, freed_rooms, event_ids, v_lapsed
    from done d;
  -- Their stock and shares come back (rooms with stock, quotas or a pool).
  event_ids := event_ids || waitroom._return_grants(v_lapsed, 'claim_timeout', p_now);

  -- Queued tickets nobody has heard from for idle_seconds. Per room, with the
  -- room's cutoff fixed before the scan, so the presence index bounds it: a
  -- live queue of a million costs an index probe, not a read of every ticket.
  with idle as (
    select t.id
      from waitroom.rooms r
     cross join lateral (
       select q.id
         from waitroom.tickets q
        where q.room_id = r.id and q.status = 'queued'
          and q.last_seen_at <= p_now - make_interval(secs => r.idle_seconds)
        order by q.last_seen_at
        limit p_limit
          for update skip locked
     ) t
     where (p_room is null or r.id = p_room)
     limit p_limit
  ), done as (
    update waitroom.tickets t
       set status = 'expired', ended_at = p_now, end_reason = 'idle'
      from idle where t.id = idle.id
    returning t.id, t.room_id
  )
  select g.rooms, g.counts, l.ids
    into v_rooms, v_counts, v_ids
    from (select array_agg(room_id) as rooms, array_agg(n) as counts
            from (select room_id, count(*) as n from done group by room_id) per_room) g,
         (select waitroom._log(array_agg(row(d.room_id, d.id, 'expired', '{"reason":"idle"}')::waitroom.ledger_entry), p_now)
                   as ids
            from done d) l;
  perform waitroom._tally_dequeued(v_rooms[i], v_counts[i]) from generate_subscripts(v_rooms, 1) i;
  idle_expired := coalesce((select sum(n) from unnest(v_counts) n), 0);
  event_ids := event_ids || v_ids;

  -- Sessions past expiry + grace end (straight from active when sweep lagged).
  with over as (
    select t.id
      from waitroom.rooms r
      join waitroom.tickets t on t.room_id = r.id
     where (p_room is null or r.id = p_room)
       and t.status in ('active', 'draining')
       and t.expires_at <= p_now - make_interval(secs => r.grace_seconds)
     limit p_limit
       for update of t skip locked
  ), done as (
    update waitroom.tickets t
       set status = 'ended', ended_at = p_now, end_reason = 'session_over'
      from over where t.id = over.id
    returning t.id, t.room_id
  )
  select count(*), array_agg(distinct d.room_id),
         waitroom._log(array_agg(row(d.room_id, d.id, 'ended', '{"reason":"session_over"}')::waitroom.ledger_entry), p_now)
    into sessions_ended, v_freed, v_ids
    from done d;
  event_ids := event_ids || v_ids;
  freed_rooms := array(select distinct unnest(coalesce(freed_rooms, '{}') || coalesce(v_freed, '{}')));

  -- Sessions past expiry start draining.
  with due as (
    select t.id
      from waitroom.rooms r
      join waitroom.tickets t on t.room_id = r.id
     where (p_room is null or r.id = p_room)
       and t.status = 'active' and t.expires_at <= p_now
     limit p_limit
       for update of t skip locked
  ), done as (
    update waitroom.tickets t
       set status = 'draining'
      from due where t.id = due.id
    returning t.id, t.room_id, t.expires_at
  )
  select count(*),
         waitroom._log(array_agg(row(d.room_id, d.id, 'draining', jsonb_build_object('expires_at', d.expires_at)
           )::waitroom.ledger_entry), p_now)
    into sessions_drained, v_ids
    from done d;
  event_ids := event_ids || v_ids;

  return next;
end
$$;
comment on function waitroom._expire(text, integer, timestamptz) is
  'Record lapsed offers, idle tickets, draining and ended sessions (one room or all), each kind bounded by p_limit; freed_rooms lists the rooms that got seats back, event_ids the ids of the ledger rows written (for waitroom._publish_ids).';

create function waitroom.sweep(
  p_limit integer default 1000,
  p_room  text default null,
  p_now   timestamptz default null
)
returns waitroom.sweep_result
language plpgsql
as $$
declare
  v_now timestamptz := waitroom._now(p_now);
  -- Events of deleted rooms follow the default retention.
  c_default_retention constant interval := interval '7 days';
  v waitroom.sweep_result;
  v_freed text[];
  v_ids bigint[];
  v_tally_purged bigint;
begin
  if p_limit is null or p_limit < 1 then
    perform waitroom._fail('WR400', 'p_limit must be at least 1');
  end if;
  select e.offers_expired, e.idle_expired, e.sessions_drained, e.sessions_ended, e.freed_rooms, e.event_ids
    into v.offers_expired, v.idle_expired, v.sessions_drained, v.sessions_ended, v_freed, v_ids
    from waitroom._expire(p_room, p_limit, v_now) e;
  perform waitroom._wake(freed) from unnest(v_freed) freed;
  perform waitroom._publish_ids(v_ids);

  with old as (
    select t.id
      from waitroom.rooms r
      join waitroom.tickets t on t.room_id = r.id
     where (p_room is null or r.id = p_room)
       and t.status in ('ended', 'expired', 'left')
       and t.ended_at < v_now - make_interval(secs => r.retention_seconds)
     limit p_limit
       for update of t skip locked
  )
  delete from waitroom.tickets t using old where t.id = old.id;
  get diagnostics v.tickets_purged = row_count;

  with old as (
    select e.id
      from waitroom.events e
      left join waitroom.rooms r on r.id = e.room_id
     where (p_room is null or e.room_id = p_room)
       and e.created_at < v_now - coalesce(make_interval(secs => r.retention_seconds), c_default_retention)
       -- A stock room's stock rows stay: waitroom.stock_ledger reconciles from all of them.
       and (r.stock_available is null or e.type not in ('stock_added', 'reserved', 'returned', 'consumed'))
       -- A constant bound (the shortest retention) lets the BRIN index skip recent blocks.
       and e.created_at < v_now - least(c_default_retention,
             (select make_interval(secs => min(retention_seconds)) from waitroom.rooms))
     limit p_limit
       for update of e skip locked
  )
  delete from waitroom.events e using old where e.id = old.id;
  get diagnostics v.events_purged = row_count;

  -- The admission tally leaves with the ledger rows it counts: same horizon.
  with old as (
    select a.room_id, a.admitted_at
      from waitroom.admission_tally a
      left join waitroom.rooms r on r.id = a.room_id
     where (p_room is null or a.room_id = p_room)
       and a.admitted_at < v_now - coalesce(make_interval(secs => r.retention_seconds), c_default_retention)
     limit p_limit
       for update of a skip locked
  )
  delete from waitroom.admission_tally a using old
   where a.room_id = old.room_id and a.admitted_at = old.admitted_at;
  get diagnostics v_tally_purged = row_count;

  v.batch_full := greatest(v.offers_expired, v.idle_expired, v.sessions_drained, v.sessions_ended,
                           v.tickets_purged, v.events_purged, v_tally_purged) >= p_limit;
  return v;
end
$$;
comment on function waitroom.sweep(integer, text, timestamptz) is
  'Expire lapsed offers and idle queued tickets (in every room, whatever its mode or opens_at), move sessions active -> draining -> ended, wake admission where seats were freed, purge finished tickets, events and the admission tally past the room''s retention_seconds; all rooms, or only p_room. Each kind at most p_limit rows, batch_full when one reached it (call again: more may be due); rows are taken with SKIP LOCKED, so concurrent runs share the work and each row is changed or deleted by one of them.';
