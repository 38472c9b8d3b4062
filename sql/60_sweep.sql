-- sweep: maintenance driven by time; safe to run concurrently and repeatedly.

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
       -- A constant bound (the shortest retention) lets the BRIN index skip recent blocks.
       and e.created_at < v_now - least(c_default_retention,
             (select make_interval(secs => min(retention_seconds)) from waitroom.rooms))
     limit p_limit
  )
  delete from waitroom.events e using old where e.id = old.id;
  get diagnostics v.events_purged = row_count;

  return v;
end
$$;
comment on function waitroom.sweep(integer, text, timestamptz) is
  'Expire lapsed offers and idle queued tickets, move sessions active -> draining -> ended, wake admission where seats were freed, purge finished tickets and events past the room''s retention_seconds; all rooms, or only p_room. Each kind at most p_limit rows; concurrent runs share the work.';
