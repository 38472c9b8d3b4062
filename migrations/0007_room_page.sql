-- Up Migration

-- The waiting-room page a room's visitors see, made the site's own (issue 15):
-- text, brand colour, logo, help link and default language. Text only (the
-- page sets it with textContent, never as HTML); null: the page's default.
alter table waitroom.rooms
  add column page_title text,
  add column page_message text,
  add column page_brand_color text,
  add column page_logo_url text,
  add column page_admitted_text text,
  add column page_help_url text,
  add column page_language text,
  add constraint rooms_page_title_text
    check (page_title is null or (length(page_title) between 1 and 80 and page_title !~ '[\x01-\x1f\x7f-\x9f]')),
  add constraint rooms_page_message_text
    check (page_message is null or (length(page_message) between 1 and 500 and page_message !~ '[\x01-\x09\x0b-\x1f\x7f-\x9f]')),
  add constraint rooms_page_admitted_text_text
    check (page_admitted_text is null
           or (length(page_admitted_text) between 1 and 200 and page_admitted_text !~ '[\x01-\x09\x0b-\x1f\x7f-\x9f]')),
  add constraint rooms_page_brand_color_hex check (page_brand_color is null or page_brand_color ~ '^#[0-9a-fA-F]{6}$'),
  add constraint rooms_page_logo_url_https
    check (page_logo_url is null or (page_logo_url ~ '^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/\S*)?$' and length(page_logo_url) <= 2048)),
  add constraint rooms_page_help_url_http
    check (page_help_url is null or (page_help_url ~ '^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/\S*)?$' and length(page_help_url) <= 2048)),
  add constraint rooms_page_language_known
    check (page_language is null or page_language in ('en', 'de', 'es', 'fr', 'pt', 'ja', 'zh', 'ar'));

comment on column waitroom.rooms.page_title is
  'The page''s heading (1 to 80 characters, no control characters); null: the room id.';
comment on column waitroom.rooms.page_message is
  'A message under the heading (1 to 500 characters; line breaks kept, no other control characters); null: none.';
comment on column waitroom.rooms.page_brand_color is
  'Brand colour of the page as #rrggbb (accents, the Continue button; its text is black or white, whichever contrasts more); null: the page''s blue.';
comment on column waitroom.rooms.page_logo_url is
  'An https URL of a logo shown in the page''s header (the page''s CSP allows images from that origin only, so the host is plain ASCII: letters, digits, dots and hyphens, punycode for others); null: no logo.';
comment on column waitroom.rooms.page_admitted_text is
  'What the admitted screen says under "You''re in" (1 to 200 characters); null: the page''s default, in the visitor''s language.';
comment on column waitroom.rooms.page_help_url is
  'An http(s) link to the site''s status or help page, shown on the page; null: no link.';
comment on column waitroom.rooms.page_language is
  'The page''s language when the visitor''s Accept-Language names none the page speaks (en, de, es, fr, pt, ja, zh, ar); null: en.';

-- Down Migration
alter table waitroom.rooms
  drop constraint rooms_page_title_text,
  drop constraint rooms_page_message_text,
  drop constraint rooms_page_admitted_text_text,
  drop constraint rooms_page_brand_color_hex,
  drop constraint rooms_page_logo_url_https,
  drop constraint rooms_page_help_url_http,
  drop constraint rooms_page_language_known,
  drop column page_title,
  drop column page_message,
  drop column page_brand_color,
  drop column page_logo_url,
  drop column page_admitted_text,
  drop column page_help_url,
  drop column page_language;
