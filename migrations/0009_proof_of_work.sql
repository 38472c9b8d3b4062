-- Up Migration

-- Proof of work for anonymous joins (issue 13 item 5). A room may ask every
-- anonymous HTTP join to show a SHA-256 with this many leading zero bits,
-- found for a challenge the service signed; null: it asks for none.
alter table waitroom.rooms
  add column proof_of_work_bits integer,
  add constraint rooms_proof_of_work_bits_range check (proof_of_work_bits is null or proof_of_work_bits between 1 and 24);

comment on column waitroom.rooms.proof_of_work_bits is
  'Leading zero bits of SHA-256 an anonymous HTTP join must show for a challenge the service signed (1 to 24: each bit doubles the work); null = no proof of work. Server-key and SQL joins are exempt.';

-- The key every replica signs and verifies challenges with: one row, made
-- here, read once by each replica through waitroom.proof_of_work_secret().
create table waitroom.proof_of_work_secret (
  id         boolean primary key default true check (id),
  secret     bytea not null check (length(secret) >= 32),
  created_at timestamptz not null default now()
);
insert into waitroom.proof_of_work_secret (secret)
select uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid());

comment on table waitroom.proof_of_work_secret is
  'The HMAC key of proof-of-work challenges (one row): every replica signs and verifies with it. Secret: reached only through waitroom.proof_of_work_secret(), never logged.';
comment on column waitroom.proof_of_work_secret.id is 'Always true: the table holds one row.';
comment on column waitroom.proof_of_work_secret.secret is 'The HMAC-SHA256 key (366 random bits from three v4 UUIDs).';
comment on column waitroom.proof_of_work_secret.created_at is 'When the key was made (a migration; replace the row and restart the replicas to change it).';

revoke all on waitroom.proof_of_work_secret from public;

-- Down Migration
drop table waitroom.proof_of_work_secret;
alter table waitroom.rooms
  drop constraint rooms_proof_of_work_bits_range,
  drop column proof_of_work_bits;
