-- What a migrate last applied, readable without privileges on the tables
-- that record it: a service started with only its least-privileged role can
-- tell that the schema is current (and so that it need not migrate).

create function waitroom.schema_state()
returns table (migrations text[], checksum text, fingerprint text)
language sql stable
as $$
  select (select coalesce(array_agg(m.name::text order by m.id), '{}') from public.waitroom_migrations m),
         s.checksum, s.fingerprint
    from public.waitroom_sql_state s
$$;
comment on function waitroom.schema_state() is
  'The migrations applied (in order) and the checksum and catalog fingerprint of the sql/ files last applied, as the waitroom migrate runner recorded them: what a start compares with its own files before deciding whether to migrate.';
