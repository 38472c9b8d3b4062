import type { Sql } from "../../db/client.js";
import * as queue from "../../queue/index.js";
import { addStockRequest, roomParams, settleRequest, settleResponse, stockLevel, ticketParams } from "../contracts.js";
import { ApiError } from "../errors.js";
import { callers, defineRoute, type Router } from "../route.js";

/*
 * Stock and settlements, for the protected app's backend (the server key): add units, read the
 * stock, and report how an admission ended (consumed, or returned when the work or payment failed).
 */

const stockAnswer = { content: { "application/json": { schema: stockLevel } } };

export const addStockRoute = defineRoute({
  method: "post",
  path: "/v1/rooms/{room}/stock",
  summary: "Add stock",
  description:
    "Adds units to the room's stock (the first call gives the room a stock: from then on every offer reserves " +
    "a unit). Reopens a sold-out room to joins.",
  tags: ["stock"],
  security: callers.server,
  request: {
    params: roomParams,
    body: { content: { "application/json": { schema: addStockRequest } }, required: true },
  },
  responses: { 200: { description: "The stock after the addition.", ...stockAnswer } },
  errors: ["not_found"],
});

export const getStockRoute = defineRoute({
  method: "get",
  path: "/v1/rooms/{room}/stock",
  summary: "Read the stock",
  description: "Units available, units reserved by offers and not settled, and whether the room is sold out.",
  tags: ["stock"],
  security: callers.server,
  request: { params: roomParams },
  responses: { 200: { description: "The stock.", ...stockAnswer } },
  errors: ["not_found"],
});

export const settleRoute = defineRoute({
  method: "post",
  path: "/v1/tickets/{id}/settle",
  summary: "Settle an admission",
  description:
    "How the admission ended: `consumed` (the unit of stock is sold; the holder's shares stay used) or " +
    "`returned` (the work or payment failed: the unit and the quota and pool shares come back and go to the " +
    "next in line). Once per ticket.",
  tags: ["stock"],
  security: callers.server,
  request: {
    params: ticketParams,
    body: { content: { "application/json": { schema: settleRequest } }, required: true },
  },
  responses: { 200: { description: "Recorded.", content: { "application/json": { schema: settleResponse } } } },
  errors: ["not_granted", "already_settled"],
});

export function mountStock({ mount }: Router, { sql }: { sql: Sql }): void {
  mount(addStockRoute, async (c) =>
    c.json(await queue.addStock(sql, c.req.valid("param").room, c.req.valid("json").units), 200),
  );

  mount(getStockRoute, async (c) => c.json(await queue.stock(sql, c.req.valid("param").room), 200));

  mount(settleRoute, async (c) => {
    const { id } = c.req.valid("param");
    const settled = await queue.settle(sql, id, c.req.valid("json").outcome);
    if (settled.code === "not_granted" || !settled.room_id) {
      throw new ApiError("not_granted", "no admission of this ticket took stock or a share");
    }
    if (!settled.ok || !settled.outcome) {
      throw new ApiError(
        "already_settled",
        `the admission was settled before: ${settled.code.replace("already_", "")}`,
      );
    }
    return c.json(
      { ticket_id: id, room_id: settled.room_id, outcome: settled.outcome, stock_available: settled.stock_available },
      200,
    );
  });
}
