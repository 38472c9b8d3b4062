-- Baseline: one durable single-row INSERT into a table with a primary key.
insert into raw_insert (room_id, payload) values ('bench', md5(random()::text));
