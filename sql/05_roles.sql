-- The group roles of schema waitroom (what each may do: 90_grants.sql).
-- Also run on its own, before the first migrate, wherever the service's login
-- role is made with them (the embedded database, docker-compose's first start).

do $$
declare
  v_role record;
begin
  for v_role in
    select * from (values
      ('waitroom_app', 'May call the waitroom verbs (every function of schema waitroom not starting with _); no table privileges.'),
      ('waitroom_worker', 'What graphile-worker needs at run time: its own schema graphile_worker.'),
      ('waitroom_observer', 'May read the views waitroom.room_stats, waitroom.queue and waitroom.recent_events.'),
      ('waitroom_clock', 'Members may pass p_now to the waitroom verbs (pin the clock); others get WR403.')
    ) as r(name, purpose)
  loop
    begin
      -- Roles are cluster-wide: another database may be creating it right now,
      -- or a DBA made it beforehand (then its comment is theirs).
      execute format('create role %I nologin', v_role.name);
      execute format('comment on role %I is %L', v_role.name, v_role.purpose);
    exception when duplicate_object or unique_violation then
      null;
    end;
  end loop;
end
$$;
