/*
 * The handover to the protected site. After each claim and heartbeat the page posts the fresh admission
 * token; the service checks the seat, sets the gate's admission cookie (a room whose handover is cookie:
 * first-party, since the gate's proxy serves this page on the protected site under /.waitroom/) and answers
 * where to continue: the URL the gate sent the visitor from (?return=…) if the room allows its origin,
 * else the room's target. A return URL the room refuses is dropped, never followed.
 */

const given = new URLSearchParams(location.search).get("return");
let returnUrl = given || undefined;

/** The gate sent the visitor here from a protected URL (the page goes back there once admitted). */
export const arrivedFromGate = returnUrl !== undefined;

const handoverPath = (base, room) => `${base}/v1/rooms/${encodeURIComponent(room)}/handover`;

/** {continue_url, handover, auto_continue, admission_expires_at}, or null if the seat was refused. Throws offline. */
export async function handOver(base, room, admissionToken) {
  const post = () =>
    fetch(handoverPath(base, room), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ admission_token: admissionToken, ...(returnUrl ? { return: returnUrl } : {}) }),
      cache: "no-store",
    });
  let response = await post();
  if (response.status === 400 && returnUrl) {
    const answer = await response.json().catch(() => null);
    if (answer?.error?.code !== "return_not_allowed") return null;
    returnUrl = undefined;
    response = await post();
  }
  return response.ok ? response.json() : null;
}

/** The seat was given up: the gate refuses the next request at once. */
export function endHandover(base, room) {
  return fetch(handoverPath(base, room), { method: "DELETE", keepalive: true }).catch(() => {});
}
