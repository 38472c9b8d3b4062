/*
 * The waitroom client SDK: join a room, follow the ticket's event stream
 * (reconnecting and resuming by itself), claim the seat, heartbeat, leave.
 * Browsers and Node 20 alike: it uses only fetch, streams, TextDecoder and
 * AbortController (and WebCrypto to verify admission tokens), and imports
 * nothing. See docs/sdk.md.
 */
export {
  type ClientOptions,
  createClient,
  type JoinOptions,
  type ServerCall,
  Ticket,
  type WaitroomClient,
} from "./client.js";
export { WaitroomError } from "./errors.js";
export {
  admissionToken,
  admit,
  type ExpressRequestLike,
  type ExpressResponseLike,
  expressAdmission,
  type HonoContextLike,
  honoAdmission,
  type MiddlewareOptions,
  type NodeRequestLike,
  type NodeResponseLike,
  nodeAdmission,
  type Refusal,
} from "./middleware.js";
export { type SseHandlers, type SseMessage, SseParser } from "./sse.js";
export type { SubscribeEnd, SubscribeOptions } from "./stream.js";
export type * from "./types.js";
export {
  AdmissionError,
  type AdmissionFailure,
  type AdmissionVerifier,
  createVerifier,
  type VerifiedAdmission,
  type VerifierOptions,
} from "./verify.js";
