-- Where an admitted visitor goes next (issue 15): the room's target, or the
-- protected URL the gate sent the visitor from, if its origin is allowed.

-- An http(s) URL's origin as browsers write it: lower case, default port dropped; null if not one.
create function waitroom._origin_of(p_url text) returns text
language sql immutable
as $$
  select case
           when m is null then null
           when (m[1] = 'http' and m[3] = ':80') or (m[1] = 'https' and m[3] = ':443') then m[1] || '://' || m[2]
           else m[1] || '://' || m[2] || coalesce(m[3], '')
         end
    from (select regexp_match(lower(p_url), '^(https?)://([a-z0-9.-]+)(:[0-9]{1,5})?(?:[/?]|$)') as m) s
$$;
comment on function waitroom._origin_of(text) is
  'The origin (scheme://host[:port], lower case, default port omitted) of an absolute http(s) URL; null for anything else (userinfo, other schemes, relative URLs).';

create function waitroom.continue_to(p_room text, p_return text default null) returns waitroom.continuation
language plpgsql stable
as $$
declare
  r waitroom.rooms := waitroom._room(p_room);
  v_origin text;
begin
  if p_return is null then
    return (r.target_url, r.handover, r.auto_continue)::waitroom.continuation;
  end if;
  v_origin := waitroom._origin_of(p_return);
  -- A fragment is the page's to add (the handover's), whitespace is never in a URL the gate made.
  if v_origin is null or p_return ~ '[#\s]' or length(p_return) > 4096
     or not (v_origin is not distinct from waitroom._origin_of(r.target_url) or v_origin = any (r.return_origins)) then
    perform waitroom._fail('WRRET', format('room %L may not send visitors to %s: its origin is not the target''s nor in return_origins',
      p_room, left(p_return, 200)));
  end if;
  return (p_return, r.handover, r.auto_continue)::waitroom.continuation;
end
$$;
comment on function waitroom.continue_to(text, text) is
  'Where the page sends an admitted visitor of p_room: p_return (the URL the gate sent the visitor from) when its origin is target_url''s or one of return_origins, else WRRET; without p_return, target_url (null when unset). With the room''s handover and auto_continue. WR404 for an unknown room.';
