-- positions / position: where tickets stand, read in one snapshot.

-- One query per room and change, however many subscribers a process has:
-- the queue is read once, from its head down to the furthest ticket asked
-- about (at most 10000 rows per priority band), and ranked.
create function waitroom.positions(p_room text, p_tickets uuid[], p_now timestamptz default null)
returns table (
  ticket_id   uuid,
  room_id     text,
  status      text,
  "position"  bigint,
  depth       bigint,
  approximate boolean,
  eta_seconds integer,
  eta_low_seconds  integer,
  eta_high_seconds integer,
  expires_at  timestamptz,
  instance    integer
)
language plpgsql stable
as $$
#variable_conflict use_column
declare
  -- Ranks are exact up to here; past it the position is interpolated.
  c_exact_limit constant bigint := 10000;
  v_now   timestamptz := waitroom._now(p_now);
  r       waitroom.rooms;
  v_depth bigint;
  v_rate  numeric;
  v_rate_low  numeric;
  v_rate_high numeric;
  v_gap   numeric;
  v_plan_cache_mode text;
begin
  select * into r from waitroom.rooms where id = p_room;
  if not found then
    return;
  end if;
  v_depth := waitroom._depth(p_room);
  -- ETA from the admission rate observed over the last five minutes: the
  -- mean rate for eta_seconds; for the range, the slowest and the fastest
  -- minute since the room's first admission in that window, and the mean gap
  -- between admission instants (admissions come in batches, one per tick).
  with admissions as (
    select e.created_at
      from waitroom.events e
     where e.room_id = p_room and e.type = 'admitted'
       and e.created_at > v_now - interval '5 minutes' and e.created_at <= v_now
  ), minutes as (
    select m, count(a.created_at) as n
      from generate_series(0, 4) m
      left join admissions a
        on a.created_at > v_now - make_interval(mins => m + 1) and a.created_at <= v_now - make_interval(mins => m)
     group by m
  ), summary as (
    select count(*) as n, count(distinct a.created_at) as batches,
           extract(epoch from max(a.created_at) - min(a.created_at)) as span
      from admissions a
  )
  select s.n / 300.0,
         -- minutes wholly before the first admission are left out: the room was not admitting yet
         (select min(mi.n) / 60.0 from minutes mi
           where v_now - make_interval(mins => mi.m) >= (select min(a.created_at) from admissions a)),
         (select max(mi.n) / 60.0 from minutes mi),
         case when s.batches >= 2 then s.span / (s.batches - 1) else r.tick_ms / 1000.0 end
    into v_rate, v_rate_low, v_rate_high, v_gap
    from summary s;
  v_rate_low := least(v_rate_low, v_rate);
  v_rate_high := greatest(v_rate_high, v_rate);
  if r.admit_per_minute is not null then
    v_rate := least(v_rate, r.admit_per_minute / 60.0);
    v_rate_low := least(v_rate_low, r.admit_per_minute / 60.0);
    v_rate_high := least(v_rate_high, r.admit_per_minute / 60.0);
  end if;
  -- Nobody is admitted in a paused or closed room, nor past a failing upstream.
  if r.mode not in ('open', 'passthrough') or (r.health_url is not null and r.healthy is not true) then
    v_rate := 0;
  end if;

  -- The cached plan of the query below is shaped by the calls that made it, and most ask about one
  -- ticket (every stream's first read): handed thousands, its nested loops re-read the queue once
  -- per ticket (1,000 tickets: 2 million index entries, ≈ 1 s). Many tickets get a plan of their own.
  if cardinality(p_tickets) > 16 then
    v_plan_cache_mode := current_setting('plan_cache_mode');
    perform set_config('plan_cache_mode', 'force_custom_plan', true);
  end if;
  return query
  with asked as (
    select t.*, waitroom._effective_status(t, r, v_now) as now_status
      from waitroom.tickets t
     where t.id = any (p_tickets) and t.room_id = p_room
  ), furthest as (
    select a.priority, a.seq from asked a where a.now_status = 'queued'
     order by a.priority, a.seq desc
     limit 1
  ), ranked as (
    -- Ahead of the furthest ticket: every higher band, then its own band up to it.
    select q.id, row_number() over (order by q.priority desc, q.seq) as rank
      from (
        (select q.id, q.priority, q.seq
           from waitroom.tickets q, furthest f
          where q.room_id = p_room and q.status = 'queued' and q.priority > f.priority
          order by q.priority desc, q.seq
          limit c_exact_limit)
        union all
        (select q.id, q.priority, q.seq
           from waitroom.tickets q, furthest f
          where q.room_id = p_room and q.status = 'queued' and q.priority = f.priority and q.seq <= f.seq
          order by q.seq
          limit c_exact_limit)
      ) q
  ), bands as (
    -- Each band's first and last seq once per query (two index probes each), not once per ticket.
    select p.priority,
           (select min(b.seq) from waitroom.tickets b
             where b.room_id = p_room and b.status = 'queued' and b.priority = p.priority) as head,
           (select max(b.seq) from waitroom.tickets b
             where b.room_id = p_room and b.status = 'queued' and b.priority = p.priority) as tail
      from (select distinct a.priority from asked a where a.now_status = 'queued') p
  ), placed as (
    select a.*,
           case
             when a.now_status <> 'queued' then null
             when k.rank <= c_exact_limit then k.rank
             -- Deep in a long queue: interpolate by seq within the ticket's band.
             else greatest(c_exact_limit + 1,
               round(v_depth * (a.seq - bd.head)::numeric / greatest(bd.tail - bd.head, 1))::bigint)
           end as pos,
           a.now_status = 'queued' and coalesce(k.rank > c_exact_limit, true) as approx
      from asked a
      left join ranked k on k.id = a.id
      left join bands bd on bd.priority = a.priority
  )
  select p.id, p.room_id, p.now_status, p.pos, v_depth, coalesce(p.approx, false),
         case when p.pos is not null and v_rate > 0 then ceil(p.pos / v_rate)::integer end,
         -- The range: the next pos admissions at the fastest and the slowest
         -- minute's rate, pos -/+ sqrt(pos) of them (the count's own noise),
         -- -/+ one gap between batches (where in the tick cycle we are).
         case when p.pos is not null and v_rate > 0
              then greatest(floor((p.pos - sqrt(p.pos)) / v_rate_high - v_gap), 0)::integer end,
         case when p.pos is not null and v_rate > 0 and v_rate_low > 0
              then ceil((p.pos + sqrt(p.pos)) / v_rate_low + v_gap)::integer end,
         case p.now_status
           when 'admitted' then p.claim_deadline
           when 'active' then p.expires_at
           when 'draining' then p.expires_at + make_interval(secs => r.grace_seconds)
         end,
         p.instance
    from placed p;
  if v_plan_cache_mode is not null then
    perform set_config('plan_cache_mode', v_plan_cache_mode, true);
  end if;
end
$$;
comment on function waitroom.positions(text, uuid[], timestamptz) is
  'Status, position (1 = next), depth, ETA (and its range), deadline and instance of many tickets of one room, in one query: what a process needs to update all its subscribers. expires_at is the claim deadline of an offer, the end of an active seat, the end of grace while draining. Positions are exact up to 10000, interpolated beyond (approximate = true).';

create function waitroom.position(p_ticket uuid, p_now timestamptz default null)
returns table (
  ticket_id   uuid,
  room_id     text,
  status      text,
  "position"  bigint,
  depth       bigint,
  approximate boolean,
  eta_seconds integer,
  eta_low_seconds  integer,
  eta_high_seconds integer
)
language sql stable
as $$
  select p.ticket_id, p.room_id, p.status, p."position", p.depth, p.approximate, p.eta_seconds,
         p.eta_low_seconds, p.eta_high_seconds
    from waitroom.tickets t
   cross join lateral waitroom.positions(t.room_id, array[t.id], p_now) p
   where t.id = p_ticket
$$;
comment on function waitroom.position(uuid, timestamptz) is
  'Status, position (1 = next), depth and ETA of a ticket. Exact up to position 10000, interpolated beyond (approximate = true). eta_seconds is null when there is no recent admission to go by; eta_low_seconds and eta_high_seconds bound it (high is null when a recent minute admitted nobody). No row for an unknown ticket.';
