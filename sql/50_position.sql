-- position: where a ticket stands, read in one snapshot.

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
language plpgsql stable
as $$
#variable_conflict use_column
declare
  -- Counting stops here; past it the position is interpolated.
  c_exact_limit constant bigint := 10000;
  v_now  timestamptz := waitroom._now(p_now);
  t      waitroom.tickets;
  r      waitroom.rooms;
  v_head bigint;
  v_tail bigint;
  v_rate numeric;
begin
  select * into t from waitroom.tickets where id = p_ticket;
  if not found then
    return;
  end if;
  r := waitroom._room(t.room_id);
  ticket_id := t.id;
  room_id := t.room_id;
  status := waitroom._effective_status(t, r, v_now);
  depth := waitroom._depth(t.room_id);
  approximate := false;
  if status = 'queued' then
    -- Ahead: higher priority, or same priority and earlier seq.
    select count(*) + 1 into "position" from (
      (select 1 from waitroom.tickets q
        where q.room_id = t.room_id and q.status = 'queued' and q.priority > t.priority
        limit c_exact_limit)
      union all
      (select 1 from waitroom.tickets q
        where q.room_id = t.room_id and q.status = 'queued' and q.priority = t.priority and q.seq < t.seq
        limit c_exact_limit)
    ) ahead;
    if "position" > c_exact_limit then
      -- Deep in a long queue: interpolate by seq within the ticket's band.
      select min(q.seq), max(q.seq) into v_head, v_tail
        from waitroom.tickets q
       where q.room_id = t.room_id and q.status = 'queued' and q.priority = t.priority;
      "position" := greatest(c_exact_limit,
        round(depth * (t.seq - v_head)::numeric / greatest(v_tail - v_head, 1))::bigint);
      approximate := true;
    end if;
    -- ETA from the admission rate observed over the last five minutes.
    select count(*) / 300.0 into v_rate
      from waitroom.events e
     where e.room_id = t.room_id and e.type = 'admitted'
       and e.created_at > v_now - interval '5 minutes' and e.created_at <= v_now;
    if r.admit_per_minute is not null then
      v_rate := least(v_rate, r.admit_per_minute / 60.0);
    end if;
    if v_rate > 0 and r.mode in ('open', 'passthrough') then
      eta_seconds := ceil("position" / v_rate)::integer;
    end if;
  end if;
  return next;
end
$$;
comment on function waitroom.position(uuid, timestamptz) is
  'Status, position (1 = next), depth and ETA of a ticket. Exact up to position 10000, interpolated beyond (approximate = true). eta_seconds is null when there is no recent admission to go by. No row for an unknown ticket.';
