-- Up Migration

-- Depth counted transactionally (issue 14 item 5): joins count the tickets
-- they queue in their own transaction, so numbers drawn by joins that rolled
-- back, by backends killed mid-join or skipped after a crash count nothing.
alter table waitroom.queue_tally add column enqueued bigint not null default 0;
-- From here on depth is exact: what was queued so far is what is queued now
-- plus what left the queue.
update waitroom.queue_tally q
   set enqueued = (select count(*) from waitroom.tickets t where t.room_id = q.room_id and t.status = 'queued')
                + (select sum(d.dequeued) from waitroom.queue_tally d where d.room_id = q.room_id)
 where q.shard = 0;
comment on table waitroom.queue_tally is
  'Per room and shard, tickets queued (enqueued) and tickets taken out of the queue (dequeued: admission, leave, expiry), both counted in the transactions that do it; depth = sum(enqueued) - sum(dequeued).';
comment on column waitroom.queue_tally.enqueued is 'New tickets queued by joins (counted in the join''s transaction).';
comment on column waitroom.queue_tally.dequeued is 'Queued tickets that left the queue (admitted, left, expired).';

-- Staged rotation and revocation of signing keys (issue 14 item 3). A key is
-- published from created_at, signs from activates_at (once verifiers can
-- have seen it), and loses its private half when a newer key takes over or
-- it is revoked.
alter table waitroom.signing_keys
  add column activates_at timestamptz,
  add column revoked_at timestamptz,
  alter column private_jwk drop not null;
update waitroom.signing_keys set activates_at = created_at;
alter table waitroom.signing_keys alter column activates_at set not null, alter column activates_at set default now();
-- Retired keys never sign again: their private halves are destroyed.
update waitroom.signing_keys set private_jwk = null where retired_at is not null;
-- A current key and a staged one are live at once during a rotation.
drop index waitroom.signing_keys_one_current;
alter table waitroom.signing_keys add constraint signing_keys_private_only_while_live
  check (private_jwk is null or (retired_at is null and revoked_at is null));

comment on table waitroom.signing_keys is
  'Ed25519 keys for admission tokens (JWTs). A key is published in the JWKS from created_at, signs from activates_at (the newest activated live key signs), is retired when a newer key activates (its private half destroyed, its public half listed until every token it signed has expired) or revoked at once (no longer listed, its tokens refused). Reached only through the functions in sql/87_signing_keys.sql.';
comment on column waitroom.signing_keys.private_jwk is 'Private key as a JWK (with d) while the key is live; null (destroyed) once it is retired or revoked. Secret: never published, never logged.';
comment on column waitroom.signing_keys.created_at is 'When the key was generated and published.';
comment on column waitroom.signing_keys.activates_at is 'When the key starts signing: at least the JWKS cache lifetime plus the replicas'' key cache lifetime after created_at for a rotation, so every verifier can know it first.';
comment on column waitroom.signing_keys.retired_at is 'When a newer key took over; null while the key is current or staged. Listed in the JWKS until its last tokens have expired, then deleted.';
comment on column waitroom.signing_keys.revoked_at is 'When an emergency revoke withdrew the key: from then on it is not listed and /v1/check refuses its tokens.';

-- Down Migration
alter table waitroom.signing_keys drop constraint signing_keys_private_only_while_live;
delete from waitroom.signing_keys where private_jwk is null or activates_at > now();
alter table waitroom.signing_keys drop column activates_at, drop column revoked_at, alter column private_jwk set not null;
create unique index signing_keys_one_current on waitroom.signing_keys ((true)) where retired_at is null;
alter table waitroom.queue_tally drop column enqueued;
