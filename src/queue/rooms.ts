import { z } from "zod";
import { int32, text } from "./values.js";

/*
 * The room settings, once for TypeScript: the HTTP API validates PUT /v1/rooms/{room} with roomSettings,
 * documents its answers with shownSettings, and the Room types are inferred from them. The settings
 * themselves are the columns of waitroom.rooms (waitroom._room_settings(); their CHECK constraints are
 * the rules); test/http/contracts.test.ts holds the two lists and their bounds to each other.
 */

/**
 * A room id as the rooms table has it (constraint rooms_id_is_a_slug; create_room checks it first), without
 * anchors, for the patterns that contain one: 1 to 48 characters of a-z, 0-9, _ and -, not starting with _ or -.
 */
export const roomIdPattern = "[a-z0-9][a-z0-9_-]{0,47}";

/** Whether the runtime knows the zone (PostgreSQL, which has the last word, checks it again). */
function knownTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat("en", { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/** The languages the waiting-room page speaks (web/i18n.js has a catalogue for each). */
export const pageLanguages = ["en", "de", "es", "fr", "pt", "ja", "zh", "ar"] as const;

/** Text the page shows with textContent: characters, not markup; `lines` keeps line breaks. */
const pageText = (max: number, lines: boolean) =>
  text(max).refine(
    (value) => !(lines ? /(?!\n)\p{Cc}/u : /\p{Cc}/u).test(value),
    lines ? "must not contain control characters but line breaks" : "must not contain control characters",
  );

/** A URL whose origin goes into the page's CSP: a plain ASCII host, so nothing can be smuggled into the header. */
const pageUrl = (protocol: "https" | "https?", what: string) =>
  z
    .string()
    .max(2048)
    .regex(
      new RegExp(`^${protocol}://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/\\S*)?$`),
      `${what} must be an ${protocol === "https" ? "https" : "http(s)"} URL with a plain ASCII host (punycode for others)`,
    );

/** An origin as browsers write it in Origin: scheme://host[:port], lower case, no path. */
const origin = z
  .string()
  .max(300)
  .regex(
    /^https?:\/\/[a-z0-9.-]+(:\d{1,5})?$/,
    "an origin is scheme://host[:port] in lower case, like https://shop.example",
  );

/** Every setting, in the order the admin API shows them (list_rooms' JSON object has no order). */
export const roomSettings = z.strictObject({
  capacity: int32(0).optional(),
  admit_per_minute: int32(1).nullable().optional(),
  session_seconds: int32(1).optional(),
  grace_seconds: int32(0).optional(),
  claim_seconds: int32(1).optional(),
  idle_seconds: int32(1).optional(),
  renew_on_heartbeat: z.boolean().optional(),
  mode: z.enum(["open", "paused", "passthrough", "closed"]).optional(),
  opens_at: z.iso.datetime({ offset: true }).nullable().optional(),
  shuffle_seed: z
    .int()
    .min(-9_007_199_254_740_991)
    .max(9_007_199_254_740_991)
    .optional()
    .describe("Seed of the opening draw (random unless given); fixed once the room has opened."),
  tick_ms: int32(50, 60_000).optional(),
  retention_seconds: int32(3600).optional(),
  health_url: z
    .url({ protocol: /^https?$/, error: "health_url must be an http(s) URL" })
    .max(2048)
    .nullable()
    .optional()
    .describe("Upstream health check: admission pauses while it does not answer 2xx."),
  max_queued: int32(1)
    .nullable()
    .optional()
    .describe("Most tickets queued at once: a join beyond it is refused with room_full; null: no cap."),
  page_title: pageText(80, false).nullable().optional().describe("The waiting-room page's heading; null: the room id."),
  page_message: pageText(500, true).nullable().optional().describe("A message under the heading; null: none."),
  page_brand_color: z
    .string()
    .regex(/^#[0-9a-fA-F]{6}$/, "page_brand_color must be #rrggbb")
    .nullable()
    .optional()
    .describe("The page's accent colour, #rrggbb; its text is black or white, whichever contrasts more."),
  page_logo_url: pageUrl("https", "page_logo_url")
    .nullable()
    .optional()
    .describe("A logo for the page's header; the page's CSP allows images from its origin only."),
  page_admitted_text: pageText(200, true)
    .nullable()
    .optional()
    .describe("What the admitted screen says; null: the page's default, in the visitor's language."),
  page_help_url: pageUrl("https?", "page_help_url")
    .nullable()
    .optional()
    .describe("A link to the site's status or help page; null: none."),
  page_language: z
    .enum(pageLanguages)
    .nullable()
    .optional()
    .describe("The page's language when Accept-Language names none it speaks; null: en."),
  quota_window_seconds: int32(1)
    .nullable()
    .optional()
    .describe("Rolling window of the per-holder quotas (set with quota_tiers); null: no quotas."),
  quota_tiers: z
    .record(text(64), z.strictObject({ limit: int32(0, 999_999_999), priority: int32(-1000, 1000).optional() }))
    .refine((tiers) => "default" in tiers, 'quota_tiers needs a tier "default" (for joins without a tier)')
    .nullable()
    .optional()
    .describe(
      'Admissions per window by tier, e.g. {"default": {"limit": 3}, "pro": {"limit": 10, "priority": 5}}; needs "default".',
    ),
  pool_per_day: int32(0)
    .nullable()
    .optional()
    .describe("Most admissions per day (in time_zone), shared by all tiers; null: no pool."),
  time_zone: text(64)
    .refine(knownTimeZone, "time_zone must be an IANA time zone, e.g. Europe/Paris")
    .optional()
    .describe("IANA time zone whose days are the pool's periods (default UTC)."),
  target_url: z
    .url({ protocol: /^https?$/, error: "target_url must be an http(s) URL" })
    .max(2048)
    .refine((url) => !url.includes("#"), "target_url must have no fragment (the handover may add one)")
    .refine((url) => !/^https?:\/\/[^/?]*@/.test(url), "target_url must have no user info")
    .nullable()
    .optional()
    .describe("The protected site: where the page's Continue leads once the seat is claimed."),
  return_origins: z
    .array(origin)
    .max(32)
    .optional()
    .describe("Origins besides target_url's that the page may send a visitor back to (the URL the gate sent it from)."),
  handover: z
    .enum(["cookie", "fragment"])
    .describe(
      "How the admission reaches the protected site: cookie (the gate's cookie) or fragment (#waitroom_token=… on the URL).",
    )
    .optional(),
  auto_continue: z
    .boolean()
    .optional()
    .describe("The page continues by itself once the seat is claimed (default true)."),
  proof_of_work_bits: int32(1, 24)
    .nullable()
    .optional()
    .describe(
      "Anonymous joins must solve a challenge: a SHA-256 with this many leading zero bits (each bit doubles the work); null: none.",
    ),
});

/** Settings to create a room with or to change (PUT /v1/rooms/{room}, configure_room): any subset. */
export type RoomSettings = z.infer<typeof roomSettings>;

/** The settings a room shows (waitroom._shown_settings): each with its value, all but shuffle_seed (hidden until the draw). */
export const shownSettings = roomSettings.omit({ shuffle_seed: true }).required();
export type ShownSettings = z.infer<typeof shownSettings>;

/** What the waiting-room page shows of its room (waitroom.show_room_page): the page_ settings; null: its default. */
export type RoomPageSettings = {
  [K in keyof ShownSettings as K extends `page_${string}` ? K : never]: ShownSettings[K];
};

/** A room's live numbers (list_rooms' stats, from the view waitroom.room_stats). */
export const roomStats = z.object({
  queued: z.int(),
  admitted: z.int(),
  active: z.int(),
  draining: z.int(),
  free_seats: z.int(),
  admitted_last_minute: z.int(),
  oldest_wait_seconds: z.number().nullable(),
  median_wait_seconds: z.number().nullable(),
  health: z.enum(["healthy", "unhealthy", "unknown"]).nullable(),
  stock_available: z.int().nullable(),
  stock_outstanding: z.int(),
  sold_out: z.boolean(),
  pool_left: z.int().nullable(),
});
export type RoomStats = z.infer<typeof roomStats>;

export type Room = { id: string } & ShownSettings & { created_at: Date; updated_at: Date };
export type RoomWithStats = Room & { stats: RoomStats };

/** A row of waitroom.list_rooms (type waitroom.room_listing): the settings come as one JSON object (waitroom._shown_settings). */
export const roomListingRow = z.object({
  id: z.string(),
  settings: z.record(z.string(), z.unknown()),
  created_at: z.date(),
  updated_at: z.date(),
  stats: roomStats,
});
export type RoomListing = z.infer<typeof roomListingRow>;

const shownKeys = Object.keys(shownSettings.shape);

/** A room as the admin API answers it: its settings in roomSettings' order, among its own columns. */
export function roomOf({ id, settings, created_at, updated_at, stats }: RoomListing): RoomWithStats {
  const shown = Object.fromEntries(shownKeys.map((key) => [key, settings[key]])) as ShownSettings;
  // JSON from SQL writes a time as PostgreSQL does (…+00:00); the API as JavaScript does (….sssZ), as for created_at.
  if (shown.opens_at !== null) shown.opens_at = new Date(shown.opens_at).toISOString();
  return { id, ...shown, created_at, updated_at, stats };
}
