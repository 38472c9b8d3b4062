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
       a.median_wait,
       r.opens_at,
       case
         when r.health_url is null then null
         when r.healthy then 'healthy'
         when not r.healthy then 'unhealthy'
         else 'unknown'
       end as health
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
    select count(*) filter (where e.created_at > now() - interval '1 minute') as admitted_last_minute,
           make_interval(secs => percentile_cont(0.5) within group (order by (e.data ->> 'waited_ms')::bigint) / 1000.0)
             as median_wait
      from waitroom.events e
     where e.room_id = r.id and e.type = 'admitted' and e.created_at > now() - interval '15 minutes'
  ) a
  cross join lateral (
    select now() - min(t.queued_at) as oldest_wait
      from waitroom.tickets t
     where t.room_id = r.id and t.status = 'queued'
  ) w;
comment on view waitroom.room_stats is
  'One row per room: queued, admitted (offers), active, draining, free_seats, admissions in the last minute, the oldest current wait, the median wait of admissions in the last 15 minutes, and health: null without a health_url, else healthy, unhealthy or unknown (not probed yet; admission waits). oldest_wait reads every queued ticket of the room.';

create view waitroom.queue as
select t.room_id,
       row_number() over (partition by t.room_id order by t.priority desc, t.seq) as "position",
       t.id as ticket_id,
       t.holder,
       t.priority,
       t.queued_at,
       now() - t.queued_at as waited,
       t.last_seen_at
  from waitroom.tickets t
 where t.status = 'queued';
comment on view waitroom.queue is
  'Queued tickets in admission order with their position; filter by room_id (and add a LIMIT on long queues).';

create view waitroom.recent_events as
select e.id, e.created_at, e.room_id, e.ticket_id, e.type, e.data
  from waitroom.events e
 where e.created_at > now() - interval '1 hour'
 order by e.id desc;
comment on view waitroom.recent_events is 'The ledger of the last hour, newest first.';
