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

-- A ticket that joins before opens_at takes its drawn place at once: its
-- seq is its key's first 62 bits, moved below every number a room's
-- sequence hands out (-2^62 + key), so the queue order index already holds
-- the draw and the opening rewrites nobody. Rewriting every entrant at the
-- opening cost 0.3-0.5 s for 19,000 (non-HOT updates of every index, under
-- the room's lock, while the opening's streams waited for it) and 9.7 s for
-- 100,000. Before the draw, positions show no rank (waitroom.positions): a
-- rank read off these numbers would tell each entrant its place in the draw.
-- Strict (vacuous without arguments) so that _drawn_seq, a strict SQL
-- function, can be inlined: PostgreSQL inlines one only if its body calls
-- nothing but strict functions. Called through the SQL-function executor,
-- _drawn_seq made the draw's check of 19,000 entrants 90-120 ms instead of 30.
create function waitroom._drawn_band() returns bigint
language sql immutable strict parallel safe
as $$ select -4611686018427387904::bigint $$;
comment on function waitroom._drawn_band() is
  'The lowest seq, -2^62: drawn places run from it up to -1, below every number of a room''s sequence.';

create function waitroom._drawn_seq(p_seed bigint, p_ticket uuid) returns bigint
language sql immutable strict parallel safe
as $$
  select waitroom._drawn_band()
         + (('x' || substr(md5(p_seed::text || ':' || p_ticket::text), 1, 16))::bit(64) >> 2)::bigint
$$;
comment on function waitroom._drawn_seq(bigint, uuid) is
  'The seq of a ticket that joins before its room''s opening: the first 62 bits of its draw key (md5 of seed || '':'' || id, see _draw_key) minus 2^62, below every number of the room''s sequence and in the order of the draw.';

-- join and join_many number a new ticket with this: a join before the
-- opening takes its drawn place, any other the next number of the room's
-- sequence. Inlined (one SQL expression): the CASE draws a number only
-- when it is needed.
create function waitroom._join_seq(p_drawing boolean, p_seed bigint, p_queue_seq regclass, p_ticket uuid)
returns bigint
language sql volatile
as $$
  select case when p_drawing then waitroom._drawn_seq(p_seed, p_ticket) else nextval(p_queue_seq) end
$$;
comment on function waitroom._join_seq(boolean, bigint, regclass, uuid) is
  'The seq of a new ticket: its drawn place while the room''s opening draw is to come (p_drawing, from _join_room), else the next number of the room''s sequence.';

-- The one rule for "before the draw": joins take their drawn places, and no
-- rank is shown (positions, join, join_many, the queue view).
create function waitroom._draw_pending(r waitroom.rooms, p_at timestamptz) returns boolean
language sql stable parallel safe
as $$ select coalesce(r.shuffled_at is null and r.opens_at > p_at, false) $$;
comment on function waitroom._draw_pending(waitroom.rooms, timestamptz) is
  'Whether room r''s opening draw is still to come at p_at: it has opens_at ahead and has not drawn.';

-- Called by admit, under the room's lock, at the first admission at or after
-- opens_at. Normally a check: every entrant (queued, joined before opens_at)
-- holds the place its key gives and nobody else holds a drawn place. What
-- changed since the joins (the seed, opens_at, a room given opens_at while
-- tickets waited, two keys sharing 62 bits) is put right here: the entrants
-- are renumbered at the bottom of the band in the order of the draw, and
-- tickets holding a drawn place that are not entrants go behind, in join
-- order. Returns the id of the room_shuffled ledger row.
create function waitroom._draw(r waitroom.rooms, p_now timestamptz) returns bigint
language plpgsql
as $$
declare
  v_count  bigint;
  v_wrong  boolean;
begin
  select count(*) filter (where e.entrant),
         bool_or(e.entrant is distinct from (e.seq < 0)
                 or (e.entrant and e.seq <> waitroom._drawn_seq(r.shuffle_seed, e.id)))
         or count(distinct e.seq) filter (where e.entrant) < count(*) filter (where e.entrant)
    into v_count, v_wrong
    from (select t.id, t.seq, t.queued_at < r.opens_at as entrant
            from waitroom.tickets t
           where t.room_id = r.id and t.status = 'queued') e;

  if v_wrong then
    -- Paired by position in two arrays, not by joining two numbered lists:
    -- the planner cannot misjudge the size of a join that is not there (with
    -- statistics from before the joins it once paired them in a nested loop,
    -- O(entrants^2): 42 s for 10,000). Locked in id order, as touch does.
    with entrants as (
      select t.id
        from waitroom.tickets t
       where t.room_id = r.id and t.status = 'queued' and t.queued_at < r.opens_at
       order by t.id
         for update
    ), drawn as (
      select array_agg(e.id order by waitroom._draw_key(r.shuffle_seed, e.id), e.id) as ids from entrants e
    )
    update waitroom.tickets t
       set seq = waitroom._drawn_band() + d.place - 1
      from drawn, unnest(drawn.ids) with ordinality as d(id, place)
     where t.id = d.id;
    update waitroom.tickets t
       set seq = n.seq
      from (select l.id, nextval(r.queue_seq) as seq
              from (select t.id from waitroom.tickets t
                     where t.room_id = r.id and t.status = 'queued' and t.seq < 0 and t.queued_at >= r.opens_at
                     order by t.queued_at, t.id) l) n
     where t.id = n.id;
  end if;

  update waitroom.rooms set shuffled_at = p_now where id = r.id;
  -- The seed as a string: JSON readers that parse numbers as doubles keep it exact.
  return (waitroom._log(array[row(r.id, null, 'room_shuffled',
    jsonb_build_object('seed', r.shuffle_seed::text, 'count', v_count, 'opens_at', r.opens_at))::waitroom.ledger_entry],
    p_now))[1];
end
$$;
comment on function waitroom._draw(waitroom.rooms, timestamptz) is
  'Make the room''s opening draw: check that the tickets queued before opens_at hold the places their keys give (_drawn_seq) and put right what changed since they joined, mark the room shuffled, write room_shuffled and return its id. Called by admit.';

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
         a.stored_position = a.drawn_position
    from (
      select t.id, t.status, t.priority, t.seq,
             row_number() over (order by t.seq, t.id) as stored_position,
             row_number() over (order by waitroom._draw_key(r.shuffle_seed, t.id), t.id) as drawn_position
        from waitroom.rooms r
        join waitroom.tickets t on t.room_id = r.id and t.seq < 0
                               -- gone before the draw (or by its own expiry of the idle, at its
                               -- instant): never in it
                               and (t.ended_at is null or t.ended_at > r.shuffled_at)
       where r.id = p_room and r.shuffled_at is not null
    ) a
   order by a.stored_position
$$;
comment on function waitroom.shuffle_audit(text) is
  'Check a room''s opening draw: every ticket in it (a drawn place, seq < 0, and not gone before the draw; until retention purges it) with its place in the queue order it was given (stored_position, by seq) and its place recomputed from the room''s shuffle_seed (drawn_position); agrees when they match. No rows before the draw. Admission went by (priority desc, seq), so within a priority band it followed the draw.';
