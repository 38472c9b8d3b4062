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
  v_count bigint;
begin
  with entrants as (
    -- Locked in id order, as touch does: no deadlock with overlapping batches.
    select t.id, t.seq
      from waitroom.tickets t
     where t.room_id = r.id and t.status = 'queued' and t.queued_at < r.opens_at
     order by t.id
       for update
  ), numbers as (
    select e.seq, row_number() over (order by e.seq) as place from entrants e
  ), drawn as (
    select e.id, row_number() over (order by waitroom._draw_key(r.shuffle_seed, e.id), e.id) as place
      from entrants e
  ), done as (
    update waitroom.tickets t
       set seq = n.seq, draw_rank = d.place
      from drawn d
      join numbers n on n.place = d.place
     where t.id = d.id
    returning 1
  )
  select count(*) into v_count from done;

  update waitroom.rooms set shuffled_at = p_now where id = r.id;
  -- The seed as a string: JSON readers that parse numbers as doubles keep it exact.
  return (waitroom._event(r.id, null, 'room_shuffled',
    jsonb_build_object('seed', r.shuffle_seed::text, 'count', v_count, 'opens_at', r.opens_at), p_now) ->> 'id')::bigint;
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
