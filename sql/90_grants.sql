-- Privileges: the application role may call the verbs and read the views,
-- never write tables directly. Verbs run as their owner (security definer).

do $$
begin
  -- Roles are cluster-wide: another database may be creating it right now.
  create role waitroom_app nologin;
exception when duplicate_object or unique_violation then
  null;
end
$$;

revoke all on all functions in schema waitroom from public;
grant usage on schema waitroom to waitroom_app;
grant select on waitroom.room_stats, waitroom.queue, waitroom.recent_events to waitroom_app;

do $$
declare
  v_fn regprocedure;
begin
  for v_fn in
    select p.oid::regprocedure
      from pg_proc p
     where p.pronamespace = 'waitroom'::regnamespace and p.proname !~ '^_'
  loop
    execute format('alter function %s security definer set search_path = pg_catalog, pg_temp', v_fn);
    execute format('grant execute on function %s to waitroom_app', v_fn);
  end loop;
end
$$;
