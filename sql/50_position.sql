-- positions / position: where tickets stand, read in one snapshot.

-- One query per room and change, however many subscribers a process has:
-- the queue is read once, from its head down to the furthest ticket asked
-- about (at most 10000 rows per priority band), and ranked.
create function waitroom.positions(p_room text, p_tickets uuid[], p_now timestamptz default null)
returns setof waitroom.ticket_state
language plpgsql stable
-- The tickets asked about meet the stretch of queue ahead of them in a join
-- by id. Planned as a nested loop (statistics gathered before a rush say the
-- room is empty, so both sides look like one row), it re-reads the stretch
-- once per ticket; as a hash join it reads it once, whatever the estimates.
set enable_nestloop = off
as $$
declare
  -- Ranks are exact up to here; past it the position is interpolated.
  c_exact_limit constant bigint := 10000;
  v_now   timestamptz := waitroom._now(p_now);
  r       waitroom.rooms;
  v_depth bigint;
  -- The mean rate as a fraction, v_admitted per v_seconds: eta_seconds is exact in integers, where
  -- a decimal rate (1/3 = 0.333…) put a wait of exactly 3 s at 4, and cost a numeric division per
  -- ticket. The range's arithmetic is floating point (its bounds are estimates).
  v_admitted bigint;
  v_seconds  bigint := 300;
  v_rate_low  double precision;
  v_rate_high double precision;
  v_gap   double precision;
  v_plan_cache_mode text;
  v_last_priority integer;
  v_last_seq bigint;
  -- Before the opening draw nobody has a rank: entrants already hold their
  -- drawn places (waitroom._drawn_seq), and a rank read off them would tell
  -- each where the draw will put them (join, look, leave, join again).
  v_pending boolean;
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
  -- Read from the admission tally: one row per admission instant.
  with admissions as (
    select a.admitted_at, a.admitted
      from waitroom.admission_tally a
     where a.room_id = p_room
       and a.admitted_at > v_now - interval '5 minutes' and a.admitted_at <= v_now
  ), minutes as (
    select m, coalesce(sum(a.admitted), 0) as n
      from generate_series(0, 4) m
      left join admissions a
        on a.admitted_at > v_now - make_interval(mins => m + 1) and a.admitted_at <= v_now - make_interval(mins => m)
     group by m
  ), summary as (
    select coalesce(sum(a.admitted), 0) as n, count(*) as batches,
           extract(epoch from max(a.admitted_at) - min(a.admitted_at)) as span
      from admissions a
  )
  select s.n,
         -- minutes wholly before the first admission are left out: the room was not admitting yet
         (select min(mi.n) / 60.0 from minutes mi
           where v_now - make_interval(mins => mi.m) >= (select min(a.admitted_at) from admissions a)),
         (select max(mi.n) / 60.0 from minutes mi),
         case when s.batches >= 2 then s.span / (s.batches - 1) else r.tick_ms / 1000.0 end
    into v_admitted, v_rate_low, v_rate_high, v_gap
    from summary s;
  v_rate_low := least(v_rate_low, v_admitted / 300.0);
  v_rate_high := greatest(v_rate_high, v_admitted / 300.0);
  if r.admit_per_minute is not null then
    if r.admit_per_minute * 300 < v_admitted * 60 then
      v_admitted := r.admit_per_minute;
      v_seconds := 60;
    end if;
    v_rate_low := least(v_rate_low, r.admit_per_minute / 60.0);
    v_rate_high := least(v_rate_high, r.admit_per_minute / 60.0);
  end if;
  -- Nobody is admitted in a paused or closed room, nor past a failing upstream.
  if r.mode not in ('open', 'passthrough') or (r.health_url is not null and r.healthy is not true) then
    v_admitted := 0;
  end if;

  v_pending := waitroom._draw_pending(r, v_now);
  -- The queued ticket furthest back among those asked about bounds the stretch of queue read
  -- (none before the draw: the stretch is then empty).
  select t.priority, t.seq into v_last_priority, v_last_seq
    from waitroom.tickets t
   where t.id = any (p_tickets) and t.room_id = p_room
     and waitroom._effective_status(t, r, v_now) = 'queued' and not v_pending
   order by t.priority, t.seq desc
   limit 1;

  -- The cached plan of the query below is shaped by the calls that made it, and most ask about one
  -- ticket (every stream's first read): many tickets get a plan of their own.
  if cardinality(p_tickets) > 16 then
    v_plan_cache_mode := current_setting('plan_cache_mode');
    perform set_config('plan_cache_mode', 'force_custom_plan', true);
  end if;
  -- Ranks come from the stretch itself: read in queue order off tickets_queue_order, numbered as it
  -- comes (no sort), and matched to the tickets asked about by id in a hash join (see the function's
  -- enable_nestloop). Sorting the stretch together with them cost a 500-ticket read of a
  -- 19,000-ticket room 30 ms, most of it sorting 10,500 rows; this reads it in 20 ms.
  return query
  with asked as materialized (
    select t.id, t.room_id, t.priority, t.seq, t.claim_deadline, t.expires_at, t.instance, t.end_reason,
           waitroom._effective_status(t, r, v_now) as now_status
      from waitroom.tickets t
     where t.id = any (p_tickets) and t.room_id = p_room
  ), higher as materialized (
    -- From the head: every band above the furthest ticket's, in queue order.
    select h.id, row_number() over (order by h.priority desc, h.seq) as place
      from (select q.id, q.priority, q.seq
              from waitroom.tickets q
             where q.room_id = p_room and q.status = 'queued' and q.priority > v_last_priority
             order by q.priority desc, q.seq
             limit c_exact_limit) h
  ), stretch as (
    -- Then its own band down to it.
    select h.id, h.place from higher h
    union all
    select o.id, (select count(*) from higher) + row_number() over (order by o.seq)
      from (select q.id, q.seq
              from waitroom.tickets q
             where q.room_id = p_room and q.status = 'queued' and q.priority = v_last_priority
               and q.seq <= v_last_seq
             order by q.seq
             limit c_exact_limit) o
  ), ranked as (
    select a.id, s.place as rank
      from asked a
      join stretch s on s.id = a.id
     where a.now_status = 'queued'
  ), bands as materialized (
    -- Each band's first and last seq once per query (index probes), not once per ticket; after an
    -- opening draw also where its drawn places (below zero) end and the sequence's numbers begin.
    select p.priority,
           (select min(b.seq) from waitroom.tickets b
             where b.room_id = p_room and b.status = 'queued' and b.priority = p.priority) as head,
           (select max(b.seq) from waitroom.tickets b
             where b.room_id = p_room and b.status = 'queued' and b.priority = p.priority) as tail,
           (select max(b.seq) from waitroom.tickets b
             where b.room_id = p_room and b.status = 'queued' and b.priority = p.priority and b.seq < 0) as drawn_tail,
           (select min(b.seq) from waitroom.tickets b
             where b.room_id = p_room and b.status = 'queued' and b.priority = p.priority and b.seq >= 0) as later_head
      from (select distinct a.priority from asked a where a.now_status = 'queued' and not v_pending) p
  ), stretches as (
    -- Drawn places are spread evenly over their 62 bits, the sequence's numbers one per join: a band
    -- holding both is two stretches, the later joiners as many as their numbers span (fewer, less those
    -- gone), the entrants the rest of depth.
    select bd.*, least(bd.tail - bd.later_head + 1, v_depth) as later
      from bands bd
  ), placed as (
    select a.*,
           case
             when a.now_status <> 'queued' or v_pending then null
             when k.rank <= c_exact_limit then k.rank
             -- Deep in a long queue: interpolate by seq within the ticket's stretch of its band.
             else greatest(c_exact_limit + 1, round(case
               when bd.drawn_tail is null or bd.later_head is null
                 then v_depth * (a.seq - bd.head)::numeric / greatest(bd.tail - bd.head, 1)
               when a.seq < 0
                 then (v_depth - bd.later) * (a.seq - bd.head)::numeric / greatest(bd.drawn_tail - bd.head, 1)
               else v_depth - bd.later + bd.later * (a.seq - bd.later_head)::numeric / greatest(bd.tail - bd.later_head, 1)
             end)::bigint)
           end as pos,
           a.now_status = 'queued' and not v_pending and not coalesce(k.rank <= c_exact_limit, false) as approx
      from asked a
      left join ranked k on k.id = a.id
      left join stretches bd on bd.priority = a.priority
  )
  select p.id, p.room_id, p.now_status, p.pos, v_depth, p.approx,
         case when p.pos is not null and v_admitted > 0 then ((p.pos * v_seconds + v_admitted - 1) / v_admitted)::integer end,
         -- The range: the next pos admissions at the fastest and the slowest
         -- minute's rate, pos -/+ sqrt(pos) of them (the count's own noise),
         -- -/+ one gap between batches (where in the tick cycle we are).
         case when p.pos is not null and v_admitted > 0
              then greatest(floor((p.pos - sqrt(p.pos)) / v_rate_high - v_gap), 0)::integer end,
         case when p.pos is not null and v_admitted > 0 and v_rate_low > 0
              then ceil((p.pos + sqrt(p.pos)) / v_rate_low + v_gap)::integer end,
         case p.now_status
           when 'admitted' then p.claim_deadline
           when 'active' then p.expires_at
           when 'draining' then p.expires_at + make_interval(secs => r.grace_seconds)
         end,
         p.instance,
         p.end_reason
    from placed p;
  if v_plan_cache_mode is not null then
    perform set_config('plan_cache_mode', v_plan_cache_mode, true);
  end if;
end
$$;
comment on function waitroom.positions(text, uuid[], timestamptz) is
  'The state (waitroom.ticket_state) of many tickets of one room, in one query: status, position (1 = next), depth, ETA (and its range), deadline, instance and end reason, what a process needs to update all its subscribers. expires_at is the claim deadline of an offer, the end of an active seat, the end of grace while draining. Positions are exact up to 10000, interpolated beyond (approximate = true); null before the room''s opening draw (its entrants get their places from it). end_reason says why an ended ticket ended (session_over, claim_timeout, idle, left, sold_out).';

create function waitroom.position(p_ticket uuid, p_now timestamptz default null)
returns setof waitroom.ticket_state
language sql stable
as $$
  select p.*
    from waitroom.tickets t
   cross join lateral waitroom.positions(t.room_id, array[t.id], p_now) p
   where t.id = p_ticket
$$;
comment on function waitroom.position(uuid, timestamptz) is
  'The state (waitroom.ticket_state) of one ticket: status, position (1 = next), depth, ETA, deadline, instance and end reason, as positions reads it. Exact up to position 10000, interpolated beyond (approximate = true). eta_seconds is null when there is no recent admission to go by; eta_low_seconds and eta_high_seconds bound it (high is null when a recent minute admitted nobody). No row for an unknown ticket.';

-- The first read of many clients at once (an opening rush of stream opens):
-- every presented token is checked and every ticket it proves is read with
-- ONE positions query per room, however many arrive together.
create function waitroom.ticket_states(p_tickets uuid[], p_tokens text[], p_now timestamptz default null)
returns table (ordinal integer, code text, state waitroom.ticket_state)
language plpgsql stable
as $$
#variable_conflict use_column
begin
  if cardinality(p_tickets) is distinct from cardinality(p_tokens) then
    perform waitroom._fail('WR400', 'p_tickets and p_tokens must have the same length');
  end if;
  return query
  with presented as (
    select a.ordinal::integer as ordinal, a.ticket_id, t.room_id,
           (waitroom._verdict(t, r, waitroom._hash(a.token), waitroom._now(p_now))).code
      from unnest(p_tickets, p_tokens) with ordinality as a(ticket_id, token, ordinal)
      left join waitroom.tickets t on t.id = a.ticket_id
      left join waitroom.rooms r on r.id = t.room_id
  ), proven as (
    -- Only the ticket's current token shows its state: a wrong or superseded
    -- one learns nothing more than its verdict.
    select * from presented p where p.code not in ('unknown', 'superseded')
  ), states as (
    select s as state, s.ticket_id
      from (select pr.room_id, array_agg(distinct pr.ticket_id) as tickets from proven pr group by pr.room_id) g
     cross join lateral waitroom.positions(g.room_id, g.tickets, p_now) s
  )
  select p.ordinal, p.code, s.state
    from presented p
    left join states s on s.ticket_id = p.ticket_id and p.code not in ('unknown', 'superseded')
   order by p.ordinal;
end
$$;
comment on function waitroom.ticket_states(uuid[], text[], timestamptz) is
  'Verdicts on many (ticket, token) pairs, one row per pair in order (ordinal = array index), with the ticket''s state (a waitroom.ticket_state, as positions reads it) when the token is its current one; state is null for unknown and superseded tokens (select ordinal, code, (state).* for flat columns). One positions read per room, however many pairs: what a rush of stream opens costs. WR400 when the arrays differ in length.';
