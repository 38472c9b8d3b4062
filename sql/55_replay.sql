-- Replay: the ledger rows an event stream shows, read back after a gap.
-- Streams show every state change except joins (which are never announced)
-- and room creation (nobody can be subscribed to a room that did not exist):
-- waitroom.event_types says which.

-- Every kind of ledger row the verbs write, and what event streams do with it:
-- the one list (the service reads the stream names from here at start).
create function waitroom.event_types()
returns table (type text, announced boolean, stream_event text)
language sql immutable parallel safe
as $$
  values ('joined', false, null::text), ('rejoined', false, null), ('room_created', false, null),
         ('admitted', true, 'admitted'), ('active', true, 'active'), ('draining', true, 'draining'),
         ('ended', true, 'ended'), ('expired', true, 'ended'), ('left', true, 'ended'),
         ('room_configured', true, 'room'), ('room_deleted', true, 'room'), ('room_health', true, 'room'),
         ('room_sold_out', true, 'room'), ('room_restocked', true, 'room'),
         -- Announced so that streams re-read their positions, but not shown as events of their own.
         ('room_shuffled', true, null), ('reserved', true, null), ('returned', true, null),
         ('consumed', true, null), ('stock_added', true, null)
$$;
comment on function waitroom.event_types() is
  'Every type of ledger row: whether it is announced and replayed to event streams (joins are not: they would be one notice per join), and the SSE event a stream shows it as (admitted, active, draining, ended, room), null when streams only re-read their state on it.';

-- Folded to a constant where it is planned (immutable, no arguments), so _announced
-- inlines to `type <> all ('{…}')`: the sub-select it replaced cost two function calls
-- per ledger row read back (14 % of PostgreSQL's function time over HTTP lifecycles).
create function waitroom._unannounced_types() returns text[]
language sql immutable parallel safe
as $$ select array_agg(e.type order by e.type) from waitroom.event_types() e where not e.announced $$;
comment on function waitroom._unannounced_types() is
  'The ledger types that are never announced nor replayed (waitroom.event_types).';

create function waitroom._announced(p_type text) returns boolean
language sql immutable parallel safe
as $$ select p_type <> all (waitroom._unannounced_types()) $$;
comment on function waitroom._announced(text) is
  'Whether events of this type are published to streams and replayed (waitroom.event_types; a type it does not list is).';

-- Last-Event-ID resume: what a ticket's stream missed after event p_after.
create function waitroom.ticket_events(p_ticket uuid, p_after bigint, p_limit integer default 1000)
returns setof waitroom.events
language sql stable
as $$
  select e.*
    from waitroom.tickets t
    join waitroom.events e
      on e.id > p_after
     and e.created_at >= t.queued_at
     and (e.ticket_id = t.id or (e.ticket_id is null and e.room_id = t.room_id))
   where t.id = p_ticket and waitroom._announced(e.type)
   order by e.id
   limit p_limit
$$;
comment on function waitroom.ticket_events(uuid, bigint, integer) is
  'Events a ticket''s stream shows (its own and its room''s) with id > p_after, oldest first: what a client resuming with Last-Event-ID missed.';

-- Where a stream resumes when it has shown no ledger event yet (a recycled stream's goodbye).
create function waitroom.latest_event_id()
returns bigint
language sql stable
as $$ select coalesce(max(id), 0) from waitroom.events $$;
comment on function waitroom.latest_event_id() is
  'The newest ledger id (0 for an empty ledger): what a stream that has shown no event yet tells its client to resume after (Last-Event-ID), so the events it misses while reconnecting are replayed.';

-- A process whose LISTEN connection dropped reads what it may have missed.
create function waitroom.room_events(p_rooms text[], p_since timestamptz, p_limit integer default 10000)
returns setof waitroom.events
language sql stable
as $$
  select e.*
    from waitroom.events e
   where e.created_at >= p_since and e.room_id = any (p_rooms) and waitroom._announced(e.type)
   order by e.id
   limit p_limit
$$;
comment on function waitroom.room_events(text[], timestamptz, integer) is
  'Announced events of the given rooms created at or after p_since, oldest first: the replay after a lost LISTEN connection.';

-- A compact notice (waitroom._publish_ids) names ledger rows by id ranges;
-- each listener reads them here with one query. Notices can be forged by any
-- role that can connect, so the ranges are checked and bounded before
-- anything is read, and only announced rows come back.
create function waitroom.notice_events(p_firsts bigint[], p_lasts bigint[])
returns setof waitroom.events
language plpgsql stable
as $$
declare
  v_ids bigint := 0;
begin
  if p_firsts is null or p_lasts is null or cardinality(p_firsts) <> cardinality(p_lasts) then
    perform waitroom._fail('WR400', 'p_firsts and p_lasts must be arrays of the same length');
  end if;
  for i in 1 .. cardinality(p_firsts) loop
    if p_firsts[i] is null or p_lasts[i] is null or p_firsts[i] < 1 or p_firsts[i] > p_lasts[i]
       or (i > 1 and p_firsts[i] <= p_lasts[i - 1]) then
      perform waitroom._fail('WR400', 'id ranges must be positive, ascending, disjoint, each first <= last');
    end if;
    v_ids := v_ids + (p_lasts[i] - p_firsts[i] + 1);
    if v_ids > waitroom._notice_max_rows() then
      perform waitroom._fail('WR400', format('a notice names at most %s ids', waitroom._notice_max_rows()));
    end if;
  end loop;
  return query
  select e.*
    from unnest(p_firsts, p_lasts) as r(first_id, last_id)
    join waitroom.events e on e.id between r.first_id and r.last_id
   where waitroom._announced(e.type)
   order by e.id;
end
$$;
comment on function waitroom.notice_events(bigint[], bigint[]) is
  'Announced ledger rows with ids in the ranges p_firsts[i]..p_lasts[i] (positive, ascending, disjoint, at most waitroom._notice_max_rows() ids in all, else WR400), oldest first: what a compact notice on waitroom_events names.';
