-- The floor under admit: the rows an admission of $2 tickets of room $1 writes (each ticket picked in queue
-- order and offered its seat, and its ledger row with the data admit gives it), in one plain statement on
-- waitroom's own tables, without admit's lock, checks, tallies or notice.
with picked as (
  select t.id
    from waitroom.tickets t
   where t.room_id = $1 and t.status = 'queued'
   order by t.priority desc, t.seq
   limit $2
     for update skip locked
), done as (
  update waitroom.tickets t
     set status = 'admitted', admitted_at = now(), claim_deadline = now() + interval '60 seconds'
    from picked
   where t.id = picked.id
  returning t.id, t.priority, t.seq, t.queued_at
)
insert into waitroom.events (room_id, ticket_id, type, data, created_at)
select $1, d.id, 'admitted',
       jsonb_build_object('claim_deadline', to_jsonb(now() + interval '60 seconds'),
                          'waited_ms', greatest((extract(epoch from now() - d.queued_at) * 1000)::bigint, 0)),
       now()
  from done d
 order by d.priority desc, d.seq;
