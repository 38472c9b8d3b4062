import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll } from "vitest";

/** Debian's chromium; CHROMIUM_PATH overrides. playwright-core never downloads a browser. */
export const chromiumPath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
export const screenshotDir = join(import.meta.dirname, "../../test-results/screenshots");

const launchArgs = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/**
 * A headless Chromium for the test file. A missing (or unlaunchable) browser fails every test that uses
 * it with the reason; nothing is skipped.
 */
export function useBrowser(): { readonly browser: Browser } {
  let launched: Browser | undefined;
  let failure: Error | undefined;
  beforeAll(async () => {
    await mkdir(screenshotDir, { recursive: true });
    if (!existsSync(chromiumPath)) {
      failure = new Error(
        `Chromium is missing at ${chromiumPath}: the browser tests need it. Install it with \`apt-get install -y chromium\` (as .ci/run does), or set CHROMIUM_PATH.`,
      );
      return;
    }
    try {
      launched = await chromium.launch({ executablePath: chromiumPath, args: launchArgs });
    } catch (error) {
      failure = new Error(`Chromium at ${chromiumPath} did not start: ${(error as Error).message}`, { cause: error });
    }
  });
  afterAll(async () => {
    await launched?.close();
  });
  return {
    get browser(): Browser {
      if (!launched) throw failure ?? new Error("the browser is used before beforeAll launched it");
      return launched;
    },
  };
}

/** Save a full-page screenshot as test-results/screenshots/<name>.png (an artifact, never committed). */
export async function screenshot(page: Page, name: string): Promise<string> {
  const path = join(screenshotDir, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/** Collect what the page logs and throws, so a failing test can show it. */
export function watchConsole(page: Page): string[] {
  const lines: string[] = [];
  page.on("console", (message) => lines.push(`${message.type()}: ${message.text()}`));
  page.on("pageerror", (error) => lines.push(`pageerror: ${error.message}`));
  return lines;
}
