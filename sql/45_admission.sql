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
