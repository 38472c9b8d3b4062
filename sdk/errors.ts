import type { ErrorCode } from "./types.js";

/** An answer of the API that is not a success: status, code and message of its error envelope. */
export class WaitroomError extends Error {
  override readonly name = "WaitroomError";
  readonly status: number;
  readonly code: ErrorCode;

  constructor(status: number, code: ErrorCode, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** The error of a failed response: the envelope when there is one, else what a proxy or gateway said. */
export async function errorFrom(response: Response): Promise<WaitroomError> {
  const text = await response.text().catch(() => "");
  try {
    const { error } = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
    if (typeof error?.code === "string" && typeof error.message === "string") {
      return new WaitroomError(response.status, error.code as ErrorCode, error.message);
    }
  } catch {
    // not JSON: fall through
  }
  const detail = text.trim().slice(0, 200);
  return new WaitroomError(
    response.status,
    "unexpected_response",
    `HTTP ${response.status}${detail ? `: ${detail}` : ""}`,
  );
}
