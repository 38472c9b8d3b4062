-- check_admission: the gate for a signed admission token (POST /v1/check).

-- The JWT's signature already proved which ticket and instance it was issued
-- for, so no bearer token is needed; what is left is revocation: a re-join
-- rotated the instance (superseded), the seat left, lapsed or ended, or the
-- key that signed it was revoked (seen here at once, on every replica).
create function waitroom.check_admission(p_ticket uuid, p_instance integer, p_kid text, p_now timestamptz default null)
returns waitroom.verdict
language plpgsql stable
as $$
declare
  -- First: a p_now the caller may not pass is refused whatever the answer.
  v_now timestamptz := waitroom._now(p_now);
  t waitroom.tickets;
  r waitroom.rooms;
begin
  if not exists (select from waitroom.signing_keys k where k.kid = p_kid and k.revoked_at is null) then
    return row(false, 'key_revoked', null, null)::waitroom.verdict;
  end if;
  select * into t from waitroom.tickets where id = p_ticket;
  if t.instance <> p_instance then
    return row(false, 'superseded', null, null)::waitroom.verdict;
  end if;
  select * into r from waitroom.rooms where id = t.room_id;
  -- The ticket's own hash stands in for the bearer token only when the
  -- instance matches; a null one (no ticket, null p_instance) answers unknown.
  return waitroom._verdict(t, r, case when t.instance = p_instance then t.token_hash end, v_now);
end
$$;
comment on function waitroom.check_admission(uuid, integer, text, timestamptz) is
  'The gate for a verified admission token (ticket id and instance from its claims, p_kid from its header): ok only for an active seat. Otherwise code names the reason: key_revoked (the key that signed it was revoked, or is no longer kept), unknown (no such ticket), superseded (a re-join issued a newer instance), queued, not_claimed, draining, ended, expired, left. Read-only.';

-- The gate's renewal of the admission cookie (GET /v1/gate, once a token has
-- spent half its life): check_admission's verdict, then, for a live seat, a
-- heartbeat for the ticket's current token, so the visitor's requests to the
-- site count as presence and, where the room renews on heartbeat, extend the
-- seat exactly as the waiting-room page's heartbeats do.
create function waitroom.renew_admission(p_ticket uuid, p_instance integer, p_kid text, p_now timestamptz default null)
returns waitroom.claim_result
language plpgsql
as $$
declare
  -- First: a p_now the caller may not pass is refused whatever the answer.
  v_now timestamptz := waitroom._now(p_now);
  -- p_now, not v_now: the service passes none, and a v_now here would be a pinned clock to check_admission.
  v waitroom.verdict := waitroom.check_admission(p_ticket, p_instance, p_kid, p_now);
  t waitroom.tickets;
begin
  if not v.ok then
    return row(v.ok, v.code, v.status, v.expires_at, null, null, null)::waitroom.claim_result;
  end if;
  -- The hash of the instance the token names: a re-join since rotated both, and then the
  -- heartbeat finds no such token (unknown), as it finds a leave since (left).
  select * into t from waitroom.tickets where id = p_ticket and instance = p_instance;
  v := waitroom._heartbeat(p_ticket, t.token_hash, v_now);
  if not v.ok then
    return row(false, v.code, v.status, v.expires_at, null, null, null)::waitroom.claim_result;
  end if;
  return row(true, 'ok', v.status, v.expires_at, t.holder, t.room_id, t.instance)::waitroom.claim_result;
end
$$;
comment on function waitroom.renew_admission(uuid, integer, text, timestamptz) is
  'Renewal of a verified admission token (ticket id and instance from its claims, p_kid from its header) by the gate: check_admission''s verdict and, for an active seat, a heartbeat (last_seen_at refreshed; with renew_on_heartbeat the seat extended to now + session_seconds). ok with the seat''s expires_at and what a fresh admission token carries (holder, room_id, instance); otherwise check_admission''s code (key_revoked, superseded, left, ended, draining…) and nulls.';
