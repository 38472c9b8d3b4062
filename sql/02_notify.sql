-- Events reach app processes by NOTIFY on channel waitroom_events. A payload
-- must stay under 8000 bytes, so a message travels as chunks
-- '<first_id>-<last_id>:<index>/<count>:<body>'; the listener
-- (src/events/codec.ts) concatenates the bodies in index order. A message is
-- either the ledger rows themselves (a JSON array, waitroom._publish) or a
-- compact notice naming them by id ranges (a JSON object with a version,
-- waitroom._publish_ids), which listeners read with waitroom.notice_events.

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
  'NOTIFY waitroom_events with the batch of events in full, in chunks keyed by its lowest and highest event id; nothing for null or []. Verbs that wrote many rows use waitroom._publish_ids.';

-- Any role that can connect can NOTIFY the channel, so a notice is a hint:
-- it only makes a listener read real ledger rows, and no notice, forged or
-- not, makes it read more than this many (waitroom.notice_events refuses).
create function waitroom._notice_max_rows() returns integer
language sql immutable parallel safe
as $$ select 20000 $$;
comment on function waitroom._notice_max_rows() is
  'Most ledger ids one compact notice may name (the sum of its ranges'' lengths): what bounds the read a notice, forged or not, asks of every listener.';

-- The ledger rows with these ids, written by the calling transaction, are
-- announced at commit in one of two forms:
--  * in full (waitroom._publish), when their JSON fits in one payload: a
--    listener then needs no query. Measured in docs/design-notes.md: about 30
--    admissions fit, and a full message of that size costs a listener less
--    than the round trip a notice costs it;
--  * otherwise as compact notices '<first>-<last>:1/1:{"v": 1, "ranges":
--    [[first, last], ...]}', one payload each: the runs of consecutive ids,
--    at most waitroom._notice_max_rows() ids and 200 runs per notice (200 runs
--    of 16-digit ids are under 8000 bytes). Ids of one INSERT are consecutive
--    unless concurrent inserts took numbers in between, so an admission of
--    10,000 is usually one run: about 50 bytes instead of 3 MB.
-- One compact notice: the id ranges of ledger rows, keyed '<first>-<last>'.
create function waitroom._publish_notice(p_first bigint, p_last bigint, p_ranges jsonb) returns void
language plpgsql
as $$
begin
  perform pg_notify('waitroom_events', c)
     from waitroom._chunks(jsonb_build_object('v', 1, 'ranges', p_ranges)::text, p_first || '-' || p_last) c;
end
$$;
comment on function waitroom._publish_notice(bigint, bigint, jsonb) is
  'NOTIFY waitroom_events with one compact notice naming the ledger ids in p_ranges ([[first, last], ...], p_first..p_last overall); the one place the notice''s form is written.';

create function waitroom._publish_ids(p_ids bigint[]) returns void
language plpgsql
as $$
declare
  -- One payload holds about 30 admissions: a bigger batch would be
  -- serialised only to find that it does not fit.
  c_full_max_rows constant integer := 64;
  c_max_runs constant integer := 200;
  v_rows jsonb;
  v_notice record;
begin
  if coalesce(cardinality(p_ids), 0) = 0 then
    return;
  end if;
  if cardinality(p_ids) <= c_full_max_rows then
    select jsonb_agg(to_jsonb(e) order by e.id) into v_rows
      from waitroom.events e
     where e.id = any (p_ids);
    -- The key '<first>-<last>' and the header ':1/1:' take at most 38 bytes.
    if octet_length(v_rows::text) <= 7999 - 38 then
      perform waitroom._publish(v_rows);
      return;
    end if;
  end if;
  -- The usual big batch, the ids of one INSERT, is one run: announced without sorting them.
  if cardinality(p_ids) <= waitroom._notice_max_rows()
     and (select bool_and(u.id = p_ids[1] + u.i - 1) from unnest(p_ids) with ordinality as u(id, i)) then
    perform waitroom._publish_notice(p_ids[1], p_ids[cardinality(p_ids)],
                                     jsonb_build_array(jsonb_build_array(p_ids[1], p_ids[cardinality(p_ids)])));
    return;
  end if;
  for v_notice in
    with ids as (
      select u.id, row_number() over (order by u.id) - 1 as i
        from (select distinct id from unnest(p_ids) as u(id)) u
    ), runs as (
      -- Within a part, id - i is constant along a run of consecutive ids.
      select i / waitroom._notice_max_rows() as part, min(id) as first_id, max(id) as last_id
        from ids
       group by i / waitroom._notice_max_rows(), id - i
    ), numbered as (
      select r.*, (row_number() over (partition by r.part order by r.first_id) - 1) / c_max_runs as piece
        from runs r
    )
    select min(n.first_id) as first_id, max(n.last_id) as last_id,
           jsonb_agg(jsonb_build_array(n.first_id, n.last_id) order by n.first_id) as ranges
      from numbered n
     group by n.part, n.piece
     order by 1
  loop
    perform waitroom._publish_notice(v_notice.first_id, v_notice.last_id, v_notice.ranges);
  end loop;
end
$$;
comment on function waitroom._publish_ids(bigint[]) is
  'NOTIFY waitroom_events with the ledger rows of these ids (written by this transaction): in full when they fit in one payload, else as compact notices of id ranges (at most waitroom._notice_max_rows() ids each) that listeners read with waitroom.notice_events; nothing for null or {}.';
