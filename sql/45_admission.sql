-- check_admission: the gate for a signed admission token (POST /v1/check).

-- The JWT's signature already proved which ticket and instance it was issued
-- for, so no bearer token is needed; what is left is revocation: a re-join
-- rotated the instance (superseded), or the seat left, lapsed or ended.
create function waitroom.check_admission(p_ticket uuid, p_instance integer, p_now timestamptz default null)
returns waitroom.verdict
language sql stable
as $$
  -- The ticket's own hash stands in for the bearer token only when the
  -- instance matches; a null one (no ticket, null p_instance) answers unknown.
  select case
    when t.instance <> p_instance then row(false, 'superseded', null, null)::waitroom.verdict
    else waitroom._verdict(t, r, case when t.instance = p_instance then t.token_hash end, waitroom._now(p_now))
  end
    from (select 1) one
    left join waitroom.tickets t on t.id = p_ticket
    left join waitroom.rooms r on r.id = t.room_id
$$;
comment on function waitroom.check_admission(uuid, integer, timestamptz) is
  'The gate for a verified admission token (ticket id and instance from its claims): ok only for an active seat. Otherwise code names the reason: unknown (no such ticket), superseded (a re-join issued a newer instance), queued, not_claimed, draining, ended, expired, left. Read-only.';
