-- Signing keys: the only way the service reaches waitroom.signing_keys.
--
-- The service signs admission tokens itself (Ed25519 in the process), so it
-- must hold the current private key: current_signing_key hands out that one
-- key and nothing else. Retired and revoked keys lose their private halves
-- in the database, and nobody but the owner reads or writes the table.
--
-- A key's life: staged (published in the JWKS, not signing: verifiers learn
-- it first), current (the newest live key whose activates_at has come),
-- retired (a newer key took over: private half destroyed, public half
-- listed until its last token has expired, then deleted) or revoked (an
-- emergency: no longer listed, its tokens refused by check_admission at once).

create function waitroom._signing_kid() returns text
language sql stable
as $$
  select k.kid
    from waitroom.signing_keys k
   where k.retired_at is null and k.revoked_at is null and k.activates_at <= now()
   order by k.activates_at desc, k.created_at desc
   limit 1
$$;
comment on function waitroom._signing_kid() is
  'The kid of the key that signs now: the newest live (neither retired nor revoked) key whose activates_at has come; null before the first key.';

create function waitroom._signing_key_row(k waitroom.signing_keys, p_current text) returns waitroom.signing_key
language sql stable
as $$
  select row(k.kid,
             case when k.revoked_at is not null then 'revoked'
                  when k.kid = p_current then 'current'
                  when k.retired_at is not null or k.activates_at <= now() then 'retired'
                  else 'staged' end,
             k.created_at, k.activates_at, k.retired_at, k.revoked_at)::waitroom.signing_key
$$;
comment on function waitroom._signing_key_row(waitroom.signing_keys, text) is
  'A signing_keys row as operators see it (waitroom.signing_key), p_current being the signing kid.';

create function waitroom.published_keys(p_retired_ttl_seconds integer)
returns table (kid text, public_jwk jsonb, "current" boolean)
language sql stable
as $$
  select k.kid, k.public_jwk, k.kid is not distinct from c.kid
    from waitroom.signing_keys k
    left join (select waitroom._signing_kid() as kid) c on true
   where k.revoked_at is null
     and (k.retired_at is null or k.retired_at > now() - make_interval(secs => p_retired_ttl_seconds))
   order by k.kid is not distinct from c.kid desc, k.activates_at desc, k.created_at desc
$$;
comment on function waitroom.published_keys(integer) is
  'The public halves of the keys the JWKS lists: the current key first, then the staged next key and keys retired less than p_retired_ttl_seconds ago, newest first. Never a revoked key, never a private key.';

create function waitroom.current_signing_key()
returns table (kid text, private_jwk jsonb)
language sql stable
as $$
  select k.kid, k.private_jwk from waitroom.signing_keys k where k.kid = waitroom._signing_kid()
$$;
comment on function waitroom.current_signing_key() is
  'The current signing key''s kid and private JWK (no row before the first key is added): what signing an admission token needs, and the only private key anyone but the owner can obtain. A staged key is not handed out before its activates_at.';

create function waitroom.add_signing_key(
  p_kid           text,
  p_public_jwk    jsonb,
  p_private_jwk   jsonb,
  p_rotate        boolean default false,
  p_stage_seconds integer default 0
) returns waitroom.signing_key
language plpgsql
as $$
declare
  k waitroom.signing_keys;
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
  if p_stage_seconds is null or p_stage_seconds not between 0 and 86400 then
    perform waitroom._fail('WR400', 'p_stage_seconds must be between 0 and 86400');
  end if;
  -- Serialises first use and rotations across processes (2001 is the per-room lock).
  perform pg_advisory_xact_lock(2002, 0);
  if p_rotate then
    -- One rotation at a time: a key already staged is the next one.
    select * into k from waitroom.signing_keys s
     where s.retired_at is null and s.revoked_at is null and s.activates_at > now()
     order by s.activates_at desc
     limit 1;
  else
    -- First use: only when nothing signs (an existing current key is kept). By the wall clock, not now():
    -- a caller that waited on the lock began before the winner's key activated, and now() is that start.
    select * into k from waitroom.signing_keys s
     where s.retired_at is null and s.revoked_at is null and s.activates_at <= clock_timestamp()
     order by s.activates_at desc, s.created_at desc
     limit 1;
  end if;
  if not found then
    insert into waitroom.signing_keys (kid, public_jwk, private_jwk, activates_at)
    values (p_kid, p_public_jwk, p_private_jwk,
            now() + make_interval(secs => case when p_rotate then p_stage_seconds else 0 end))
    returning * into k;
  end if;
  return waitroom._signing_key_row(k, waitroom._signing_kid());
end
$$;
comment on function waitroom.add_signing_key(text, jsonb, jsonb, boolean, integer) is
  'Add a key. p_rotate: stage it as the next key, published now and signing p_stage_seconds (0 to 86400) from now (the JWKS cache lifetime plus the replicas'' key cache lifetime, so verifiers know it before any token it signs exists); when a key is already staged, nothing changes and that key is returned. Without p_rotate (first use): a key that signs at once, only when no key signs; otherwise nothing changes and the current key is returned. Returns the key (waitroom.signing_key). WR400 for a malformed key or p_stage_seconds.';

create function waitroom.revoke_signing_key(p_kid text) returns waitroom.signing_key
language plpgsql
as $$
declare
  k waitroom.signing_keys;
begin
  perform pg_advisory_xact_lock(2002, 0);
  update waitroom.signing_keys s
     set revoked_at = coalesce(s.revoked_at, now()), private_jwk = null
   where s.kid = p_kid
  returning * into k;
  if not found then
    perform waitroom._fail('WR404', format('signing key %L does not exist', p_kid));
  end if;
  -- Without a current key the staged one signs at once (its public half is
  -- already published); with neither, the next signature makes a new key.
  if waitroom._signing_kid() is null then
    update waitroom.signing_keys s
       set activates_at = now()
     where s.kid = (select n.kid from waitroom.signing_keys n
                     where n.retired_at is null and n.revoked_at is null
                     order by n.activates_at limit 1);
  end if;
  return waitroom._signing_key_row(k, waitroom._signing_kid());
end
$$;
comment on function waitroom.revoke_signing_key(text) is
  'Emergency revoke: from now on the key is not listed in the JWKS and check_admission refuses every token it signed; its private half is destroyed. If it was the current key, a staged key signs at once (or, with none, the next signature creates a key). Revoking a revoked key changes nothing. Returns the key; WR404 for an unknown kid.';

create function waitroom.retire_signing_keys(p_retired_ttl_seconds integer) returns integer
language plpgsql
as $$
declare
  v_current text := waitroom._signing_kid();
  v_since   timestamptz;
  v_retired integer;
  v_dropped integer;
begin
  if p_retired_ttl_seconds is null or p_retired_ttl_seconds < 0 then
    perform waitroom._fail('WR400', 'p_retired_ttl_seconds must be 0 or more');
  end if;
  select k.activates_at into v_since from waitroom.signing_keys k where k.kid = v_current;
  -- Keys a newer key has taken over from sign no more: destroy their private halves.
  update waitroom.signing_keys k
     set retired_at = v_since, private_jwk = null
   where k.retired_at is null and k.revoked_at is null and k.kid <> v_current and k.activates_at <= now();
  get diagnostics v_retired = row_count;
  -- Every token they signed has expired: the public halves go too.
  delete from waitroom.signing_keys k
   where coalesce(k.revoked_at, k.retired_at) <= now() - make_interval(secs => p_retired_ttl_seconds);
  get diagnostics v_dropped = row_count;
  return v_retired + v_dropped;
end
$$;
comment on function waitroom.retire_signing_keys(integer) is
  'Key upkeep (the service runs it whenever it reloads its keys): keys replaced by a newer current key are retired as of its activates_at and their private halves destroyed; retired and revoked keys older than p_retired_ttl_seconds (the longest admission token lifetime plus the replicas'' key cache lifetime) are deleted. Returns how many keys it retired or deleted.';

create function waitroom.list_signing_keys() returns setof waitroom.signing_key
language sql stable
as $$
  select waitroom._signing_key_row(k, c.kid)
    from waitroom.signing_keys k
    left join (select waitroom._signing_kid() as kid) c on true
   order by k.activates_at desc, k.created_at desc
$$;
comment on function waitroom.list_signing_keys() is
  'Every key still kept, newest first, with its state (staged, current, retired, revoked) and times; never a private half. For the CLI and the admin API.';
