import { describe, expect, it } from "vitest";
import { backoffDelay, DEFAULT_BACKOFF } from "../src/net/backoff";

describe("backoffDelay", () => {
  it("grows exponentially up to the cap at the top of the jitter range", () => {
    const top = () => 0.999999;
    expect([0, 1, 2, 3].map((a) => backoffDelay(a, top))).toEqual([499, 999, 1999, 3999]);
    expect(backoffDelay(20, top)).toBe(DEFAULT_BACKOFF.capMs - 1);
  });

  it("spreads delays over the whole range (full jitter) but never below the floor", () => {
    expect(backoffDelay(3, () => 0)).toBe(DEFAULT_BACKOFF.floorMs);
    expect(backoffDelay(3, () => 0.5)).toBe(2000);
    const seen = new Set(Array.from({ length: 50 }, () => backoffDelay(4)));
    expect(seen.size).toBeGreaterThan(10);
    for (const d of seen) expect(d).toBeLessThan(8000);
  });
});
