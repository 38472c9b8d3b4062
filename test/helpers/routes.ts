import type { ErrorCode } from "../../src/http/contracts.js";
import { routes } from "../../src/http/routes/index.js";

/** A route definition as the HTTP tests look at it. */
export type ApiRoute = {
  method: "get" | "post" | "put" | "delete";
  /** OpenAPI style: /v1/rooms/{room}. */
  path: string;
  /** Who may call it, from its security: anyone, the ticket's token, the admin key, or anyone with the server key unlocking more. */
  auth: "none" | "ticket" | "admin" | "server";
  params: boolean;
  body: boolean;
  /** Its success statuses. */
  statuses: number[];
  /** Every error code it documents (x-error-codes). */
  errors: readonly ErrorCode[];
};

export const apiRoutes: ApiRoute[] = routes.map((route) => {
  const schemes = new Set((route.security ?? []).flatMap((requirement) => Object.keys(requirement)));
  return {
    method: route.method as ApiRoute["method"],
    path: route.path,
    auth: schemes.has("adminKey")
      ? "admin"
      : schemes.has("ticketToken")
        ? "ticket"
        : schemes.has("serverKey")
          ? "server"
          : "none",
    params: route.request?.params !== undefined,
    body: route.request?.body !== undefined,
    statuses: Object.keys(route.responses)
      .map(Number)
      .filter((status) => status < 400),
    errors: route["x-error-codes"],
  };
});
