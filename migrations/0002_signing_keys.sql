-- Up Migration

-- Ed25519 keys that sign admission tokens. They live in the database, not in
-- per-replica files, so every app replica signs with the same current key and
-- serves the same JWKS behind a load balancer.

create table waitroom.signing_keys (
  kid         text primary key,
  public_jwk  jsonb not null,
  private_jwk jsonb not null,
  created_at  timestamptz not null default now(),
  retired_at  timestamptz
);

comment on table waitroom.signing_keys is
  'Ed25519 keys for admission tokens (JWTs). One current key (retired_at null) signs; retired keys stay listed in the JWKS for a while so tokens they signed still verify. Managed by the service (src/tokens).';
comment on column waitroom.signing_keys.kid is 'Key id in the JWT header and the JWKS: the RFC 7638 thumbprint of the public key.';
comment on column waitroom.signing_keys.public_jwk is 'Public key as a JWK (kty OKP, crv Ed25519, x), published at /.well-known/jwks.json.';
comment on column waitroom.signing_keys.private_jwk is 'Private key as a JWK (with d). Secret: never published, never logged.';
comment on column waitroom.signing_keys.created_at is 'When the key was generated.';
comment on column waitroom.signing_keys.retired_at is 'When a rotation replaced it; null for the current key. It stops signing at once and stays in the JWKS for a grace period (a day by default).';

-- At most one current key: concurrent first-use and rotations cannot leave two.
create unique index signing_keys_one_current on waitroom.signing_keys ((true)) where retired_at is null;

-- Private keys: no access beyond the owner (the service).
revoke all on waitroom.signing_keys from public;

-- Down Migration
drop table waitroom.signing_keys;
