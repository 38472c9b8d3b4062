-- The holder's verbs on an existing ticket: claim, heartbeat, leave, check.
-- Expected outcomes (wrong token, lapsed offer, not admitted yet) are answers
-- with a precise code, never exceptions, and change nothing.

create function waitroom.claim(p_ticket uuid, p_token text, p_now timestamptz default null)
returns waitroom.claim_result
language plpgsql
as $$
declare
  v_now  timestamptz := waitroom._now(p_now);
  v_hash bytea := waitroom._hash(p_token);
  t waitroom.tickets;
  r waitroom.rooms;
  v waitroom.verdict;
begin
  -- The row lock first (for the presented token only: a wrong one locks
  -- nothing): a claim arriving while its admission, a sweep or a re-join
  -- commits waits for it and sees the ticket as it now is. A bare UPDATE
  -- would judge the row as its snapshot saw it (still queued) and the read
  -- after it the committed offer. Of any number of concurrent callers
  -- exactly one finds the offer and makes the seat.
  select * into t from waitroom.tickets tk
   where tk.id = p_ticket and tk.token_hash = v_hash
     for no key update;
  if t.status = 'admitted' and t.claim_deadline > v_now then
    update waitroom.tickets tk
       set status = 'active', claimed_at = v_now, last_seen_at = v_now,
           expires_at = v_now + make_interval(secs => rm.session_seconds)
      from waitroom.rooms rm
     where tk.id = p_ticket and rm.id = tk.room_id
    returning tk.* into t;
    perform waitroom._publish_ids(waitroom._log(array[row(t.room_id, t.id, 'active',
      jsonb_build_object('expires_at', t.expires_at))::waitroom.ledger_entry], v_now));
    return row(true, 'ok', 'active', t.expires_at, t.holder, t.room_id, t.instance)::waitroom.claim_result;
  end if;

  -- A retry by the current token of a seat it holds (the answer to the
  -- first claim was lost, or the token is being refreshed): the same seat
  -- again, unchanged, with nothing written. The locked read has the row
  -- unless the token was not its own; then read it for the verdict.
  if t.id is null then
    select * into t from waitroom.tickets where id = p_ticket;
  end if;
  select * into r from waitroom.rooms where id = t.room_id;
  v := waitroom._verdict(t, r, v_hash, v_now);
  if v.status in ('active', 'draining') then
    return row(true, 'ok', v.status, v.expires_at, t.holder, t.room_id, t.instance)::waitroom.claim_result;
  end if;
  return row(v.ok, v.code, v.status, v.expires_at, null, null, null)::waitroom.claim_result;
end
$$;
comment on function waitroom.claim(uuid, text, timestamptz) is
  'Turn an admission offer into an active seat for session_seconds, and publish its active event. Idempotent for the ticket''s current token: of any number of calls (concurrent or retried) one makes the seat, and every one answers ok with the same seat (status active or draining, the same expires_at) while it is held; only the first writes anything. Codes: ok, unknown, superseded (an older token of a re-joined ticket), queued, ended, expired, left. ok also carries holder, room_id and instance (what an admission token says).';

-- The heartbeat's one rule, for a ticket and the hash of the token presented
-- for it: heartbeat (the bearer token) and renew_admission (the ticket's
-- current hash, once a signed admission token proved its instance) share it.
create function waitroom._heartbeat(p_ticket uuid, p_token_hash bytea, p_now timestamptz)
returns waitroom.verdict
language plpgsql
as $$
declare
  -- Whose holder's presence counts: a place, an offer, a seat.
  c_present constant text[] := '{queued,admitted,active}';
  t waitroom.tickets;
  r waitroom.rooms;
  v waitroom.verdict;
begin
  select * into t from waitroom.tickets where id = p_ticket;
  select * into r from waitroom.rooms where id = t.room_id;
  v := waitroom._verdict(t, r, p_token_hash, p_now);
  if v.status is null or v.status <> all (c_present) then
    return v;
  end if;
  -- Re-check liveness in the UPDATE itself: a concurrent transition wins
  -- unless it leaves the ticket live (an admission of the queued ticket
  -- while this waited on its row: the presence counts for the offer).
  update waitroom.tickets tk
     set last_seen_at = greatest(tk.last_seen_at, p_now),
         expires_at = case
           when tk.status = 'active' and r.renew_on_heartbeat
             then greatest(tk.expires_at, p_now + make_interval(secs => r.session_seconds))
           else tk.expires_at end
   where tk.id = p_ticket and tk.token_hash = p_token_hash and tk.status = any (c_present)
     and waitroom._effective_status(tk, r, p_now) = tk.status
  returning tk.* into t;
  if not found then
    select * into t from waitroom.tickets where id = p_ticket;
    return waitroom._verdict(t, r, p_token_hash, p_now);
  end if;
  v := waitroom._verdict(t, r, p_token_hash, p_now);
  return row(true, 'ok', v.status, v.expires_at)::waitroom.verdict;
end
$$;
comment on function waitroom._heartbeat(uuid, bytea, timestamptz) is
  'heartbeat for the token whose hash is p_token_hash, at p_now (already checked by the caller''s waitroom._now): refreshes last_seen_at of a live queued, admitted or active ticket and, where the room renews on heartbeat, extends an active seat to p_now + session_seconds. The verdict: ok = recorded.';

create function waitroom.heartbeat(p_ticket uuid, p_token text, p_now timestamptz default null)
returns waitroom.verdict
language sql
as $$ select waitroom._heartbeat(p_ticket, waitroom._hash(p_token), waitroom._now(p_now)) $$;
comment on function waitroom.heartbeat(uuid, text, timestamptz) is
  'The holder is present: refreshes last_seen_at of a queued, admitted or active ticket and, where the room renews on heartbeat, extends an active seat to now + session_seconds. ok = recorded.';

-- POST /v1/tickets/{id}/heartbeat in one round trip: the heartbeat, then the
-- state it left (read in a later statement, so an extended seat shows).
create function waitroom.heartbeat_state(p_ticket uuid, p_token text, p_now timestamptz default null)
returns table (code text, holder text, state waitroom.ticket_state)
language plpgsql
as $$
#variable_conflict use_column
declare
  v waitroom.verdict := waitroom.heartbeat(p_ticket, p_token, p_now);
begin
  return query
  select v.code, t.holder, s.state
    from (select 1) one
    left join waitroom.ticket_states(array[p_ticket], array[p_token], p_now) s on v.ok
    left join waitroom.tickets t on t.id = (s.state).ticket_id;
end
$$;
comment on function waitroom.heartbeat_state(uuid, text, timestamptz) is
  'heartbeat, then the ticket''s holder (what a refreshed admission token says) and its state (a waitroom.ticket_state, as ticket_states shows it): one row whose code is heartbeat''s (ok = recorded); holder and state are null unless ok.';

create function waitroom.leave(p_ticket uuid, p_token text, p_now timestamptz default null)
returns waitroom.verdict
language plpgsql
as $$
declare
  v_now  timestamptz := waitroom._now(p_now);
  v_hash bytea := waitroom._hash(p_token);
  v_from text;
  t waitroom.tickets;
  r waitroom.rooms;
begin
  select * into r from waitroom.rooms where id = (select room_id from waitroom.tickets where id = p_ticket);
  with live as (
    select tk.id, tk.status
      from waitroom.tickets tk
     where tk.id = p_ticket and tk.token_hash = v_hash
       and tk.status in ('queued', 'admitted', 'active', 'draining')
       for update
  )
  update waitroom.tickets tk
     set status = 'left', ended_at = v_now, end_reason = 'left'
    from live
   where tk.id = live.id and waitroom._effective_status(tk, r, v_now) = live.status
  returning live.status into v_from;
  if v_from is null then
    select * into t from waitroom.tickets where id = p_ticket;
    return waitroom._verdict(t, r, v_hash, v_now);
  end if;
  if v_from = 'queued' then
    perform waitroom._tally_dequeued(r.id, 1);
  else
    -- An offer left before it was claimed gives back its stock and shares.
    if v_from = 'admitted' then
      perform waitroom._return_grants(array[p_ticket], 'left', v_now);
    end if;
    perform waitroom._wake(r.id);
  end if;
  perform waitroom._publish_ids(waitroom._log(array[row(r.id, p_ticket, 'left',
    jsonb_build_object('from', v_from))::waitroom.ledger_entry], v_now));
  return row(true, 'ok', 'left', null)::waitroom.verdict;
end
$$;
comment on function waitroom.leave(uuid, text, timestamptz) is
  'Give up a live ticket (queued, admitted, active or draining): its seat is free at once. ok = left now; a second call answers code left.';

create function waitroom.check(p_ticket uuid, p_token text, p_now timestamptz default null)
returns waitroom.verdict
language sql stable
as $$
  select waitroom._verdict(t, r, waitroom._hash(p_token), waitroom._now(p_now))
    from (select 1) one
    left join waitroom.tickets t on t.id = p_ticket
    left join waitroom.rooms r on r.id = t.room_id
$$;
comment on function waitroom.check(uuid, text, timestamptz) is
  'The gate for the protected app: ok only for an active seat. Otherwise code names the reason: unknown (no such ticket or wrong token), superseded, queued, not_claimed, draining, ended, expired, left. Read-only.';

-- Open event streams count as presence; a process reports all of its
-- streams at once instead of one heartbeat each.
create function waitroom.touch(p_tickets uuid[], p_now timestamptz default null)
returns integer
language plpgsql
as $$
declare
  v_now   timestamptz := waitroom._now(p_now);
  v_count integer;
begin
  -- A ticket another transaction holds (an admission, a heartbeat, a sweep) is skipped: waiting
  -- on it would end in lock_timeout and fail the whole batch, every other stream's presence with it,
  -- and the next round, seconds later, records it. Never waiting, two processes cannot deadlock.
  with live as (
    select t.id
      from waitroom.tickets t
      join waitroom.rooms r on r.id = t.room_id
     where t.id = any (p_tickets)
       and t.status in ('queued', 'admitted', 'active')
       and waitroom._effective_status(t, r, v_now) = t.status
       for update of t skip locked
  )
  update waitroom.tickets t
     set last_seen_at = greatest(t.last_seen_at, v_now)
    from live
   where t.id = live.id;
  get diagnostics v_count = row_count;
  return v_count;
end
$$;
comment on function waitroom.touch(uuid[], timestamptz) is
  'Presence for many tickets at once (their holders'' event streams are open): refreshes last_seen_at of live queued, admitted and active tickets, skipping any another transaction holds (the next round records it); never extends a seat. Returns how many were touched.';
