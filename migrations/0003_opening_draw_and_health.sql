-- Up Migration

-- Two additions to rooms (and one to tickets): the opening draw and the
-- upstream health gate.

-- Scheduled openings draw lots: the tickets that joined before opens_at are
-- put in a random order, determined by a seed stored with the room, by the
-- first admission at or after opens_at (waitroom._draw). Anyone can recompute
-- the order from the seed (waitroom.shuffle_audit).

-- A JSON-safe integer (|seed| < 2^53) from the server's strong RNG, so that it
-- survives any JSON client unchanged: 53 random bits are plenty for a draw.
alter table waitroom.rooms
  add column shuffle_seed bigint not null
    default ((('x' || substr(md5(gen_random_uuid()::text), 1, 14))::bit(56)::bigint) >> 3),
  add column shuffled_at timestamptz,
  add constraint rooms_shuffle_seed_json_safe
    check (shuffle_seed between -9007199254740991 and 9007199254740991);

comment on column waitroom.rooms.shuffle_seed is
  'Seed of the opening draw: random unless given at creation; the order of the tickets that joined before opens_at is md5(seed || '':'' || ticket id).';
comment on column waitroom.rooms.shuffled_at is
  'When the opening draw was made (the first admission at or after opens_at); null until then. A room draws once.';

-- Rooms that already opened made no draw and must not make one now, long
-- after their opening.
update waitroom.rooms set shuffled_at = now() where opens_at <= now();

alter table waitroom.tickets add column draw_rank integer;

comment on column waitroom.tickets.draw_rank is
  'Place in the room''s opening draw (1 = first); null for tickets that were not in it.';

-- The upstream health gate (optional per room): the scheduler probes
-- health_url before admitting and records the answer with
-- waitroom.set_health; admit admits nobody unless the last answer was
-- healthy (fail closed: unknown and unreachable count as unhealthy).
alter table waitroom.rooms
  add column health_url text,
  add column healthy boolean,
  add column health_detail text,
  add column health_checked_at timestamptz,
  add constraint rooms_health_url_http
    check (health_url is null or (health_url ~ '^https?://[^/?#]+' and length(health_url) <= 2048));

comment on column waitroom.rooms.health_url is
  'Optional upstream health check: an http(s) URL the scheduler GETs (2 s timeout, at most once a second) before admitting; a 2xx answer is healthy. Null = no gate.';
comment on column waitroom.rooms.healthy is
  'The last health answer: true healthy, false unhealthy or unreachable, null not probed yet (since health_url was set). Admission needs true when health_url is set.';
comment on column waitroom.rooms.health_detail is 'What the last probe saw, e.g. HTTP 503, timeout, connection refused.';
comment on column waitroom.rooms.health_checked_at is 'When the last probe answer was recorded.';

-- Down Migration
alter table waitroom.rooms
  drop constraint rooms_health_url_http,
  drop column health_checked_at,
  drop column health_detail,
  drop column healthy,
  drop column health_url;
alter table waitroom.tickets drop column draw_rank;
alter table waitroom.rooms
  drop constraint rooms_shuffle_seed_json_safe,
  drop column shuffled_at,
  drop column shuffle_seed;
