import type { SettleOutcome, StockLevel } from "../queue/index.js";
import { type Output, serviceApi, UsageError } from "./rooms.js";

/*
 * `waitroom stock …`: a room's stock and the settlement of admissions, over the server-key
 * routes of a running service (WAITROOM_URL, WAITROOM_SERVER_KEY): what the protected app's
 * backend does, by hand.
 */

export const stockUsage = `usage: waitroom stock <show | add | settle> …

  stock show <room>                          units available, reserved, sold out
  stock add <room> <units>                   add units (reopens a sold-out room)
  stock settle <ticket> consumed|returned    the admission's unit was sold, or its work failed

  WAITROOM_URL (default http://127.0.0.1:$PORT, PORT default 8080) and
  WAITROOM_SERVER_KEY say which service to talk to.`;

const describeStock = (level: StockLevel) =>
  `${level.room_id}: ${level.sold_out ? "sold out" : `${level.stock_available ?? "no stock"} available`}, ` +
  `${level.stock_outstanding} reserved\n`;

export async function stockCommand(args: readonly string[], env: NodeJS.ProcessEnv, out: Output): Promise<void> {
  const [action, target, value] = args;
  if (!target) throw new UsageError(action ? `stock ${action} needs a room or ticket` : "stock needs a command");
  const api = serviceApi(env, "WAITROOM_SERVER_KEY", "for stock operations");
  const path = (kind: "rooms" | "tickets") => `/v1/${kind}/${encodeURIComponent(target)}`;
  switch (action) {
    case "show":
      out.write(describeStock((await api("GET", `${path("rooms")}/stock`)) as StockLevel));
      return;
    case "add": {
      if (!value || !/^\d+$/.test(value)) throw new UsageError("stock add needs a number of units");
      out.write(describeStock((await api("POST", `${path("rooms")}/stock`, { units: Number(value) })) as StockLevel));
      return;
    }
    case "settle": {
      if (value !== "consumed" && value !== "returned") throw new UsageError("stock settle needs consumed or returned");
      const outcome: SettleOutcome = value;
      const settled = (await api("POST", `${path("tickets")}/settle`, { outcome })) as { room_id: string };
      out.write(`${target}: ${outcome} (room ${settled.room_id})\n`);
      return;
    }
    default:
      throw new UsageError(`unknown stock command '${action}'`);
  }
}
