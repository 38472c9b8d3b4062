-- The opening draw: when a room with opens_at opens, the tickets that joined
-- before opens_at are put in a random order fixed by the room's shuffle_seed,
-- once. Whoever joined first before the opening has no advantage over
-- whoever joined last; tickets joining after opens_at queue behind them in
-- join order. Anyone can recompute the draw from the seed (shuffle_audit).

-- The order of the draw: a ticket's key is the md5 digest of the seed and its
-- id, compared as bytes (no collation can change the order).
create function waitroom._draw_key(p_seed bigint, p_ticket uuid) returns bytea
language sql immutable strict parallel safe
as $$ select decode(md5(p_seed::text || ':' || p_ticket::text), 'hex') $$;
comment on function waitroom._draw_key(bigint, uuid) is
  'Sort key of a ticket in an opening draw: the md5 digest of seed || '':'' || ticket id (lowercase, hyphenated), lowest first.';

-- Called by admit, under the room's lock, at the first admission at or after
-- opens_at. The entrants keep the queue numbers they hold between them
-- (seq values are permuted, none is drawn anew), so depth and the tally are
-- untouched and later joiners, whose numbers are higher, stay behind.
-- Returns the id of the room_shuffled ledger row.
create function waitroom._draw(r waitroom.rooms, p_now timestamptz) returns bigint
language plpgsql
as $$
declare
  -- Entrant ids in the order of the draw, and their queue numbers in ascending
  -- order: the n-th drawn gets the n-th number.
  v_drawn   uuid[];
  v_numbers bigint[];
  v_count   bigint;
begin
  -- Paired by position in two arrays, not by joining two numbered lists: the
  -- planner cannot misjudge the size of a join that is not there. Before the
  -- tickets were analyzed (or when statistics predate the joins) it took the
  -- entrants for one row and paired them in a nested loop, O(entrants²):
  -- 42 s for 10,000 (now 0.28 s).
  with entrants as (
    -- Locked in id order, as touch does: no deadlock with overlapping batches.
    select t.id, t.seq
      from waitroom.tickets t
     where t.room_id = r.id and t.status = 'queued' and t.queued_at < r.opens_at
     order by t.id
       for update
  )
  select array_agg(e.id order by waitroom._draw_key(r.shuffle_seed, e.id), e.id), array_agg(e.seq order by e.seq)
    into v_drawn, v_numbers
    from entrants e;

  update waitroom.tickets t
     set seq = d.seq, draw_rank = d.place
    from unnest(v_drawn, v_numbers) with ordinality as d(id, seq, place)
   where t.id = d.id;
  get diagnostics v_count = row_count;

  update waitroom.rooms set shuffled_at = p_now where id = r.id;
  -- The seed as a string: JSON readers that parse numbers as doubles keep it exact.
  return (waitroom._log(array[row(r.id, null, 'room_shuffled',
    jsonb_build_object('seed', r.shuffle_seed::text, 'count', v_count, 'opens_at', r.opens_at))::waitroom.ledger_entry],
    p_now))[1];
end
$$;
comment on function waitroom._draw(waitroom.rooms, timestamptz) is
  'Make the room''s opening draw: permute the queue numbers of the tickets queued before opens_at in the order of waitroom._draw_key, mark the room shuffled, write room_shuffled and return its id. Called by admit.';

create function waitroom.shuffle_audit(p_room text)
returns table (
  ticket_id        uuid,
  status           text,
  priority         integer,
  seq              bigint,
  stored_position  bigint,
  drawn_position   bigint,
  agrees           boolean
)
language sql stable
as $$
  select a.id, a.status, a.priority, a.seq, a.stored_position, a.drawn_position,
         a.stored_position = a.drawn_position and a.draw_rank = a.drawn_position
    from (
      select t.id, t.status, t.priority, t.seq, t.draw_rank,
             row_number() over (order by t.seq, t.id) as stored_position,
             row_number() over (order by waitroom._draw_key(r.shuffle_seed, t.id), t.id) as drawn_position
        from waitroom.rooms r
        join waitroom.tickets t on t.room_id = r.id and t.draw_rank is not null
       where r.id = p_room
    ) a
   order by a.stored_position
$$;
comment on function waitroom.shuffle_audit(text) is
  'Check a room''s opening draw: every ticket in it (until retention purges it) with its place in the queue order it was given (stored_position, by seq) and its place recomputed from the room''s shuffle_seed (drawn_position); agrees when they match. Admission went by (priority desc, seq), so within a priority band it followed the draw.';
