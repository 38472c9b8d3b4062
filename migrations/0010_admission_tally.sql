-- Up Migration

-- Admissions counted once per batch (issue 11, admit of 10,000 in one call).
-- What reads admissions by time (the rate limit in admit, the ETA in
-- positions, admitted_last_minute in room_stats) needs how many were
-- admitted at each instant, not the rows themselves. It read them through
-- the partial index events_admissions, one entry per admitted ticket: an
-- admission of 10,000 wrote 10,000 index entries for readers that only sum
-- them. The tally writes one row per admission instead; the ledger keeps its
-- one row per ticket (replay, audit, waits).
create table waitroom.admission_tally (
  room_id     text not null,
  admitted_at timestamptz not null,
  admitted    integer not null,
  primary key (room_id, admitted_at),
  constraint admission_tally_admitted_positive check (admitted > 0)
);

comment on table waitroom.admission_tally is
  'Per room and admission instant, how many tickets were admitted: one row per admission (admissions at the same instant share it), written by admit in its transaction. Agrees with the ledger''s admitted rows (same room, created_at = admitted_at); purged with them by retention.';
comment on column waitroom.admission_tally.room_id is 'The room (no foreign key, as the ledger: the rows outlive a deleted room until retention).';
comment on column waitroom.admission_tally.admitted_at is 'The instant of the admission: the created_at of its ledger rows.';
comment on column waitroom.admission_tally.admitted is 'How many tickets were admitted at that instant (ledger rows of type admitted).';

insert into waitroom.admission_tally (room_id, admitted_at, admitted)
select e.room_id, e.created_at, count(*)
  from waitroom.events e
 where e.type = 'admitted'
 group by e.room_id, e.created_at;

drop index waitroom.events_admissions;

-- Down Migration
create index events_admissions on waitroom.events (room_id, created_at)
  where type = 'admitted';
drop table waitroom.admission_tally;
