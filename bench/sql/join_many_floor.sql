-- The floor under join_many(100): the rows it writes for 100 anonymous joins of room 'bench' before its
-- opening (the tickets, each with a fresh id, the hash of a fresh token and its drawn place, and their
-- ledger rows), in one plain statement on waitroom's own tables, without join_many's checks, tally or answer.
with ticket as (
  insert into waitroom.tickets (id, room_id, token_hash, seq, queued_at, last_seen_at)
  select m.id, 'bench', waitroom._hash(waitroom._new_token()), waitroom._drawn_seq(r.shuffle_seed, m.id), now(), now()
    from waitroom.rooms r, lateral (select waitroom._new_id() as id from generate_series(1, 100)) m
   where r.id = 'bench'
  returning id
)
insert into waitroom.events (room_id, ticket_id, type, data) select 'bench', id, 'joined', '{"priority": 0}' from ticket;
