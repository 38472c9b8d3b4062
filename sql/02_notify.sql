-- Events reach app processes by NOTIFY on channel waitroom_events. A payload
-- must stay under 8000 bytes, so a message (the JSON text of an event batch)
-- travels as chunks '<first_id>-<last_id>:<index>/<count>:<body>'; the
-- listener (src/events/codec.ts) concatenates the bodies in index order.

-- Byte slices of the UTF-8 text, cut only before a character's first byte:
-- O(length), never a character-by-character scan.
create function waitroom._chunks(p_message text, p_key text, p_max_bytes integer default 7999)
returns setof text
language plpgsql immutable strict
as $$
declare
  v_bytes bytea := convert_to(p_message, 'UTF8');
  v_length integer := octet_length(v_bytes);
  v_digits integer := 1; -- digits reserved for index and count in every header
  v_budget integer;
  v_ends integer[];
  v_start integer;
  v_end integer;
begin
  if position(':' in p_key) > 0 then
    perform waitroom._fail('WR400', format('chunk key %L must not contain ":"', p_key));
  end if;
  -- A longer count shrinks every body, which may lengthen the count again.
  loop
    v_budget := p_max_bytes - octet_length(convert_to(p_key, 'UTF8')) - 3 - 2 * v_digits;
    if v_budget < 4 then
      perform waitroom._fail('WR400', format('p_max_bytes %s leaves fewer than 4 body bytes per chunk', p_max_bytes));
    end if;
    v_ends := '{}';
    v_start := 0;
    loop
      v_end := least(v_start + v_budget, v_length);
      -- Step back off UTF-8 continuation bytes (10xxxxxx); a budget of 4 always keeps one character.
      while v_end < v_length and get_byte(v_bytes, v_end) & 192 = 128 loop
        v_end := v_end - 1;
      end loop;
      v_ends := v_ends || v_end;
      v_start := v_end;
      exit when v_start >= v_length;
    end loop;
    exit when length(cardinality(v_ends)::text) <= v_digits;
    v_digits := v_digits + 1;
  end loop;

  v_start := 0;
  for i in 1 .. cardinality(v_ends) loop
    return next p_key || ':' || i || '/' || cardinality(v_ends) || ':'
             || convert_from(substring(v_bytes from v_start + 1 for v_ends[i] - v_start), 'UTF8');
    v_start := v_ends[i];
  end loop;
end
$$;
comment on function waitroom._chunks(text, text, integer) is
  'NOTIFY payloads ''<key>:<index>/<count>:<body>'' of at most p_max_bytes each whose bodies concatenate to p_message; never splits a character.';

-- Called with a batch of events (rows of waitroom.events as jsonb); delivered at commit.
create function waitroom._publish(p_events jsonb) returns void
language plpgsql
as $$
declare
  v_key text;
  v_chunk text;
begin
  if p_events is null or p_events = '[]' then
    return;
  end if;
  if jsonb_typeof(p_events) <> 'array' then
    perform waitroom._fail('WR400', 'events to publish must be a JSON array');
  end if;
  select min((e->>'id')::bigint) || '-' || max((e->>'id')::bigint)
    into v_key
    from jsonb_array_elements(p_events) e;
  if v_key is null then
    perform waitroom._fail('WR400', 'events to publish must carry ids');
  end if;
  -- Chunks differ by index, so Postgres never collapses two of them.
  for v_chunk in select c from waitroom._chunks(p_events::text, v_key) c loop
    perform pg_notify('waitroom_events', v_chunk);
  end loop;
end
$$;
comment on function waitroom._publish(jsonb) is
  'NOTIFY waitroom_events with the batch of events, in chunks keyed by its lowest and highest event id; nothing for null or [].';
