import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/helpers/global-setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // expect.poll waits for a signal (a stream's update, a page's re-render); its bound is how long a
    // loaded machine may take to deliver it, not a speed being tested. vitest's 1 s made the
    // dashboard test fail whenever the machine was busy.
    expect: { poll: { timeout: 10_000 } },
    reporters: ["default", ["json", { outputFile: "test-results/vitest.json" }]],
  },
});
