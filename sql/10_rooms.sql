-- Rooms: create, configure, delete.

-- Settings are the rooms columns an operator may change, read from the table:
-- a column a migration adds is a setting unless it is named below. What is
-- named is the room's state, which its verbs keep (identity, the queue's
-- sequence, timestamps, the draw, the health gate, stock). It stays a list
-- because nothing in the table tells state from setting; a state column left
-- out of it fails test/http/contracts.test.ts (zod's settings are exactly
-- these names), so none becomes a setting unnoticed.
create function waitroom._room_settings() returns text[]
language sql stable
as $$
  select array_agg(attname::text order by attnum)
    from pg_attribute
   where attrelid = 'waitroom.rooms'::regclass and attnum > 0 and not attisdropped
     and attname not in ('id', 'queue_seq', 'created_at', 'updated_at', 'shuffled_at',
                         'healthy', 'health_detail', 'health_checked_at',
                         'stock_available', 'stock_outstanding', 'sold_out_at')
$$;
comment on function waitroom._room_settings() is 'Names of the room columns that create_room/configure_room accept as settings.';

-- A room's settings as operators read them (list_rooms, room_created): each named by
-- _room_settings, so a new column is shown without a list to extend here;
-- all but the seed of the opening draw (see configure_room).
create function waitroom._shown_settings(r waitroom.rooms) returns jsonb
language sql stable
as $$
  select jsonb_object_agg(s.name, j.room -> s.name)
    from (select to_jsonb(r) as room) j
   cross join unnest(waitroom._room_settings()) s(name)
   where s.name <> 'shuffle_seed'
$$;
comment on function waitroom._shown_settings(waitroom.rooms) is
  'The settings of room r as a JSON object, as list_rooms shows them and room_created records them: every one of _room_settings() but shuffle_seed, hidden until the draw.';

-- Merge settings into a room row; unknown keys and bad types are WR400.
create function waitroom._apply_settings(r waitroom.rooms, p_settings jsonb) returns waitroom.rooms
language plpgsql stable
as $$
declare
  v_unknown text;
begin
  if p_settings is null or jsonb_typeof(p_settings) <> 'object' then
    perform waitroom._fail('WR400', 'settings must be a JSON object');
  end if;
  select string_agg(format('%I', k), ', ') into v_unknown
    from jsonb_object_keys(p_settings) k
   where k <> all (waitroom._room_settings());
  if v_unknown is not null then
    perform waitroom._fail('WR400', format('unknown setting %s (known: %s)',
      v_unknown, array_to_string(waitroom._room_settings(), ', ')));
  end if;
  begin
    return jsonb_populate_record(r, p_settings);
  exception when data_exception then
    perform waitroom._fail('WR400', format('invalid settings: %s', sqlerrm));
  end;
end
$$;
comment on function waitroom._apply_settings(waitroom.rooms, jsonb) is 'Room row with p_settings applied; WR400 on unknown keys or values of the wrong type.';

-- Write a room row back: the settings (_room_settings, the one list of them)
-- and updated_at. Constraint violations become WR400 naming the rule.
create function waitroom._save_room(r waitroom.rooms) returns void
language plpgsql
as $$
declare
  v_columns text := (select string_agg(format('%I', s), ', ') from unnest(waitroom._room_settings() || 'updated_at'::text) s);
  v_error text := waitroom._stock_settings_error(r);
begin
  if v_error is not null then
    perform waitroom._fail('WR400', format('invalid settings for room %L: %s', r.id, v_error));
  end if;
  execute format('update waitroom.rooms set (%1$s) = (select %1$s from (select ($1).*) given) where id = ($1).id',
                 v_columns)
    using r;
exception
  when check_violation then
    perform waitroom._fail('WR400', format('invalid settings for room %L: %s', r.id, sqlerrm));
  when not_null_violation then
    perform waitroom._fail('WR400', format('invalid settings for room %L: %s', r.id, sqlerrm));
end
$$;
comment on function waitroom._save_room(waitroom.rooms) is 'Update the room row from a record; WR400 when a constraint rejects it.';

create function waitroom.create_room(
  p_room     text,
  p_capacity integer,
  p_settings jsonb default '{}',
  p_now      timestamptz default null
) returns waitroom.rooms
language plpgsql
as $$
declare
  v_now timestamptz := waitroom._now(p_now);
  v_seq text;
  r waitroom.rooms;
begin
  if p_capacity is null then
    perform waitroom._fail('WR400', 'capacity is required');
  end if;
  if p_room is null or p_room !~ '^[a-z0-9][a-z0-9_-]{0,47}$' then
    perform waitroom._fail('WR400', 'room id must be 1 to 48 characters of a-z, 0-9, _ and -, starting with a letter or digit');
  end if;
  -- A colon never occurs in a room id nor in our table names: no room's sequence can clash with them.
  v_seq := format('waitroom.%I', 'queue:' || p_room);
  begin
    execute format('create sequence %s', v_seq);
  -- Two creations racing: the loser sees the sequence (duplicate_table) or, when both
  -- CREATE SEQUENCEs overlapped, a unique violation on the catalog.
  exception when duplicate_table or unique_violation then
    perform waitroom._fail('WR409', format('room %L already exists', p_room));
  end;
  begin
    insert into waitroom.rooms (id, capacity, queue_seq, created_at, updated_at)
    values (p_room, p_capacity, v_seq::regclass, v_now, v_now)
    returning * into r;
  exception
    when check_violation or not_null_violation then
      perform waitroom._fail('WR400', format('invalid room: %s', sqlerrm));
  end;
  r := waitroom._apply_settings(r, p_settings);
  perform waitroom._save_room(r);
  insert into waitroom.queue_tally (room_id, shard) select p_room, s from generate_series(0, 15) s;
  -- The settings it was made with; the seed stays out of the ledger until the draw reveals it (see configure_room).
  perform waitroom._log(array[row(p_room, null, 'room_created', waitroom._shown_settings(r))::waitroom.ledger_entry],
    v_now);
  perform waitroom._wake(p_room);
  return r;
end
$$;
comment on function waitroom.create_room(text, integer, jsonb, timestamptz) is
  'Create a room: id is a slug (a-z, 0-9, _ and -), capacity the maximum occupied seats, p_settings any other room columns. WR409 if it exists, WR400 if invalid.';

create function waitroom.configure_room(
  p_room     text,
  p_settings jsonb,
  p_now      timestamptz default null
) returns waitroom.rooms
language plpgsql
as $$
declare
  v_now timestamptz := waitroom._now(p_now);
  v_old waitroom.rooms;
  r waitroom.rooms;
  v_changes jsonb;
  v_new_health_url boolean;
begin
  perform waitroom._lock_room(p_room);
  v_old := waitroom._room(p_room);
  r := waitroom._apply_settings(v_old, p_settings);
  select coalesce(jsonb_object_agg(n.key, n.value), '{}') into v_changes
    from jsonb_each(to_jsonb(r)) n
   where n.value is distinct from to_jsonb(v_old) -> n.key;
  if v_changes ? 'shuffle_seed' then
    if v_old.shuffled_at is not null then
      perform waitroom._fail('WR400', format('room %L made its opening draw at %s: its shuffle_seed is final',
        p_room, v_old.shuffled_at));
    end if;
    -- Streams show every change; a seed known before the draw would let
    -- someone holding several tickets keep the one drawn first. The
    -- room_shuffled event reveals it once the draw is made.
    v_changes := jsonb_set(v_changes, '{shuffle_seed}', '"hidden until the draw"');
  end if;
  -- Nor do streams learn the upstream's (possibly internal) health URL: only
  -- whether the room has a health gate.
  v_new_health_url := v_changes ? 'health_url';
  if v_new_health_url then
    v_changes := v_changes - 'health_url' || jsonb_build_object('health_gate', r.health_url is not null);
  end if;
  if v_changes <> '{}' then
    r.updated_at := v_now;
    perform waitroom._save_room(r);
    -- A new health URL has not been probed: unknown, so admission waits for it.
    if v_new_health_url then
      update waitroom.rooms set healthy = null, health_detail = null, health_checked_at = null where id = p_room;
      r.healthy := null;
      r.health_detail := null;
      r.health_checked_at := null;
    end if;
    perform waitroom._publish_ids(waitroom._log(
      array[row(p_room, null, 'room_configured', v_changes)::waitroom.ledger_entry], v_now));
    perform waitroom._wake(p_room);
  end if;
  return r;
end
$$;
comment on function waitroom.configure_room(text, jsonb, timestamptz) is
  'Change room settings (any subset, e.g. {"capacity": 50, "mode": "paused"}); serialised with admissions, effective at once. A lower capacity evicts nobody: admission waits until occupancy falls below it.';

create function waitroom.delete_room(p_room text, p_now timestamptz default null) returns waitroom.rooms
language plpgsql
as $$
declare
  v_now timestamptz := waitroom._now(p_now);
  r waitroom.rooms;
begin
  perform waitroom._lock_room(p_room);
  r := waitroom._room(p_room);
  delete from waitroom.tickets where room_id = p_room;
  delete from waitroom.queue_tally where room_id = p_room;
  delete from waitroom.grants where room_id = p_room;
  delete from waitroom.rooms where id = p_room;
  execute format('drop sequence %s', r.queue_seq);
  perform waitroom._publish_ids(waitroom._log(array[row(p_room, null, 'room_deleted', null)::waitroom.ledger_entry], v_now));
  return r;
end
$$;
comment on function waitroom.delete_room(text, timestamptz) is
  'Delete a room and all its tickets; the ledger keeps its events until retention. WR404 if unknown.';

-- PUT /v1/rooms/{room}: one verb that creates the room or, when it exists
-- (or a concurrent call created it first), changes it.
create function waitroom.put_room(p_room text, p_settings jsonb, p_now timestamptz default null) returns boolean
language plpgsql
as $$
declare
  v_capacity integer;
begin
  if exists (select from waitroom.rooms where id = p_room) then
    perform waitroom.configure_room(p_room, p_settings, p_now);
    return false;
  end if;
  begin
    v_capacity := (p_settings ->> 'capacity')::integer;
  exception when data_exception then
    perform waitroom._fail('WR400', format('invalid settings: capacity: %s', sqlerrm));
  end;
  if v_capacity is null then
    perform waitroom._fail('WR400', 'capacity is required to create a room');
  end if;
  begin
    perform waitroom.create_room(p_room, v_capacity, p_settings - 'capacity', p_now);
    return true;
  exception when sqlstate 'WR409' then
    -- Created by a concurrent call meanwhile: ours is a change.
    perform waitroom.configure_room(p_room, p_settings, p_now);
    return false;
  end;
end
$$;
comment on function waitroom.put_room(text, jsonb, timestamptz) is
  'Create the room with p_settings (capacity required) or, if it exists, configure it with them. Returns true when it created the room. Errors as create_room and configure_room.';

-- GET /rooms/{room}: the page needs the room's page settings on every load,
-- without the room_stats that list_rooms computes.
create function waitroom.show_room_page(p_room text) returns setof waitroom.room_page
language sql stable
as $$
  -- The page's settings are the ones named page_…: a new one reaches the page without a list to extend.
  select r.id, (select jsonb_object_agg(e.key, e.value) from jsonb_each(to_jsonb(r)) e where e.key like 'page\_%')
    from waitroom.rooms r
   where r.id = p_room
$$;
comment on function waitroom.show_room_page(text) is
  'The page settings of room p_room (its settings named page_…, as a JSON object; no row if unknown): what its waiting-room page shows.';
