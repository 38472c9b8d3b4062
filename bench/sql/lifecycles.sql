-- The lifecycles benchmark's driver (bench/lifecycles.ts): p_count complete
-- ticket lifecycles in one transaction, stamped p_now. Join and admission are
-- the real verbs (join_many, admit); claim and leave write, for the whole
-- batch at once, the rows waitroom.claim and waitroom.leave write one ticket
-- at a time (an active seat, then left; an 'active' and a 'left' ledger row;
-- one wake of the room, as a leave of a seat does). Set-based, so that what
-- is measured is the maintenance, not a round trip per ticket.
create function public.bench_lifecycles(p_room text, p_count integer, p_now timestamptz) returns integer
language plpgsql
as $$
declare
  v_ids uuid[];
  v_session_end timestamptz := p_now + interval '10 minutes';
begin
  select array_agg(j.ticket_id) into v_ids from waitroom.join_many(p_room, p_count, null, null, p_now) j;
  perform count(*) from waitroom.admit(p_room, p_count, p_now);
  update waitroom.tickets t
     set status = 'active', claimed_at = p_now, last_seen_at = p_now, expires_at = v_session_end
   where t.id = any (v_ids) and t.status = 'admitted';
  perform waitroom._log(array(
    select row(p_room, u.id, 'active', jsonb_build_object('expires_at', v_session_end))::waitroom.ledger_entry
      from unnest(v_ids) u(id)), p_now);
  update waitroom.tickets t
     set status = 'left', ended_at = p_now, end_reason = 'left'
   where t.id = any (v_ids) and t.status = 'active';
  perform waitroom._log(array(
    select row(p_room, u.id, 'left', '{"from": "active"}')::waitroom.ledger_entry from unnest(v_ids) u(id)), p_now);
  perform waitroom._wake(p_room);
  return p_count;
end
$$;
