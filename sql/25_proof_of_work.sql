-- Proof of work for anonymous joins: what the HTTP layer needs from the
-- database to hand out and verify challenges. The verification itself is
-- in the process (src/http/proof-of-work.ts): a join's check costs no round
-- trip; join_many compares what a proof showed with the room's setting.

create function waitroom.proof_of_work_secret() returns bytea
language sql stable
as $$
  select s.secret from waitroom.proof_of_work_secret s
$$;
comment on function waitroom.proof_of_work_secret() is
  'The HMAC key every replica signs and verifies proof-of-work challenges with (read once per process). Secret: never log it.';

create function waitroom.proof_of_work_bits(p_room text) returns integer
language plpgsql stable
as $$
declare
  v_bits integer;
begin
  select r.proof_of_work_bits into v_bits from waitroom.rooms r where r.id = p_room;
  if not found then
    perform waitroom._fail('WR404', format('room %L does not exist', p_room));
  end if;
  return v_bits;
end
$$;
comment on function waitroom.proof_of_work_bits(text) is
  'The leading zero bits of SHA-256 a room asks anonymous HTTP joins to show (null: none): what a challenge for it asks. WR404 unknown room.';
