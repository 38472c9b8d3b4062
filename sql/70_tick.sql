-- The scheduler's verbs: one admission tick, and re-arming broken chains.

create function waitroom.tick(p_room text, p_now timestamptz default null) returns integer
language plpgsql
as $$
declare
  r       waitroom.rooms;
  v_count integer;
begin
  select * into r from waitroom.rooms where id = p_room;
  if not found then
    return 0;  -- deleted: the chain ends here
  end if;
  select count(*) into v_count from waitroom.admit(p_room, null, p_now);
  -- Paused and closed rooms stop ticking; configure_room wakes them.
  -- preserve_run_at: a wake that arrived while we ran keeps its earlier time.
  if r.mode in ('open', 'passthrough') then
    perform waitroom._schedule_admit(
      p_room,
      greatest(coalesce(p_now, clock_timestamp()) + make_interval(secs => r.tick_ms / 1000.0), r.opens_at),
      'preserve_run_at');
  end if;
  return v_count;
end
$$;
comment on function waitroom.tick(text, timestamptz) is
  'One admission tick of the scheduler: waitroom.admit, then schedule the next tick tick_ms later (or at opens_at) while the room is open or passthrough. Returns how many were admitted.';

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
