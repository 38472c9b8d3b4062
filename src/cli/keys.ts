import type { SigningKey } from "../tokens/index.js";
import { adminApi, type Output, painter, UsageError } from "./rooms.js";

/*
 * `waitroom keys …`: signing keys of a running service, over its admin API
 * (WAITROOM_URL, WAITROOM_ADMIN_KEY), like `waitroom rooms`.
 */

export const keysUsage = `usage: waitroom keys <list | rotate | revoke <kid>>

  keys list            every signing key kept: staged, current, retired, revoked
  keys rotate          stage the next key: published now, signing once every
                       verifier can have seen it (activates_at)
  keys revoke <kid>    emergency: the key stops verifying at once (/v1/check
                       refuses its tokens, the JWKS drops it)`;

/** A key's wire form (times as ISO strings). */
type ShownKey = { [K in keyof SigningKey]: SigningKey[K] extends Date | null ? string | null : SigningKey[K] };

function keyLine(key: ShownKey, colour: ReturnType<typeof painter>): string {
  const state: Record<ShownKey["state"], (text: string) => string> = {
    staged: colour.yellow,
    current: colour.green,
    retired: colour.dim,
    revoked: colour.red,
  };
  const when =
    key.state === "revoked"
      ? `revoked ${key.revoked_at}`
      : key.state === "retired"
        ? `retired ${key.retired_at ?? key.activates_at}`
        : `signs from ${key.activates_at}`;
  return `${key.kid}  ${state[key.state](key.state.padEnd(7))}  published ${key.created_at}  ${when}\n`;
}

/** `waitroom keys <action> …`; resolves when done, throws UsageError or ApiFailure. */
export async function keysCommand(args: readonly string[], env: NodeJS.ProcessEnv, out: Output): Promise<void> {
  const [action, kid] = args;
  const colour = painter(out, env);
  const api = adminApi(env);
  switch (action) {
    case "list": {
      const { keys } = (await api("GET", "/v1/keys")) as { keys: ShownKey[] };
      out.write(
        keys.length === 0
          ? "no keys (the first signature creates one)\n"
          : keys.map((k) => keyLine(k, colour)).join(""),
      );
      return;
    }
    case "rotate": {
      out.write(keyLine((await api("POST", "/v1/keys/rotate")) as ShownKey, colour));
      return;
    }
    case "revoke": {
      if (!kid) throw new UsageError("keys revoke needs a kid (see keys list)");
      out.write(keyLine((await api("POST", `/v1/keys/${encodeURIComponent(kid)}/revoke`)) as ShownKey, colour));
      return;
    }
    default:
      throw new UsageError(action ? `unknown keys command '${action}'` : "keys needs a command");
  }
}
