import type { ErrorCode } from "./types.js";

/** An answer of the API that is not a success: status, code and message of its error envelope. */
export class WaitroomError extends Error {
  override readonly name = "WaitroomError";
  readonly status: number;
  readonly code: ErrorCode;
  /** quota_exceeded: when the holder's next share comes back. */
  readonly availableAt: Date | undefined;

  constructor(status: number, code: ErrorCode, message: string, availableAt?: Date) {
    super(message);
    this.status = status;
    this.code = code;
    this.availableAt = availableAt;
  }
}

/** The error of a failed response: the envelope when there is one, else what a proxy or gateway said. */
export async function errorFrom(response: Response): Promise<WaitroomError> {
  const text = await response.text().catch(() => "");
  try {
    const { error } = JSON.parse(text) as { error?: { code?: unknown; message?: unknown; available_at?: unknown } };
    if (typeof error?.code === "string" && typeof error.message === "string") {
      const availableAt = typeof error.available_at === "string" ? new Date(error.available_at) : undefined;
      return new WaitroomError(response.status, error.code as ErrorCode, error.message, availableAt);
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
