-- join: take a place in the queue (idempotent per holder).

create function waitroom.join(
  p_room     text,
  p_holder   text default null,
  p_priority integer default 0,
  p_now      timestamptz default null
) returns table (ticket_id uuid, token text, status text, "position" bigint, depth bigint)
language plpgsql
as $$
#variable_conflict use_column
declare
  v_now      timestamptz := waitroom._now(p_now);
  v_token    text := waitroom._new_token();
  v_hash     bytea := waitroom._hash(v_token);
  v_mode     text;
  v_seq      regclass;
  v_instance integer;
  v_lost     integer := 0;
begin
  select r.mode, r.queue_seq into v_mode, v_seq from waitroom.rooms r where r.id = p_room;
  if not found then
    perform waitroom._fail('WR404', format('room %L does not exist', p_room));
  elsif v_mode = 'closed' then
    perform waitroom._fail('WR503', format('room %L is closed', p_room));
  end if;
  if p_holder is not null and length(p_holder) not between 1 and 256 then
    perform waitroom._fail('WR400', 'holder must be 1 to 256 characters');
  end if;
  if p_priority is null or p_priority not between -1000 and 1000 then
    perform waitroom._fail('WR400', 'priority must be between -1000 and 1000');
  end if;

  if p_holder is null then
    -- Anonymous: no unique index can conflict, so a plain insert rather than
    -- ON CONFLICT's speculative one (which writes a second WAL record to
    -- confirm the row).
    insert into waitroom.tickets as t (id, room_id, token_hash, priority, seq, queued_at, last_seen_at)
    values (waitroom._new_id(), p_room, v_hash, p_priority, nextval(v_seq), v_now, v_now)
    returning t.id, t.status into ticket_id, status;
    perform waitroom._event(p_room, ticket_id, 'joined', jsonb_build_object('priority', p_priority), v_now);
  else
    loop
      -- A live holder re-joining keeps seq, status and priority (same place)
      -- and gets a new token; the old one is kept hashed only to answer
      -- "superseded".
      update waitroom.tickets t
         set token_hash = v_hash,
             superseded_token_hashes = (t.token_hash || t.superseded_token_hashes)[1:8],
             instance = t.instance + 1,
             last_seen_at = greatest(t.last_seen_at, v_now)
       where t.room_id = p_room and t.holder = p_holder
         and t.status in ('queued', 'admitted', 'active', 'draining')
      returning t.id, t.status, t.instance into ticket_id, status, v_instance;
      if found then
        perform waitroom._event(p_room, ticket_id, 'rejoined',
          jsonb_build_object('instance', v_instance, 'superseded_instance', v_instance - 1), v_now);
        exit;
      end if;

      insert into waitroom.tickets (id, room_id, holder, token_hash, priority, seq, queued_at, last_seen_at)
      values (waitroom._new_id(), p_room, p_holder, v_hash, p_priority, nextval(v_seq), v_now, v_now)
      on conflict (room_id, holder)
        where holder is not null and status in ('queued', 'admitted', 'active', 'draining')
      do nothing
      returning id, status into ticket_id, status;
      if found then
        perform waitroom._event(p_room, ticket_id, 'joined', jsonb_build_object('priority', p_priority), v_now);
        exit;
      end if;
      -- A concurrent join of the same holder won: its ticket is ours to re-join,
      -- and the number we drew stands for no ticket.
      v_lost := v_lost + 1;
    end loop;
    -- Tally after the ticket row, the order every verb locks in (no deadlock).
    if v_lost > 0 then
      perform waitroom._dequeue(p_room, v_lost);
    end if;
  end if;

  if v_mode = 'passthrough' and status = 'queued' then
    perform waitroom._admit(p_room, null, p_now, array[ticket_id]);
    select t.status into status from waitroom.tickets t where t.id = ticket_id;
  end if;

  token := v_token;
  depth := waitroom._depth(p_room);
  -- O(1): everyone queued is ahead of a fresh FIFO ticket, so depth is its
  -- exact position; for re-joins and priorities it is an upper bound.
  -- waitroom.position() gives the exact figure.
  "position" := case when status = 'queued' then depth end;
  return next;
end
$$;
comment on function waitroom.join(text, text, integer, timestamptz) is
  'Join a room''s queue. p_holder (verified user id) makes it idempotent: a re-join keeps the place, rotates the token and supersedes the old one. Returns the bearer token once. position is exact for a new ticket in a FIFO room, an upper bound otherwise (see waitroom.position). WR404 unknown room, WR503 closed, WR400 bad holder/priority.';
