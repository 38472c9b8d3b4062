import { defineConfig } from "vitest/config";

// The benchmarks' smoke run (npm run bench:smoke): bench/run.ts --quick must finish and report every
// figure. Kept out of npm test: it loads the machine for minutes and measures nothing the tests assert.
export default defineConfig({
  test: {
    include: ["bench/smoke.test.ts"],
    reporters: ["default", ["json", { outputFile: "test-results/bench-smoke.json" }]],
  },
});
