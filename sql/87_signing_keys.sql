-- Signing keys: the only way the service reaches waitroom.signing_keys.
--
-- The service signs admission tokens itself (Ed25519 in the process), so it
-- must hold the current private key: current_signing_key hands out that one
-- key and nothing else. Retired private keys never leave the database again,
-- and nobody but the owner reads or writes the table.

create function waitroom.published_keys(p_retired_ttl_seconds integer)
returns table (kid text, public_jwk jsonb, "current" boolean)
language sql stable
as $$
  select k.kid, k.public_jwk, k.retired_at is null
    from waitroom.signing_keys k
   where k.retired_at is null or k.retired_at > now() - make_interval(secs => p_retired_ttl_seconds)
   order by k.retired_at desc nulls first, k.created_at desc
$$;
comment on function waitroom.published_keys(integer) is
  'The public halves of the keys the JWKS lists: the current key first, then keys retired less than p_retired_ttl_seconds ago, newest first. Never a private key.';

create function waitroom.current_signing_key()
returns table (kid text, private_jwk jsonb)
language sql stable
as $$
  select k.kid, k.private_jwk from waitroom.signing_keys k where k.retired_at is null
$$;
comment on function waitroom.current_signing_key() is
  'The current signing key''s kid and private JWK (no row before the first key is added): what signing an admission token needs, and the only private key anyone but the owner can obtain.';

create function waitroom.add_signing_key(
  p_kid         text,
  p_public_jwk  jsonb,
  p_private_jwk jsonb,
  p_rotate      boolean default false
) returns text
language plpgsql
as $$
declare
  v_current text;
begin
  if p_kid is null or p_kid !~ '^[A-Za-z0-9_-]{43}$' then
    perform waitroom._fail('WR400', 'p_kid must be an RFC 7638 SHA-256 thumbprint (43 base64url characters)');
  end if;
  if p_public_jwk is null or p_public_jwk ->> 'kty' is distinct from 'OKP' or p_public_jwk ->> 'crv' is distinct from 'Ed25519'
     or p_public_jwk ? 'd' or p_public_jwk ->> 'x' is null then
    perform waitroom._fail('WR400', 'p_public_jwk must be the public Ed25519 JWK (kty OKP, crv Ed25519, x; no d)');
  end if;
  if p_private_jwk is null or p_private_jwk ->> 'd' is null
     or p_private_jwk - 'd' is distinct from p_public_jwk - 'kid' - 'alg' - 'use' then
    perform waitroom._fail('WR400', 'p_private_jwk must be the private half of p_public_jwk (the same kty, crv and x, with d)');
  end if;
  -- Serialises first use and rotations across processes (2001 is the per-room lock).
  perform pg_advisory_xact_lock(2002, 0);
  if p_rotate then
    update waitroom.signing_keys set retired_at = now() where retired_at is null;
  else
    select k.kid into v_current from waitroom.signing_keys k where k.retired_at is null;
    if found then
      return v_current;
    end if;
  end if;
  insert into waitroom.signing_keys (kid, public_jwk, private_jwk) values (p_kid, p_public_jwk, p_private_jwk);
  return p_kid;
end
$$;
comment on function waitroom.add_signing_key(text, jsonb, jsonb, boolean) is
  'Make a new key current. p_rotate: retire the current key first (a rotation; it stays listed in the JWKS for a while). Without p_rotate only when there is no current key (first use): otherwise nothing changes and the current key''s kid is returned. Returns the current kid. WR400 for a malformed key.';
