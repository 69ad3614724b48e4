// End-to-end tests: real Chromium (Debian's) driven by playwright-core against the running stack.
// `make test` runs them through `deploy.local.stack exec`, which sets CHATSTACK_NGINX_URL.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["e2e/**/*.spec.ts"],
    environment: "node",
    // One browser at a time: the machine has 2 cores and the stack runs beside the tests.
    fileParallelism: false,
    testTimeout: 90_000,
    hookTimeout: 60_000,
  },
});
