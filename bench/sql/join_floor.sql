-- The floor under join: the two rows a join writes (its ticket and the ticket's ledger row), in one plain
-- statement, without waitroom.join's checks of the room, token or holder.
with ticket as (
  insert into waitroom.tickets (id, room_id, token_hash, seq, queued_at, last_seen_at)
  values (waitroom._new_id(), 'bench', sha256(convert_to(md5(random()::text), 'UTF8')), nextval('waitroom."queue:bench"'), now(), now())
  returning id
)
insert into waitroom.events (room_id, ticket_id, type, data) select 'bench', id, 'joined', '{"priority": 0}' from ticket;
