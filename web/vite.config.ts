// The app build (`npm run build`, run by `make web`) and the unit tests (`npm test`).
// Preact's JSX goes through esbuild directly: no framework plugin is needed.
import { defineConfig } from "vitest/config";

export default defineConfig({
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // nginx caches /assets/ for a year: every file there carries its content hash.
    assetsDir: "assets",
    sourcemap: false,
    // No inline <script> or data: assets: the Content-Security-Policy forbids both.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
  },
  worker: { format: "es" },
  test: {
    include: ["test/**/*.test.ts"],
    environment: "node",
  },
});
