-- join and join_many: take a place in the queue (idempotent per holder), one
-- at a time or many at once.
--
-- Two bodies on purpose, one set of rules. join was first written as a thin
-- call of join_many with one join, and that cost more than the join it
-- replaced: one row through the set-based statements (a generic plan of
-- CTEs, array aggregates, the answer rebuilt from arrays) took 967k
-- instructions per call against 854k for the single-row statements below
-- (+13%; 1.22M against 1.06M per autocommitted transaction, +15%; callgrind,
-- one backend, same database), because starting a plan of a dozen nodes
-- costs more than the two rows themselves. So each body keeps the statements
-- that fit it, and what a join means lives in the helpers both call: which
-- rooms take joins (_join_room), which arguments are valid (_join_error),
-- which replaced tokens are kept (_supersede), what the ledger says
-- (_joined_data, _rejoined_data), with the shared _admit, _tally_enqueued, _tally_dequeued and
-- _depth, taken in the same lock order. Measured the same way, join with
-- these helpers stays within 2% of the single-row join it replaced.

-- Joins are refused by unknown rooms (WR404), closed ones (WR503) and sold
-- out ones (WRSLD); paused rooms queue them. A join that read the room just
-- before it sold out queues, and the next admission tick ends its ticket.
create function waitroom._join_room(
  p_room text, p_at timestamptz, out mode text, out queue_seq regclass, out max_queued integer, out quota_tiers jsonb,
  out proof_of_work_bits integer, out drawing boolean, out shuffle_seed bigint
)
language plpgsql stable
as $$
declare
  v_sold_out_at timestamptz;
begin
  select r.mode, r.queue_seq, r.max_queued, r.quota_tiers, r.proof_of_work_bits, r.sold_out_at,
         waitroom._draw_pending(r, p_at), r.shuffle_seed
    into mode, queue_seq, max_queued, quota_tiers, proof_of_work_bits, v_sold_out_at, drawing, shuffle_seed
    from waitroom.rooms r where r.id = p_room;
  if not found then
    perform waitroom._fail('WR404', format('room %L does not exist', p_room));
  elsif mode = 'closed' then
    perform waitroom._fail('WR503', format('room %L is closed', p_room));
  elsif v_sold_out_at is not null then
    perform waitroom._fail('WRSLD', format('room %L is sold out', p_room));
  end if;
end
$$;
comment on function waitroom._join_room(text, timestamptz) is
  'The mode, queue sequence, queue cap, quota tiers and proof-of-work bits of a room that takes joins, and whether its opening draw is still to come at p_at (drawing: a join takes its drawn place, see _join_seq) with the seed; WR404 unknown room, WR503 closed, WRSLD sold out.';

-- Checked before any number is drawn (a drawn number is never given back).
-- Joins of a capped room take its join lock (advisory 2002, before any other
-- lock of the join, so no deadlock) from the check to their commit: two joins
-- that each fit could otherwise both pass the check and overfill the room.
-- The callers test max_queued for null first: a room without a cap takes no
-- lock and pays nothing.
create function waitroom._check_room_space(p_room text, p_max_queued integer, p_joining bigint) returns void
language plpgsql
as $$
begin
  if p_max_queued is null then
    return;
  end if;
  perform pg_advisory_xact_lock(2002, hashtext(p_room));
  if waitroom._depth(p_room) + p_joining > p_max_queued then
    perform waitroom._fail('WRFUL', format('room %L queues at most %s tickets', p_room, p_max_queued));
  end if;
end
$$;
comment on function waitroom._check_room_space(text, integer, bigint) is
  'WRFUL unless the room''s queue has room for p_joining more tickets under p_max_queued (null: no cap); serialises the joins of a capped room (advisory lock 2002, hashtext(room)) until commit.';

-- Inlined where it is called (a single SQL expression): free in both bodies.
create function waitroom._join_error(p_holder text, p_priority integer) returns text
language sql immutable parallel safe
as $$
  select case
    when p_holder is not null and length(p_holder) not between 1 and 256 then 'holder must be 1 to 256 characters'
    when p_priority is null or p_priority not between -1000 and 1000 then 'priority must be between -1000 and 1000'
  end
$$;
comment on function waitroom._join_error(text, integer) is
  'Why a join''s arguments are invalid (holder 1 to 256 characters or null, priority -1000 to 1000), or null when they are valid.';

-- Old tokens are kept hashed only to tell "superseded" from "unknown"; the
-- last eight are enough for the tabs a person leaves open.
create function waitroom._supersede(p_replaced bytea[], p_kept bytea[]) returns bytea[]
language sql immutable parallel safe
as $$ select (p_replaced || p_kept)[1:8] $$;
comment on function waitroom._supersede(bytea[], bytea[]) is
  'superseded_token_hashes after a re-join: the hashes it replaced (newest first) before those kept so far, at most 8.';

-- Stable, as jsonb_build_object is: an immutable wrapper around it would
-- never be inlined, and a call per ledger row costs more than the row.
create function waitroom._joined_data(p_priority integer) returns jsonb
language sql stable parallel safe
as $$ select jsonb_build_object('priority', p_priority) $$;
comment on function waitroom._joined_data(integer) is 'data of a joined ledger row: the priority the ticket was given.';

create function waitroom._rejoined_data(p_instance integer) returns jsonb
language sql stable parallel safe
as $$ select jsonb_build_object('instance', p_instance, 'superseded_instance', p_instance - 1) $$;
comment on function waitroom._rejoined_data(integer) is 'data of a rejoined ledger row: the new instance and the one it superseded.';

create function waitroom.join(
  p_room     text,
  p_holder   text default null,
  p_priority integer default 0,
  p_now      timestamptz default null,
  p_tier     text default null
) returns table (ticket_id uuid, token text, status text, "position" bigint, depth bigint)
language plpgsql
as $$
#variable_conflict use_column
declare
  v_now      timestamptz := waitroom._now(p_now);
  v_token    text := waitroom._new_token();
  v_hash     bytea := waitroom._hash(v_token);
  v_room     record := waitroom._join_room(p_room, v_now);
  v_instance integer;
  v_new      boolean := false;
  v_id       uuid;
begin
  -- One test on the way of a valid join: plpgsql sets up each expression
  -- again in every transaction, and a join is usually a transaction alone.
  if waitroom._join_error(p_holder, p_priority) is not null then
    perform waitroom._fail('WR400', waitroom._join_error(p_holder, p_priority));
  end if;
  -- Rooms with quota tiers only: the others pay one null test.
  if v_room.quota_tiers is not null or p_tier is not null then
    if waitroom._tier_error(v_room.quota_tiers, p_tier) is not null then
      perform waitroom._fail('WR400', waitroom._tier_error(v_room.quota_tiers, p_tier));
    end if;
    p_priority := waitroom._tier_priority(v_room.quota_tiers, p_tier, p_priority);
  end if;

  if p_holder is null then
    -- Anonymous: no unique index can conflict, so a plain insert rather than
    -- ON CONFLICT's speculative one (which writes a second WAL record to
    -- confirm the row).
    if v_room.max_queued is not null then
      perform waitroom._check_room_space(p_room, v_room.max_queued, 1);
    end if;
    v_id := waitroom._new_id();
    insert into waitroom.tickets as t (id, room_id, token_hash, priority, tier, seq, queued_at, last_seen_at)
    values (v_id, p_room, v_hash, p_priority, p_tier,
            waitroom._join_seq(v_room.drawing, v_room.shuffle_seed, v_room.queue_seq, v_id), v_now, v_now)
    returning t.id, t.status into ticket_id, status;
    v_new := true;
    perform waitroom._log(array[row(p_room, ticket_id, 'joined', waitroom._joined_data(p_priority))::waitroom.ledger_entry], v_now);
  else
    loop
      -- A live holder re-joining keeps seq, status and priority (same place)
      -- and gets a new token; the old one is kept hashed only to answer
      -- "superseded".
      update waitroom.tickets t
         set token_hash = v_hash,
             superseded_token_hashes = waitroom._supersede(array[t.token_hash], t.superseded_token_hashes),
             instance = t.instance + 1,
             last_seen_at = greatest(t.last_seen_at, v_now)
       where t.room_id = p_room and t.holder = p_holder
         and t.status in ('queued', 'admitted', 'active', 'draining')
      returning t.id, t.status, t.instance into ticket_id, status, v_instance;
      if found then
        perform waitroom._log(
          array[row(p_room, ticket_id, 'rejoined', waitroom._rejoined_data(v_instance))::waitroom.ledger_entry], v_now);
        exit;
      end if;

      -- A new ticket: a re-join above keeps its place even in a full room,
      -- and a holder with no share left is refused before it waits.
      if v_room.quota_tiers is not null then
        perform waitroom._check_quota(p_room, p_holder, p_tier, v_now);
      end if;
      if v_room.max_queued is not null then
        perform waitroom._check_room_space(p_room, v_room.max_queued, 1);
      end if;
      v_id := waitroom._new_id();
      insert into waitroom.tickets (id, room_id, holder, token_hash, priority, tier, seq, queued_at, last_seen_at)
      values (v_id, p_room, p_holder, v_hash, p_priority, p_tier,
              waitroom._join_seq(v_room.drawing, v_room.shuffle_seed, v_room.queue_seq, v_id), v_now, v_now)
      on conflict (room_id, holder)
        where holder is not null and status in ('queued', 'admitted', 'active', 'draining')
      do nothing
      returning id, status into ticket_id, status;
      if found then
        v_new := true;
        perform waitroom._log(
          array[row(p_room, ticket_id, 'joined', waitroom._joined_data(p_priority))::waitroom.ledger_entry], v_now);
        exit;
      end if;
      -- A concurrent join of the same holder won: its ticket is ours to
      -- re-join (the number we drew stands for no ticket, and is not counted).
    end loop;
  end if;

  if v_room.mode = 'passthrough' and status = 'queued' then
    perform waitroom._admit(p_room, null, p_now, array[ticket_id]);
    select t.status into status from waitroom.tickets t where t.id = ticket_id;
  end if;
  -- The tally last, after the ticket row and the room's admission lock:
  -- the order every verb takes them in (no deadlock).
  if v_new then
    perform waitroom._tally_enqueued(p_room, 1);
  end if;

  token := v_token;
  depth := waitroom._depth(p_room);
  -- O(1): everyone queued is ahead of a fresh FIFO ticket, so depth is its
  -- exact position; for re-joins and priorities it is an upper bound.
  -- waitroom.position() gives the exact figure. None before the opening
  -- draw, which gives every entrant its place (as positions says).
  "position" := case when status = 'queued' and not v_room.drawing then depth end;
  return next;
end
$$;
comment on function waitroom.join(text, text, integer, timestamptz, text) is
  'Join a room''s queue. p_holder (verified user id) makes it idempotent: a re-join keeps the place (and priority and tier), rotates the token and supersedes the old one. p_tier is the holder''s quota tier in a room with quota_tiers (null = "default"); a priority of 0 takes the tier''s. WRSLD the room is sold out, WRQUO a new ticket of a holder with no share left in its tier (detail: when the next one is available). Returns the bearer token once. position is exact for a new ticket in a FIFO room, an upper bound otherwise (see waitroom.position). WR404 unknown room, WR503 closed, WRFUL the room queues max_queued tickets already (a re-join of a live holder is never refused), WR400 bad holder/priority. waitroom.join_many does the same for many joins at once.';

-- The group commit of an opening rush: the HTTP layer gathers the joins
-- that arrive together and writes them with one statement, so a batch pays
-- for one transaction, one commit flush and one parse of the tickets' CHECK
-- constraints instead of one each. Every join of the batch means what
-- waitroom.join means, as if they ran one after another in ordinal order.
create function waitroom.join_many(
  p_room       text,
  p_count      integer,
  p_holders    text[] default null,
  p_priorities integer[] default null,
  p_now        timestamptz default null,
  p_tiers      text[] default null,
  p_weakest_proof integer default null
) returns table (ordinal integer, ticket_id uuid, token text, status text, "position" bigint, depth bigint)
language plpgsql
-- The statements below have the same shape for a batch of 1 and of 10000;
-- custom plans, whose estimates follow the arrays' lengths, would re-plan
-- them at every call (≈ 1 ms each) for no better plan.
set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_column
declare
  -- One statement's worth: a batch holds its rows' locks until it commits,
  -- and the HTTP batcher sends far fewer.
  c_max_count  constant integer := 10000;
  v_now        timestamptz := waitroom._now(p_now);
  v_room       record := waitroom._join_room(p_room, v_now);
  v_bad        bigint;
  v_error      text;
  v_draws      boolean[];
  -- Per join, in ordinal order. For a batch without holders v_statuses and
  -- v_firsts stay null: all queued, each join its own ticket.
  v_new_ids    uuid[];
  v_ids        uuid[];
  v_tokens     text[];
  v_statuses   text[];
  v_priorities integer[] := p_priorities;
  v_seqs       bigint[];
  v_firsts     bigint[];
  v_behind     bigint[];
  v_made       bigint;
  v_unnumbered uuid[];
  v_admitted   uuid[];
  v_depth      bigint;
begin
  if p_count is null or p_count not between 1 and c_max_count then
    perform waitroom._fail('WR400', format('p_count must be between 1 and %s', c_max_count));
  end if;
  if p_holders is not null and (array_ndims(p_holders) <> 1 or cardinality(p_holders) <> p_count) then
    perform waitroom._fail('WR400', format('p_holders must be null or an array of p_count (%s) holders', p_count));
  end if;
  if p_priorities is not null and (array_ndims(p_priorities) <> 1 or cardinality(p_priorities) <> p_count) then
    perform waitroom._fail('WR400', format('p_priorities must be null or an array of p_count (%s) priorities', p_count));
  end if;
  if p_tiers is not null and (array_ndims(p_tiers) <> 1 or cardinality(p_tiers) <> p_count) then
    perform waitroom._fail('WR400', format('p_tiers must be null or an array of p_count (%s) tiers', p_count));
  end if;
  -- The HTTP layer verified each proof (signature, room, expiry, the hash)
  -- and says what the weakest showed; whether that is enough is the room's
  -- setting as of this statement, so a difficulty raised during a flood
  -- counts at once. A room without proof of work tests nothing more.
  if v_room.proof_of_work_bits is not null then
    if p_weakest_proof < v_room.proof_of_work_bits then
      perform waitroom._fail('WRPOW', format('room %L asks anonymous joins for a proof of work of %s leading zero bits',
        p_room, v_room.proof_of_work_bits));
    end if;
  end if;
  -- Everything is checked before the first number is drawn, and the first
  -- bad join is named, where a serial run would have stopped.
  if p_holders is not null or p_priorities is not null then
    select a.ordinal, waitroom._join_error(a.holder, coalesce(a.priority, 0))
      into v_bad, v_error
      from unnest(p_holders, p_priorities) with ordinality as a(holder, priority, ordinal)
     where waitroom._join_error(a.holder, coalesce(a.priority, 0)) is not null
     order by a.ordinal
     limit 1;
    if v_error is not null then
      perform waitroom._fail('WR400', format('join %s: %s', v_bad, v_error));
    end if;
  end if;
  -- Rooms with quota tiers only: each join's tier, and the priority it maps to.
  if p_tiers is not null or v_room.quota_tiers is not null then
    select a.ordinal, waitroom._tier_error(v_room.quota_tiers, a.tier)
      into v_bad, v_error
      from unnest(p_tiers) with ordinality as a(tier, ordinal)
     where waitroom._tier_error(v_room.quota_tiers, a.tier) is not null
     order by a.ordinal
     limit 1;
    if v_error is not null then
      perform waitroom._fail('WR400', format('join %s: %s', v_bad, v_error));
    end if;
    p_priorities := array(
      select waitroom._tier_priority(v_room.quota_tiers, a.tier, coalesce(a.priority, 0))
        from rows from (generate_series(1, p_count), unnest(p_tiers), unnest(p_priorities)) as a(ordinal, tier, priority)
       order by a.ordinal);
  end if;

  if p_holders is not null then
    -- Which joins draw a queue number: the anonymous ones and the first join
    -- of each holder that has no live ticket in this snapshot (a hint: the
    -- insert below decides). A re-join draws none.
    select array_agg(case when a.holder is null then true
                          else a.first and not exists (
                            select from waitroom.tickets t
                             where t.room_id = p_room and t.holder = a.holder
                               and t.status in ('queued', 'admitted', 'active', 'draining'))
                     end order by a.ordinal)
      into v_draws
      from (select u.holder, u.ordinal, row_number() over (partition by u.holder order by u.ordinal) = 1 as first
              from unnest(p_holders) with ordinality as u(holder, ordinal)) a;
  end if;

  -- A holder about to get a new ticket with no share left refuses the batch
  -- (the HTTP layer then tries its joins one by one).
  if v_room.quota_tiers is not null and p_holders is not null then
    perform waitroom._check_quota(p_room, a.holder, a.tier, v_now)
       from unnest(p_holders, p_tiers, v_draws) as a(holder, tier, draws)
      where a.holder is not null and a.draws;
  end if;

  -- A batch that would queue more than the cap is refused whole (the HTTP
  -- layer then tries its joins one by one); re-joins draw no number and need
  -- no room.
  if v_room.max_queued is not null then
    perform waitroom._check_room_space(p_room, v_room.max_queued,
      case when v_draws is null then p_count else (select count(*) from unnest(v_draws) d where d) end);
  end if;

  -- Every join gets its id and token here, and its number in ordinal order
  -- (volatile expressions are evaluated in the order rows are produced), so
  -- the batch queues in the order its joins arrived. The anonymous ones are
  -- written here too, all of them with one INSERT for the tickets and one
  -- for their ledger rows; as in join, a plain INSERT: no unique index can
  -- conflict without a holder.
  with made as (
    select a.ordinal, a.holder, coalesce(a.priority, 0) as priority, a.tier, a.draws,
           waitroom._new_id() as new_id, waitroom._new_token() as token
      from rows from (generate_series(1, p_count), unnest(p_holders), unnest(p_priorities), unnest(v_draws),
                      unnest(p_tiers))
           as a(ordinal, holder, priority, draws, tier)
  ), drawn as (
    -- Its place needs its id (before the opening draw: see _join_seq).
    select m.ordinal, m.holder, m.priority, m.tier, m.new_id, m.token,
           case when m.draws is not false
                then waitroom._join_seq(v_room.drawing, v_room.shuffle_seed, v_room.queue_seq, m.new_id)
           end as seq
      from made m
  ), anonymous as (
    insert into waitroom.tickets (id, room_id, token_hash, priority, tier, seq, queued_at, last_seen_at)
    select d.new_id, p_room, waitroom._hash(d.token), d.priority, d.tier, d.seq, v_now, v_now
      from drawn d
     where d.holder is null
  ), ledger as (
    -- Not announced (the joins learn their tickets from the answer); referenced below so that it runs.
    select waitroom._log(array_agg(row(p_room, d.new_id, 'joined', waitroom._joined_data(d.priority)
             )::waitroom.ledger_entry order by d.ordinal) filter (where d.holder is null), v_now) as ids
      from drawn d
  )
  select array_agg(d.new_id order by d.ordinal), array_agg(d.token order by d.ordinal),
         array_agg(d.seq order by d.ordinal)
    into v_new_ids, v_tokens, v_seqs
    from drawn d
   cross join ledger;
  v_ids := v_new_ids;

  if p_holders is not null then
    with asked as (
      select a.ordinal, a.holder, coalesce(a.priority, 0) as priority, a.tier, a.new_id, a.token, a.seq
        from unnest(p_holders, p_priorities, v_new_ids, v_tokens, v_seqs, p_tiers)
             with ordinality as a(holder, priority, new_id, token, seq, tier, ordinal)
       where a.holder is not null
    ), per_holder as (
      -- A holder's joins of this batch fold into one: the first one's
      -- priority and number, the last one's token current, the earlier ones
      -- superseded (newest first), the instance advanced once per join.
      select a.holder, min(a.ordinal) as first_ordinal, count(*)::integer as joins,
             (array_agg(a.new_id order by a.ordinal))[1] as new_id,
             (array_agg(a.priority order by a.ordinal))[1] as priority,
             (array_agg(a.tier order by a.ordinal))[1] as tier,
             min(a.seq) as seq,
             array_agg(waitroom._hash(a.token) order by a.ordinal desc) as hashes
        from asked a
       group by a.holder
    ), held as (
      -- The holder's new ticket, or the re-join of its live one, which keeps
      -- seq, status and priority (same place) and takes the new token.
      -- ON CONFLICT DO UPDATE settles a race with a concurrent join of the
      -- same holder within this statement: the winner's ticket is re-joined.
      -- Holders are taken in one order (holder, "C" collation), so batches
      -- sharing holders wait for each other in that order and cannot
      -- deadlock. A newcomer that the pre-read thought live is given its
      -- number afterwards (0 meanwhile: seq is not null, and no other
      -- transaction sees the row before then).
      insert into waitroom.tickets as t
             (id, room_id, holder, token_hash, superseded_token_hashes, instance, priority, tier, seq,
              queued_at, last_seen_at)
      select h.new_id, p_room, h.holder, h.hashes[1], waitroom._supersede(h.hashes[2:], '{}'), h.joins,
             h.priority, h.tier, coalesce(h.seq, 0), v_now, v_now
        from per_holder h
       order by h.holder collate "C"
      on conflict (room_id, holder)
        where holder is not null and status in ('queued', 'admitted', 'active', 'draining')
      do update
         set token_hash = excluded.token_hash,
             superseded_token_hashes =
               waitroom._supersede(excluded.superseded_token_hashes || t.token_hash, t.superseded_token_hashes),
             instance = t.instance + excluded.instance,
             last_seen_at = greatest(t.last_seen_at, excluded.last_seen_at)
      returning t.id, t.holder, t.status, t.instance, t.priority, t.seq
    ), settled as (
      select h.holder, h.first_ordinal, h.joins, k.id, k.status, k.instance, k.priority,
             -- The holder's new ticket (a number drawn for nobody, when a
             -- concurrent join made it, is not counted).
             k.id = h.new_id as made,
             k.id = h.new_id and h.seq is null as unnumbered,
             case when k.id = h.new_id and h.seq is null then null else k.seq end as seq
        from per_holder h
        join held k on k.holder = h.holder
    ), answered as (
      -- The j-th join of a holder in this batch made instance (old + j).
      select a.ordinal, s.first_ordinal, s.id as ticket_id, s.status, s.priority, s.seq,
             s.instance - s.joins + (row_number() over (partition by a.holder order by a.ordinal))::integer
               as instance
        from asked a
        join settled s on s.holder = a.holder
    ), ledger as (
      -- Referenced below (cross join, one row) so that it runs.
      select waitroom._log(array_agg(row(p_room, w.ticket_id,
               case when w.instance = 1 then 'joined' else 'rejoined' end,
               case when w.instance = 1 then waitroom._joined_data(w.priority)
                    else waitroom._rejoined_data(w.instance) end)::waitroom.ledger_entry order by w.ordinal), v_now) as ids
        from answered w
    )
    -- The batch's answer so far, per join, with the holders' tickets merged in.
    select array_agg(coalesce(w.ticket_id, a.new_id) order by a.ordinal),
           array_agg(coalesce(w.status, 'queued') order by a.ordinal),
           array_agg(coalesce(w.priority, a.priority, 0) order by a.ordinal),
           array_agg(case when w.ordinal is null then a.seq else w.seq end order by a.ordinal),
           array_agg(coalesce(w.first_ordinal, a.ordinal) order by a.ordinal),
           (select count(*) from settled s where s.made),
           (select array_agg(s.id order by s.first_ordinal) from settled s where s.unnumbered)
      into v_ids, v_statuses, v_priorities, v_seqs, v_firsts, v_made, v_unnumbered
      from unnest(p_priorities, v_new_ids, v_seqs) with ordinality as a(priority, new_id, seq, ordinal)
      left join answered w on w.ordinal = a.ordinal
     cross join ledger;

    if v_unnumbered is not null then
      -- Behind every number the batch drew, in the order of the holders' first joins.
      with numbered as (
        update waitroom.tickets t
           set seq = n.seq
          from (select u.id,
                       waitroom._join_seq(v_room.drawing, v_room.shuffle_seed, v_room.queue_seq, u.id) as seq
                  from unnest(v_unnumbered) with ordinality as u(id, o)
                 order by u.o) n
         where t.id = n.id
        returning t.id, t.seq
      )
      select array_agg(coalesce(a.seq, n.seq) order by a.ordinal) into v_seqs
        from unnest(v_ids, v_seqs) with ordinality as a(ticket_id, seq, ordinal)
        left join numbered n on n.id = a.ticket_id;
    end if;
  end if;

  -- Position in O(batch), never O(queue): everyone queued counts in depth,
  -- so depth minus the batch's queued tickets that are surely behind a
  -- ticket (a lower priority, or the same and a later number) bounds its
  -- position; exact for a new ticket of a FIFO room when no other join
  -- interleaved (waitroom.position() gives the exact figure). In an
  -- anonymous batch of one priority, a join's later ones are behind it.
  -- Otherwise they are counted once per ticket (at its first join), in
  -- queue order, where a holder's joins are neighbours. Passthrough
  -- admission below takes the batch's tickets from the front of that
  -- order, so it changes none of these counts for the tickets left queued.
  if v_firsts is not null or p_priorities is not null then
    select array_agg(b.behind order by b.ordinal) into v_behind
      from (select a.ordinal,
                   count(*) filter (where a.counted) over ()
                 - count(*) filter (where a.counted)
                     over (order by a.priority desc, a.seq, a.first_ordinal, a.ordinal rows unbounded preceding)
                   as behind
              from (select u.ordinal, coalesce(u.priority, 0) as priority, u.seq,
                           coalesce(u.first_ordinal, u.ordinal) as first_ordinal,
                           coalesce(u.status, 'queued') = 'queued'
                             and coalesce(u.first_ordinal, u.ordinal) = u.ordinal as counted
                      from unnest(v_statuses, v_priorities, v_seqs, v_firsts)
                           with ordinality as u(status, priority, seq, first_ordinal, ordinal)) a) b;
  end if;

  if v_room.mode = 'passthrough' and (v_statuses is null or 'queued' = any (v_statuses)) then
    -- As in join: passthrough joins learn their admission from this answer,
    -- so the ledger rows about the batch's tickets are not announced.
    select array_agg(a.ticket_id) into v_admitted from waitroom._admit(p_room, null, p_now, v_ids) a;
    if v_admitted is not null then
      select array_agg(case when ad.id is null then coalesce(a.status, 'queued') else 'admitted' end
                       order by a.ordinal)
        into v_statuses
        from unnest(v_ids, v_statuses) with ordinality as a(ticket_id, status, ordinal)
        left join unnest(v_admitted) as ad(id) on ad.id = a.ticket_id;
    end if;
  end if;
  -- The tally last, after the ticket rows and the room's admission lock:
  -- the order every verb takes them in (no deadlock). New tickets: the
  -- anonymous joins and the holders' new tickets.
  perform waitroom._tally_enqueued(p_room,
    coalesce(v_made, 0) + (select count(*) from unnest(p_holders) h where h is null)
      + case when p_holders is null then p_count else 0 end);

  v_depth := waitroom._depth(p_room);
  return query
  select u.ordinal::integer, u.ticket_id, u.token, coalesce(u.status, 'queued'),
         -- None before the opening draw, as in join.
         case when coalesce(u.status, 'queued') = 'queued' and not v_room.drawing
              then v_depth - coalesce(u.behind, p_count - u.ordinal) end,
         v_depth
    from unnest(v_ids, v_tokens, v_statuses, v_behind) with ordinality as u(ticket_id, token, status, behind, ordinal)
   order by u.ordinal;
end
$$;
comment on function waitroom.join_many(text, integer, text[], integer[], timestamptz, text[], integer) is
  'Many joins of one room in one statement: p_count joins (1 to 10000); p_holders, p_priorities and p_tiers are null or arrays of p_count elements (a null holder = anonymous, a null priority = 0, a null tier = "default"). p_weakest_proof (the HTTP layer''s) is the fewest leading zero bits shown by the verified proofs of work of the joins held to the room''s proof_of_work_bits (0: one of them showed none), or null when none is held to it (server-key and SQL joins). Each join means what waitroom.join means, as if they ran in ordinal order: several joins of one holder make one ticket whose last join holds the current token. One row per join, ordinal = its index in the arrays; position as in join (an upper bound, exact for a new FIFO ticket when no other batch interleaved). Any error refuses the whole batch and writes nothing: WR404 unknown room, WR503 closed, WRFUL the batch''s new tickets would queue more than max_queued, WRSLD sold out, WRQUO a holder getting a new ticket has no share left, WRPOW p_weakest_proof is below the room''s proof_of_work_bits, WR400 bad count, array length, holder or priority (the message names the first bad join).';
