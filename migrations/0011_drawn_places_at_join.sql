-- Up Migration

-- The opening draw is taken at join time (issue 11, the draw at scale): a
-- ticket that joins before its room's opening stores its drawn place as its
-- seq, in a band below every number of the room's sequence (see
-- waitroom._drawn_seq), so the draw itself rewrites nobody, and a ticket is
-- known to have been in the draw by its seq alone. Tickets drawn before this
-- migration keep their order: their places (draw_rank) become seqs at the
-- bottom of that band, still ahead of everyone who joined after the opening.
update waitroom.tickets
   set seq = draw_rank - 4611686018427387905
 where draw_rank is not null;

alter table waitroom.tickets drop column draw_rank;

comment on column waitroom.tickets.seq is
  'Queue order within a priority band (lower first). A ticket that joined before its room''s opening draw holds its drawn place, below zero (waitroom._drawn_seq); every other the next number of the room''s queue_seq.';

-- Down Migration
alter table waitroom.tickets add column draw_rank integer;
comment on column waitroom.tickets.draw_rank is
  'Place in the room''s opening draw (1 = first); null for tickets that were not in it.';
update waitroom.tickets t
   set draw_rank = d.place
  from (select id, row_number() over (partition by room_id order by seq, id) as place
          from waitroom.tickets where seq < 0) d
 where t.id = d.id;
comment on column waitroom.tickets.seq is 'Queue order within a priority band (lower first), from the room''s queue_seq.';
