-- Up Migration

-- Where admitted visitors go (issue 15): the protected site's address, the
-- origins the waiting-room page may send a visitor back to (so the room is
-- no open redirect), how the admission is handed over, and whether the page
-- continues by itself once the seat is claimed.
alter table waitroom.rooms
  add column target_url text,
  add column return_origins text[] not null default '{}',
  add column handover text not null default 'cookie',
  add column auto_continue boolean not null default true,
  add constraint rooms_target_url_http check (
    target_url is null or (length(target_url) <= 2048 and target_url ~ '^https?://[^/?#\s@]+(/[^#\s]*)?$')),
  -- Origins as browsers write them (lower case, no path, no trailing slash), space-joined for one pattern.
  add constraint rooms_return_origins_origins check (
    cardinality(return_origins) <= 32 and array_position(return_origins, null) is null
    and array_to_string(return_origins, ' ') ~ '^(https?://[a-z0-9.-]+(:[0-9]{1,5})?( |$))*$'),
  add constraint rooms_handover_known check (handover in ('cookie', 'fragment'));

comment on column waitroom.rooms.target_url is
  'The protected site: where the page''s Continue leads once the seat is claimed (absolute http(s) URL, no fragment); null: the page has nowhere to send the visitor. Its origin may always be returned to.';
comment on column waitroom.rooms.return_origins is
  'Origins (scheme://host[:port]) besides target_url''s that the page may send a visitor back to (the return URL the gate gave it); any other return URL is refused.';
comment on column waitroom.rooms.handover is
  'How the admission reaches the protected site: cookie (the gate''s cookie, set by the handover) or fragment (the token appended to the URL as #waitroom_token=…, for apps that verify it themselves).';
comment on column waitroom.rooms.auto_continue is
  'The page goes on to the target (or return URL) by itself once the seat is claimed; false: the visitor clicks Continue.';

-- Down Migration
alter table waitroom.rooms
  drop constraint rooms_handover_known,
  drop constraint rooms_return_origins_origins,
  drop constraint rooms_target_url_http,
  drop column auto_continue,
  drop column handover,
  drop column return_origins,
  drop column target_url;
