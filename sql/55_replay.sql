-- Replay: the ledger rows an event stream shows, read back after a gap.
-- Streams show every state change except joins (which are never announced)
-- and room creation (nobody can be subscribed to a room that did not exist).

create function waitroom._announced(p_type text) returns boolean
language sql immutable parallel safe
as $$ select p_type not in ('joined', 'rejoined', 'room_created') $$;
comment on function waitroom._announced(text) is
  'Whether events of this type are published to streams (see waitroom._publish).';

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
