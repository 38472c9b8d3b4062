-- Views for people: live numbers and the queue, readable from psql.

create view waitroom.room_stats as
select r.id as room_id,
       r.mode,
       r.capacity,
       q.queued,
       s.admitted,
       s.active,
       s.draining,
       greatest(r.capacity - (s.admitted + s.active + s.draining), 0) as free_seats,
       a.admitted_last_minute,
       r.admit_per_minute,
       w.oldest_wait,
       m.median_wait,
       r.opens_at,
       case
         when r.health_url is null then null
         when r.healthy then 'healthy'
         when not r.healthy then 'unhealthy'
         else 'unknown'
       end as health,
       r.stock_available,
       r.stock_outstanding,
       r.sold_out_at is not null as sold_out,
       waitroom._pool_left(r, now()) as pool_left
  from waitroom.rooms r
  cross join lateral (select waitroom._depth(r.id) as queued) q
  cross join lateral (
    select (select count(*) from waitroom.tickets t where t.room_id = r.id and t.status = 'admitted') as admitted,
           count(*) filter (where t.status = 'active') as active,
           count(*) filter (where t.status = 'draining') as draining
      from waitroom.tickets t
     where t.room_id = r.id and t.status in ('active', 'draining')
  ) s
  cross join lateral (
    select coalesce(sum(a.admitted), 0) as admitted_last_minute
      from waitroom.admission_tally a
     where a.room_id = r.id and a.admitted_at > now() - interval '1 minute'
  ) a
  cross join lateral (
    -- The waits are in the ledger rows: this reads every room's last 15 minutes of ledger
    -- (the BRIN index on created_at bounds it), an operator's read.
    select make_interval(secs => percentile_cont(0.5) within group (order by (e.data ->> 'waited_ms')::bigint) / 1000.0)
             as median_wait
      from waitroom.events e
     where e.room_id = r.id and e.type = 'admitted' and e.created_at > now() - interval '15 minutes'
  ) m
  cross join lateral (
    -- A join that committed after this statement's clock started reads as no wait, not a negative one.
    select case when min(t.queued_at) is not null then greatest(now() - min(t.queued_at), interval '0') end
             as oldest_wait
      from waitroom.tickets t
     where t.room_id = r.id and t.status = 'queued'
  ) w;
comment on view waitroom.room_stats is
  'One row per room: queued, admitted (offers), active, draining, free_seats, admissions in the last minute, the oldest current wait, the median wait of admissions in the last 15 minutes (reads the last 15 minutes of the ledger), health: null without a health_url, else healthy, unhealthy or unknown (not probed yet; admission waits); stock_available and stock_outstanding (null and 0 without stock), sold_out, and pool_left (today''s offers left in the pool; null without one). oldest_wait reads every queued ticket of the room.';

-- The admin API's rooms, built here so the view stays the one definition of the numbers.
create function waitroom.list_rooms(p_room text default null) returns setof waitroom.room_listing
language sql stable
as $$
  select r.id, waitroom._shown_settings(r), r.created_at, r.updated_at,
         jsonb_build_object(
           'queued', s.queued, 'admitted', s.admitted, 'active', s.active, 'draining', s.draining,
           'free_seats', s.free_seats, 'admitted_last_minute', s.admitted_last_minute,
           'oldest_wait_seconds', extract(epoch from s.oldest_wait)::float8,
           'median_wait_seconds', extract(epoch from s.median_wait)::float8,
           'health', s.health, 'stock_available', s.stock_available, 'stock_outstanding', s.stock_outstanding,
           'sold_out', s.sold_out, 'pool_left', s.pool_left)
    from waitroom.rooms r
    join waitroom.room_stats s on s.room_id = r.id
   where p_room is null or r.id = p_room
   order by r.id
$$;
comment on function waitroom.list_rooms(text) is
  'Every room (or only p_room; no row if unknown) with its settings (a JSON object, as _shown_settings) and live numbers from room_stats, in id order: what GET /v1/rooms shows.';

-- Before a room's opening draw its entrants already hold their drawn places
-- (waitroom._drawn_seq); the view shows them in join order, without a
-- position, as positions does: an observer cannot read the seed, and must
-- not read the draw off the view either.
create view waitroom.queue as
select q.room_id,
       case when not q.pending then q.place end as "position",
       q.id as ticket_id,
       q.holder,
       q.priority,
       q.queued_at,
       now() - q.queued_at as waited,
       q.last_seen_at
  from (select t.*, waitroom._draw_pending(r, now()) as pending,
               row_number() over (partition by t.room_id order by t.priority desc, t.seq) as place
          from waitroom.tickets t
          join waitroom.rooms r on r.id = t.room_id
         where t.status = 'queued') q
 order by q.room_id, q.pending, case when q.pending then null else q.place end, q.queued_at, q.id;
comment on view waitroom.queue is
  'Queued tickets in admission order with their position; before a room''s opening draw in join order, position null (the draw gives the places). Filter by room_id (and add a LIMIT on long queues).';

create view waitroom.recent_events as
select e.id, e.created_at, e.room_id, e.ticket_id, e.type, e.data
  from waitroom.events e
 where e.created_at > now() - interval '1 hour'
 order by e.id desc;
comment on view waitroom.recent_events is 'The ledger of the last hour, newest first.';
