-- history: a room's recent minutes, read from the ledger (the admin dashboard's charts).

-- Depth is not recorded per minute; it is derived: the room's depth now,
-- minus what the queue gained (joined) and plus what it lost (admitted, left
-- while queued, expired while idle) after each minute. Events stamped after
-- the window (an injected clock) count as "after" too, so the last bucket is
-- the depth now.
create function waitroom.history(p_room text, p_minutes integer default 60, p_now timestamptz default null)
returns table (
  minute         timestamptz,
  joined         bigint,
  admitted       bigint,
  "left"         bigint,
  expired        bigint,
  median_wait_ms bigint,
  p90_wait_ms    bigint,
  depth          bigint
)
language plpgsql stable
as $$
#variable_conflict use_column
declare
  v_now   timestamptz := waitroom._now(p_now);
  v_last  timestamptz := date_trunc('minute', v_now);
  v_first timestamptz;
  v_depth bigint;
begin
  if p_minutes is null or p_minutes not between 1 and 1440 then
    perform waitroom._fail('WR400', 'p_minutes must be between 1 and 1440');
  end if;
  perform waitroom._room(p_room);
  v_first := v_last - make_interval(mins => p_minutes - 1);
  v_depth := waitroom._depth(p_room);
  return query
  with counted as (
    select date_trunc('minute', e.created_at) as minute,
           count(*) filter (where e.type = 'joined') as joined,
           count(*) filter (where e.type = 'admitted') as admitted,
           count(*) filter (where e.type = 'left') as "left",
           count(*) filter (where e.type = 'expired') as expired,
           sum(case
                 when e.type = 'joined' then 1
                 when e.type = 'admitted' then -1
                 when e.type = 'left' and e.data ->> 'from' = 'queued' then -1
                 when e.type = 'expired' and e.data ->> 'reason' = 'idle' then -1
                 else 0
               end) as net,
           percentile_cont(0.5) within group (order by (e.data ->> 'waited_ms')::float8)
             filter (where e.type = 'admitted') as median_wait_ms,
           percentile_cont(0.9) within group (order by (e.data ->> 'waited_ms')::float8)
             filter (where e.type = 'admitted') as p90_wait_ms
      from waitroom.events e
     where e.room_id = p_room
       and e.created_at >= v_first
       and e.type in ('joined', 'admitted', 'left', 'expired')
     group by 1
  ), minutes as (
    select m as minute
      from generate_series(v_first, greatest(v_last, (select max(c.minute) from counted c)), interval '1 minute') m
  ), series as (
    select m.minute, c.joined, c.admitted, c."left", c.expired, c.median_wait_ms, c.p90_wait_ms,
           -- Net change of the queue after this minute.
           coalesce(sum(coalesce(c.net, 0)) over (order by m.minute desc rows between unbounded preceding and 1 preceding), 0)
             as net_after
      from minutes m
      left join counted c on c.minute = m.minute
  )
  select s.minute,
         coalesce(s.joined, 0),
         coalesce(s.admitted, 0),
         coalesce(s."left", 0),
         coalesce(s.expired, 0),
         round(s.median_wait_ms)::bigint,
         round(s.p90_wait_ms)::bigint,
         -- Events purged by retention (windows longer than retention_seconds) can make this go negative.
         greatest(v_depth - s.net_after, 0)::bigint
    from series s
   where s.minute <= v_last
   order by s.minute;
end
$$;
comment on function waitroom.history(text, integer, timestamptz) is
  'A room''s last p_minutes (1 to 1440, default 60) minute by minute from the ledger, oldest first, the current minute last: tickets joined, admitted, left and expired, the median and 90th-percentile wait (ms) of that minute''s admissions (null without any), and the queue depth at the end of the minute, derived from the depth now and the changes since. WR404 unknown room, WR400 bad p_minutes.';
