-- The scheduler's verbs: one admission tick, and re-arming broken chains.

-- graphile-worker runs a job due now at once (NOTIFY) but finds one due later
-- by polling (every 250 ms), so a tick scheduled at opens_at ran 0–250 ms
-- late and the opening draw with it (100–270 ms in the rush benchmark). The
-- tick before an opening is due this much early; the scheduler's task, told
-- by opening_wait how long is left, waits it out and ticks at opens_at.
create function waitroom._opening_lead() returns interval
language sql immutable parallel safe
as $$ select interval '500 milliseconds' $$;
comment on function waitroom._opening_lead() is
  'How early the tick before a room''s opening is due (more than the scheduler''s poll interval): the task waits the rest (waitroom.opening_wait).';

create function waitroom.opening_wait(p_room text, p_now timestamptz default null) returns interval
language sql stable
as $$
  select r.opens_at - waitroom._now(p_now)
    from waitroom.rooms r
   where r.id = p_room and r.mode in ('open', 'passthrough')
     and r.opens_at > waitroom._now(p_now) and r.opens_at <= waitroom._now(p_now) + waitroom._opening_lead()
$$;
comment on function waitroom.opening_wait(text, timestamptz) is
  'How long until the room''s opens_at, when that is within the opening lead (500 ms) and the room is open or passthrough: the scheduler waits that long before it ticks. Null otherwise (tick now).';

create function waitroom.tick(p_room text, p_now timestamptz default null) returns integer
language plpgsql
as $$
declare
  r       waitroom.rooms;
  v_count integer;
  v_at    timestamptz;
begin
  select * into r from waitroom.rooms where id = p_room;
  if not found then
    return 0;  -- deleted: the chain ends here
  end if;
  select count(*) into v_count from waitroom.admit(p_room, null, p_now);
  -- Paused and closed rooms stop ticking; configure_room wakes them.
  -- preserve_run_at: a wake that arrived while we ran keeps its earlier time.
  -- A room waiting for its upstream to recover ticks (and so probes) at
  -- least every second, however long its tick_ms.
  -- Before the opening: the tick at opens_at, due the opening lead early (at
  -- least 50 ms from now, so that a tick run early without waiting cannot
  -- spin); tick_ms later, it could run up to tick_ms late.
  if r.mode in ('open', 'passthrough') then
    v_at := coalesce(p_now, clock_timestamp());
    perform waitroom._schedule_admit(
      p_room,
      case
        when r.opens_at > v_at then greatest(v_at + interval '50 milliseconds', r.opens_at - waitroom._opening_lead())
        else v_at + make_interval(secs => case
               when r.health_url is not null and r.healthy is not true then least(r.tick_ms, 1000)
               else r.tick_ms end / 1000.0)
      end,
      'preserve_run_at');
  end if;
  return v_count;
end
$$;
comment on function waitroom.tick(text, timestamptz) is
  'One admission tick of the scheduler: waitroom.admit, then schedule the next tick tick_ms later (at most 1 s later while the upstream is not healthy), or before opens_at the tick of the opening, due the opening lead early (see opening_wait), while the room is open or passthrough. Returns how many were admitted.';

create function waitroom.rearm() returns integer
language plpgsql
as $$
declare
  v_room  text;
  v_count integer := 0;
begin
  for v_room in select id from waitroom.rooms where mode in ('open', 'passthrough') loop
    perform waitroom._schedule_admit(v_room, now(), 'preserve_run_at');
    v_count := v_count + 1;
  end loop;
  return v_count;
end
$$;
comment on function waitroom.rearm() is
  'Safety net run every minute: give every open room an admission tick if its chain broke (a pending tick is left as it is).';

-- The upstream health gate. The scheduler's admit task asks health_due, GETs
-- the URL when it is due and records the answer with set_health before it
-- calls tick; the throttle lives here so that any number of worker processes
-- together probe a room at most once a second.
create function waitroom.health_due(p_room text, p_now timestamptz default null) returns text
language sql stable
as $$
  select r.health_url
    from waitroom.rooms r
   where r.id = p_room and r.health_url is not null and r.mode in ('open', 'passthrough')
     and (r.health_checked_at is null
          or r.health_checked_at <= waitroom._now(p_now) - interval '1 second'
          or r.health_checked_at > waitroom._now(p_now))  -- the clock went back
$$;
comment on function waitroom.health_due(text, timestamptz) is
  'The room''s health_url when a probe is due (open or passthrough room, never probed or last probed 1 s ago or more), else null.';

create function waitroom.set_health(
  p_room    text,
  p_healthy boolean,
  p_detail  text default null,
  p_now     timestamptz default null
) returns boolean
language plpgsql
as $$
declare
  v_now timestamptz := waitroom._now(p_now);
  r waitroom.rooms;
  v_detail text := left(p_detail, 200);
begin
  if p_healthy is null then
    perform waitroom._fail('WR400', 'p_healthy must be true or false');
  end if;
  -- Serialised with admit: once this commits, no admission trusts the old answer.
  perform waitroom._lock_room(p_room);
  r := waitroom._room(p_room);
  if r.health_url is null then
    return false;  -- the gate was removed while the probe ran
  end if;
  update waitroom.rooms
     set healthy = p_healthy, health_detail = v_detail, health_checked_at = v_now
   where id = p_room;
  if r.healthy is not distinct from p_healthy then
    return false;
  end if;
  perform waitroom._publish_ids(waitroom._log(array[row(p_room, null, 'room_health',
    jsonb_build_object('healthy', p_healthy, 'detail', v_detail))::waitroom.ledger_entry], v_now));
  if p_healthy then
    perform waitroom._wake(p_room);
  end if;
  return true;
end
$$;
comment on function waitroom.set_health(text, boolean, text, timestamptz) is
  'Record the answer of a probe of the room''s health_url: healthy or not, and what was seen (at most 200 characters). Writes and announces a room_health event only when healthiness changed, and wakes the room when it turned healthy. Returns whether it changed; false (and nothing recorded) for a room without health_url. WR404 unknown room.';
