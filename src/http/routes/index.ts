import type { Route } from "../route.js";
import { checkRoute, jwksRoute, listKeysRoute, revokeRoute, rotateRoute } from "./checks.js";
import { endHandoverRoute, gateRoute, handoverRoute } from "./gate.js";
import { healthRoute, metricsRoute, openApiRoute, readyRoute } from "./ops.js";
import {
  deleteRoomRoute,
  getRoomRoute,
  historyRoute,
  listRoomsRoute,
  pauseRoute,
  putRoomRoute,
  resumeRoute,
  roomsStreamRoute,
} from "./rooms.js";
import { addStockRoute, getStockRoute, settleRoute } from "./stock.js";
import { claimRoute, eventsRoute, heartbeatRoute, joinRoute, leaveRoute, ticketRoute } from "./tickets.js";

/** Every route definition of the API, by concern: what /openapi.json describes. */
export const routes: readonly Route[] = [
  joinRoute,
  ticketRoute,
  eventsRoute,
  claimRoute,
  heartbeatRoute,
  leaveRoute,
  settleRoute,
  checkRoute,
  jwksRoute,
  listKeysRoute,
  rotateRoute,
  revokeRoute,
  handoverRoute,
  endHandoverRoute,
  gateRoute,
  listRoomsRoute,
  getRoomRoute,
  putRoomRoute,
  deleteRoomRoute,
  historyRoute,
  pauseRoute,
  resumeRoute,
  roomsStreamRoute,
  addStockRoute,
  getStockRoute,
  healthRoute,
  readyRoute,
  metricsRoute,
  openApiRoute,
];
