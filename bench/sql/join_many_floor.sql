-- The floor under join_many(100): the rows it writes for 100 anonymous joins (the tickets, each with a fresh
-- id and the hash of a fresh token, and their ledger rows), in one plain statement on waitroom's own tables,
-- without join_many's checks, draw, tally or answer.
with ticket as (
  insert into waitroom.tickets (id, room_id, token_hash, seq, queued_at, last_seen_at)
  select waitroom._new_id(), 'bench', waitroom._hash(waitroom._new_token()), nextval('waitroom."queue:bench"'), now(), now()
    from generate_series(1, 100)
  returning id
)
insert into waitroom.events (room_id, ticket_id, type, data) select 'bench', id, 'joined', '{"priority": 0}' from ticket;
