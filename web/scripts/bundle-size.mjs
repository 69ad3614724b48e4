// Prints the gzip size of the built app (every file under dist/) and fails above the budget of
// issue 14: 150 KB gzip for everything a first visit downloads.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { gzipSync } from "node:zlib";

const BUDGET = 150 * 1024;
const dist = new URL("../dist/", import.meta.url).pathname;

function files(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : [path];
  });
}

let total = 0;
for (const path of files(dist).sort()) {
  const size = gzipSync(readFileSync(path), { level: 9 }).length;
  total += size;
  console.log(`  ${relative(dist, path).padEnd(48)} ${(size / 1024).toFixed(1).padStart(7)} KB gzip`);
}
console.log(`bundle: ${(total / 1024).toFixed(1)} KB gzip in all (budget ${BUDGET / 1024} KB)`);
if (total > BUDGET) {
  console.error("bundle over budget");
  process.exit(1);
}
