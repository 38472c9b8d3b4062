import type { Sql } from "../../db/client.js";
import * as queue from "../../queue/index.js";
import { historyQuery, room, roomHistory, roomList, roomParams, roomSettings } from "../contracts.js";
import { ApiError } from "../errors.js";
import { callers, defineRoute, type Router } from "../route.js";

/*
 * Rooms, for operators (the admin key): create and configure, watch, pause and resume, delete.
 */

const roomAnswer = { content: { "application/json": { schema: room } } };

export const listRoomsRoute = defineRoute({
  method: "get",
  path: "/v1/rooms",
  summary: "List rooms",
  description: "All rooms with their settings and live numbers.",
  tags: ["rooms"],
  security: callers.admin,
  responses: { 200: { description: "The rooms.", content: { "application/json": { schema: roomList } } } },
  errors: [],
});

export const getRoomRoute = defineRoute({
  method: "get",
  path: "/v1/rooms/{room}",
  summary: "Read a room",
  description: "One room with its settings and live numbers.",
  tags: ["rooms"],
  security: callers.admin,
  request: { params: roomParams },
  responses: { 200: { description: "The room.", ...roomAnswer } },
  errors: ["not_found"],
});

export const putRoomRoute = defineRoute({
  method: "put",
  path: "/v1/rooms/{room}",
  summary: "Create or configure a room",
  description: "Creates the room (capacity required) or changes the settings given; others keep their values.",
  tags: ["rooms"],
  security: callers.admin,
  request: {
    params: roomParams,
    body: { content: { "application/json": { schema: roomSettings } }, required: true },
  },
  responses: {
    200: { description: "The room, changed.", ...roomAnswer },
    201: { description: "The room, created.", ...roomAnswer },
  },
  errors: [],
});

export const deleteRoomRoute = defineRoute({
  method: "delete",
  path: "/v1/rooms/{room}",
  summary: "Delete a room",
  description: "Deletes the room and its tickets; the ledger keeps their events until retention.",
  tags: ["rooms"],
  security: callers.admin,
  request: { params: roomParams },
  responses: { 204: { description: "Deleted." } },
  errors: ["not_found"],
});

export const historyRoute = defineRoute({
  method: "get",
  path: "/v1/rooms/{room}/history",
  summary: "A room minute by minute",
  description: "From the ledger: joined, admitted, left, expired, median and p90 wait, and depth per minute.",
  tags: ["rooms"],
  security: callers.admin,
  request: { params: roomParams, query: historyQuery },
  responses: {
    200: {
      description: "Per-minute buckets, oldest first.",
      content: { "application/json": { schema: roomHistory } },
    },
  },
  errors: ["not_found"],
});

const modeRoute = (action: "pause" | "resume", summary: string, description: string) =>
  defineRoute({
    method: "post",
    path: `/v1/rooms/{room}/${action}`,
    summary,
    description,
    tags: ["rooms"],
    security: callers.admin,
    request: { params: roomParams },
    responses: { 200: { description: "The room.", ...roomAnswer } },
    errors: ["not_found"],
  });

export const pauseRoute = modeRoute("pause", "Pause admission", "Stop admitting; joins are still accepted.");
export const resumeRoute = modeRoute("resume", "Resume admission", "Admit again (mode open).");

export function mountRooms({ mount }: Router, sql: Sql): void {
  const oneRoom = async (id: string) => {
    const [found] = await queue.listRooms(sql, id);
    if (!found) throw new ApiError("not_found", `room '${id}' does not exist`);
    return found;
  };

  mount(listRoomsRoute, async (c) => c.json({ rooms: await queue.listRooms(sql) }, 200));

  mount(getRoomRoute, async (c) => c.json(await oneRoom(c.req.valid("param").room), 200));

  mount(putRoomRoute, async (c) => {
    const { room } = c.req.valid("param");
    const changes = c.req.valid("json");
    const created = await queue.putRoom(sql, room, changes);
    return c.json(await oneRoom(room), created ? 201 : 200);
  });

  mount(deleteRoomRoute, async (c) => {
    await queue.deleteRoom(sql, c.req.valid("param").room);
    return c.body(null, 204);
  });

  mount(historyRoute, async (c) => {
    const { room } = c.req.valid("param");
    const { minutes } = c.req.valid("query");
    const rows = await queue.history(sql, room, minutes);
    return c.json(
      { room_id: room, minutes, buckets: rows.map((row) => ({ ...row, minute: new Date(row.minute).toISOString() })) },
      200,
    );
  });

  for (const [route, mode] of [
    [pauseRoute, "paused"],
    [resumeRoute, "open"],
  ] as const) {
    mount(route, async (c) => {
      const { room } = c.req.valid("param");
      await queue.configureRoom(sql, room, { mode });
      return c.json(await oneRoom(room), 200);
    });
  }
}
