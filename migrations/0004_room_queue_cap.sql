-- Up Migration

-- A cap on a room's queue (issue 13): join refuses a new ticket (WRFUL, HTTP
-- room_full) while the room already queues max_queued. Null: no cap.
alter table waitroom.rooms
  add column max_queued integer,
  add constraint rooms_max_queued_positive check (max_queued is null or max_queued > 0);

comment on column waitroom.rooms.max_queued is
  'Most tickets queued at once: a join that would queue more is refused (WRFUL); re-joins of a live holder are not. Null = no cap.';

-- Down Migration
alter table waitroom.rooms
  drop constraint rooms_max_queued_positive,
  drop column max_queued;
