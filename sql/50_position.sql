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
begin
  select * into r from waitroom.rooms where id = p_room;
  if not found then
    return;
  end if;
  v_depth := waitroom._depth(p_room);
  -- ETA from the admission rate observed over the last five minutes.
  select count(*) / 300.0 into v_rate
    from waitroom.events e
   where e.room_id = p_room and e.type = 'admitted'
     and e.created_at > v_now - interval '5 minutes' and e.created_at <= v_now;
  if r.admit_per_minute is not null then
    v_rate := least(v_rate, r.admit_per_minute / 60.0);
  end if;
  if r.mode not in ('open', 'passthrough') then
    v_rate := 0;
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
  ), placed as (
    select a.*,
           case
             when a.now_status <> 'queued' then null
             when k.rank <= c_exact_limit then k.rank
             -- Deep in a long queue: interpolate by seq within the ticket's band.
             else greatest(c_exact_limit + 1, (
               select round(v_depth * (a.seq - min(b.seq))::numeric / greatest(max(b.seq) - min(b.seq), 1))::bigint
                 from waitroom.tickets b
                where b.room_id = p_room and b.status = 'queued' and b.priority = a.priority))
           end as pos,
           a.now_status = 'queued' and coalesce(k.rank > c_exact_limit, true) as approx
      from asked a
      left join ranked k on k.id = a.id
  )
  select p.id, p.room_id, p.now_status, p.pos, v_depth, coalesce(p.approx, false),
         case when p.pos is not null and v_rate > 0 then ceil(p.pos / v_rate)::integer end,
         case p.now_status
           when 'admitted' then p.claim_deadline
           when 'active' then p.expires_at
           when 'draining' then p.expires_at + make_interval(secs => r.grace_seconds)
         end,
         p.instance
    from placed p;
end
$$;
comment on function waitroom.positions(text, uuid[], timestamptz) is
  'Status, position (1 = next), depth, ETA, deadline and instance of many tickets of one room, in one query: what a process needs to update all its subscribers. expires_at is the claim deadline of an offer, the end of an active seat, the end of grace while draining. Positions are exact up to 10000, interpolated beyond (approximate = true).';

create function waitroom.position(p_ticket uuid, p_now timestamptz default null)
returns table (
  ticket_id   uuid,
  room_id     text,
  status      text,
  "position"  bigint,
  depth       bigint,
  approximate boolean,
  eta_seconds integer
)
language sql stable
as $$
  select p.ticket_id, p.room_id, p.status, p."position", p.depth, p.approximate, p.eta_seconds
    from waitroom.tickets t
   cross join lateral waitroom.positions(t.room_id, array[t.id], p_now) p
   where t.id = p_ticket
$$;
comment on function waitroom.position(uuid, timestamptz) is
  'Status, position (1 = next), depth and ETA of a ticket. Exact up to position 10000, interpolated beyond (approximate = true). eta_seconds is null when there is no recent admission to go by. No row for an unknown ticket.';
