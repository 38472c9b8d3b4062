-- Private helpers (underscore-prefixed): not granted to the app role.

-- Who may pin the clock. A verb runs as its owner (security definer), so the
-- caller is session_user: the role that logged in, which only a superuser can
-- change. The service's role is neither the owner nor in waitroom_clock, so it
-- cannot move time (an admission deadline, a session's end) for anyone.
create function waitroom._pinned_clock(p_now timestamptz) returns timestamptz
language plpgsql stable parallel safe
as $$
begin
  if p_now is not null
     and not pg_has_role(session_user, 'waitroom_clock', 'member')
     and not pg_has_role(session_user, (select n.nspowner from pg_namespace n where n.nspname = 'waitroom'), 'member')
  then
    perform waitroom._fail('WR403', format(
      'role %I may not pass p_now: only the owner of schema waitroom and members of waitroom_clock may pin the clock',
      session_user));
  end if;
  return p_now;
end
$$;
comment on function waitroom._pinned_clock(timestamptz) is
  'p_now, after checking that the session user may pin the clock (the schema owner, a superuser or a member of waitroom_clock); WR403 otherwise. Null stays null, unchecked.';

-- The clock every time-dependent verb uses; tests and DBAs pin it with p_now.
-- The check runs only when p_now is given: the service's calls (p_now null)
-- cost a coalesce, as before, and this stays inlinable.
create function waitroom._now(p_now timestamptz) returns timestamptz
language sql stable parallel safe
as $$ select case when p_now is null then now() else waitroom._pinned_clock(p_now) end $$;
comment on function waitroom._now(timestamptz) is
  'p_now when given (and the session user may pin the clock, see _pinned_clock), else the transaction time: the injectable clock.';

-- Tokens are compared by hash only. Stable, as convert_to is: an immutable
-- wrapper around it is never inlined, and a call per row cost join_many ≈ 6%.
create function waitroom._hash(p_token text) returns bytea
language sql stable strict parallel safe
as $$ select sha256(convert_to(p_token, 'UTF8')) $$;
comment on function waitroom._hash(text) is 'sha256 of a bearer token, the only form in which tokens are stored.';

-- Time-ordered ids keep the primary key's inserts on its rightmost pages
-- (uuidv7, PostgreSQL 18+); older servers get random ones.
do $$
begin
  if exists (select from pg_proc where proname = 'uuidv7' and pronamespace = 'pg_catalog'::regnamespace) then
    create function waitroom._new_id() returns uuid language sql volatile as 'select uuidv7()';
  else
    create function waitroom._new_id() returns uuid language sql volatile as 'select gen_random_uuid()';
  end if;
end
$$;
comment on function waitroom._new_id() is 'A new ticket id: uuidv7 where the server has it, else a random uuid.';

-- 244 random bits from the server's strong RNG, url-safe, no extension needed.
create function waitroom._new_token() returns text
language sql volatile parallel safe
as $$
  select translate(encode(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()), 'base64'), '+/=', '-_')
$$;
comment on function waitroom._new_token() is 'A fresh bearer token (base64url, 244 random bits).';

-- One place that raises the errors the HTTP layer maps to status codes.
create function waitroom._fail(p_code text, p_message text) returns void
language plpgsql
as $$
begin
  raise exception using errcode = p_code, message = p_message;
end
$$;
comment on function waitroom._fail(text, text) is
  'Raise a waitroom error: WR400 invalid argument, WR403 not allowed (p_now from a role that may not pin the clock), WR404 unknown room, WR409 room exists, WR503 room closed, WRFUL queue full (max_queued), WRSLD sold out, WRQUO holder over quota (raised by _check_quota, with the next share''s time as detail), WRRET return URL not allowed (continue_to).';

create function waitroom._room(p_room text) returns waitroom.rooms
language plpgsql stable
as $$
declare
  r waitroom.rooms;
begin
  select * into r from waitroom.rooms where id = p_room;
  if not found then
    perform waitroom._fail('WR404', format('room %L does not exist', p_room));
  end if;
  return r;
end
$$;
comment on function waitroom._room(text) is 'The room row, or error WR404.';

-- Serialises admissions and configuration changes of one room (not of others).
create function waitroom._lock_room(p_room text) returns void
language sql
as $$ select pg_advisory_xact_lock(2001, hashtext(p_room)) $$;
comment on function waitroom._lock_room(text) is
  'Transaction-level advisory lock (2001, hashtext(room)) taken by admit and configure_room.';

-- The one writer of the ledger, set-based: a verb that writes one row and
-- the sweep that writes thousands call the same INSERT. Rows get their ids
-- in array order; the ids come back (ascending) for waitroom._publish_ids.
create function waitroom._log(p_entries waitroom.ledger_entry[], p_at timestamptz) returns bigint[]
language sql
as $$
  with written as (
    insert into waitroom.events as e (room_id, ticket_id, type, data, created_at)
    select l.room_id, l.ticket_id, l.type, coalesce(l.data, '{}'), p_at
      from unnest(p_entries) with ordinality as l(room_id, ticket_id, type, data, ordinal)
     order by l.ordinal
    returning e.id
  )
  select coalesce(array_agg(w.id order by w.id), '{}') from written w
$$;
comment on function waitroom._log(waitroom.ledger_entry[], timestamptz) is
  'Append ledger rows (one per entry, in array order, all stamped p_at; null data = {}) and return their ids in ascending order, for waitroom._publish_ids. The only INSERT into waitroom.events.';

-- Only bump a tally: tickets queued minus tickets dequeued is the depth
-- (_depth). Shard chosen by backend so concurrent writers rarely share a row.
create function waitroom._tally_dequeued(p_room text, p_count bigint) returns void
language sql
as $$
  update waitroom.queue_tally
     set dequeued = dequeued + p_count
   where room_id = p_room and shard = pg_backend_pid() % 16
$$;
comment on function waitroom._tally_dequeued(text, bigint) is
  'Record that p_count queued tickets of the room are no longer queued.';

-- Counted in the joins' own transactions, not read off the sequence: a
-- number drawn by a join that rolled back, or by a backend killed mid-join,
-- or skipped by the sequence cache a crash lost, never counted.
create function waitroom._tally_enqueued(p_room text, p_count bigint) returns void
language sql
as $$
  update waitroom.queue_tally
     set enqueued = enqueued + p_count
   where room_id = p_room and shard = pg_backend_pid() % 16
$$;
comment on function waitroom._tally_enqueued(text, bigint) is
  'Record that p_count new tickets of the room were queued (in the transaction that queues them).';

create function waitroom._depth(p_room text) returns bigint
language sql stable
as $$
  select coalesce(sum(q.enqueued - q.dequeued), 0)::bigint from waitroom.queue_tally q where q.room_id = p_room
$$;
comment on function waitroom._depth(text) is
  'Number of queued tickets in the room, in O(1): tickets queued minus tickets dequeued, both counted transactionally.';

-- The status a ticket has at p_now, whether or not sweep has recorded it yet:
-- horizons decide, so answers never depend on when maintenance last ran.
create function waitroom._effective_status(t waitroom.tickets, r waitroom.rooms, p_now timestamptz)
returns text
language sql stable
as $$
  select case
    when t.status = 'queued' and t.last_seen_at + make_interval(secs => r.idle_seconds) <= p_now then 'expired'
    when t.status = 'admitted' and t.claim_deadline <= p_now then 'expired'
    when t.status in ('active', 'draining') and t.expires_at + make_interval(secs => r.grace_seconds) <= p_now then 'ended'
    when t.status = 'active' and t.expires_at <= p_now then 'draining'
    else t.status
  end
$$;
comment on function waitroom._effective_status(waitroom.tickets, waitroom.rooms, timestamptz) is
  'Ticket status at p_now, counting horizons that sweep has not recorded yet.';

-- The answer to "may this token proceed?", shared by check and the other gates.
create function waitroom._verdict(t waitroom.tickets, r waitroom.rooms, p_token_hash bytea, p_now timestamptz)
returns waitroom.verdict
language plpgsql stable
as $$
declare
  v_status text;
begin
  if t.id is null or p_token_hash is null then
    return row(false, 'unknown', null, null)::waitroom.verdict;
  end if;
  if t.token_hash <> p_token_hash then
    if p_token_hash = any (t.superseded_token_hashes) then
      return row(false, 'superseded', null, null)::waitroom.verdict;
    end if;
    return row(false, 'unknown', null, null)::waitroom.verdict;
  end if;
  v_status := waitroom._effective_status(t, r, p_now);
  return case v_status
    when 'active'   then row(true,  'ok',          v_status, t.expires_at)::waitroom.verdict
    when 'admitted' then row(false, 'not_claimed', v_status, t.claim_deadline)::waitroom.verdict
    when 'draining' then row(false, 'draining',    v_status, t.expires_at)::waitroom.verdict
    else                 row(false, v_status,      v_status, null)::waitroom.verdict
  end;
end
$$;
comment on function waitroom._verdict(waitroom.tickets, waitroom.rooms, bytea, timestamptz) is
  'Verdict for a ticket and presented token hash: wrong tokens learn nothing beyond "unknown".';

-- Admission ticks are graphile-worker jobs, one chain per room: job_key
-- admit:<room> collapses duplicates, queue_name keeps a room's ticks serial.
create function waitroom._schedule_admit(p_room text, p_run_at timestamptz, p_job_key_mode text) returns void
language sql
as $$
  select null from graphile_worker.add_job(
    'admit', json_build_object('room', p_room),
    queue_name => 'waitroom:' || p_room, run_at => p_run_at, max_attempts => 5,
    job_key => 'admit:' || p_room, job_key_mode => p_job_key_mode)
$$;
comment on function waitroom._schedule_admit(text, timestamptz, text) is
  'Schedule the room''s admission tick at p_run_at; p_job_key_mode replace (move it) or preserve_run_at (only if none is pending).';

-- Whatever frees a seat calls this in its own transaction: the next person
-- is admitted within milliseconds, not at the next tick.
create function waitroom._wake(p_room text) returns void
language sql
as $$ select waitroom._schedule_admit(p_room, now(), 'replace') $$;
comment on function waitroom._wake(text) is 'Run the room''s admission tick now (seats were freed or settings changed).';
