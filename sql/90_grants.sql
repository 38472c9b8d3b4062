-- Privileges. Nobody but the owner touches a table: the verbs run as their
-- owner (security definer, search_path pinned) and are the only door.
--   waitroom_app       may call every verb (not the _private helpers)
--   waitroom_worker    what graphile-worker needs at run time in its own schema
--   waitroom_observer  may read the views (dashboards, people in psql)
--   waitroom_clock     may pass p_now (see waitroom._pinned_clock)
-- The service's login role is a member of waitroom_app and waitroom_worker
-- and of nothing else (docs/operations.md). The roles are made by
-- 05_roles.sql.

revoke all on all functions in schema waitroom from public;
revoke all on all tables in schema waitroom from public, waitroom_app, waitroom_worker, waitroom_observer, waitroom_clock;
revoke all on all sequences in schema waitroom from public, waitroom_app, waitroom_worker, waitroom_observer, waitroom_clock;
grant usage on schema waitroom to waitroom_app, waitroom_observer;
grant select on waitroom.room_stats, waitroom.queue, waitroom.recent_events, waitroom.stock_ledger to waitroom_observer;

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

-- graphile-worker's runner reads and writes its own tables and calls its own
-- functions (it fetches, completes and reschedules jobs, registers task and
-- cron names). Its migrations are the owner's job (waitroom migrate); the
-- default privileges cover the tables a later graphile-worker adds.
grant usage on schema graphile_worker to waitroom_worker;
grant select, insert, update, delete on all tables in schema graphile_worker to waitroom_worker;
grant usage, select, update on all sequences in schema graphile_worker to waitroom_worker;
grant execute on all functions in schema graphile_worker to waitroom_worker;
alter default privileges in schema graphile_worker grant select, insert, update, delete on tables to waitroom_worker;
alter default privileges in schema graphile_worker grant usage, select, update on sequences to waitroom_worker;
alter default privileges in schema graphile_worker grant execute on functions to waitroom_worker;

-- graphile-worker enables row level security on its private tables with no
-- policy, so that only their owner sees a row. A policy for waitroom_worker
-- alone lets the runner see them without making it their owner (an owner may
-- alter or drop them). Made once per table: CREATE POLICY locks the table, and
-- a re-apply must not wait behind the jobs in flight. A graphile-worker upgrade
-- changes the migrate checksum, so this runs again after its migrations and
-- covers a new table.
do $$
declare
  v_table regclass;
begin
  for v_table in
    select c.oid::regclass
      from pg_class c
     where c.relnamespace = 'graphile_worker'::regnamespace and c.relkind in ('r', 'p') and c.relrowsecurity
       and not exists (select from pg_policy p where p.polrelid = c.oid and p.polname = 'waitroom_worker_runs_jobs')
  loop
    execute format('create policy waitroom_worker_runs_jobs on %s for all to waitroom_worker using (true) with check (true)',
                   v_table);
    execute format('comment on policy waitroom_worker_runs_jobs on %s is %L', v_table,
                   'The waitroom scheduler''s role (waitroom_worker) runs graphile-worker: it reads and writes every row.');
  end loop;
end
$$;
