import { describe, expect, it } from "vitest";
import { dayKey, dayLabel } from "../src/ui/format";

describe("day separators", () => {
  const now = new Date(2026, 11, 6, 9, 30); // 6 December 2026, local time

  it("says Today and Yesterday by the local calendar, not by 24 hours", () => {
    expect(dayLabel(new Date(2026, 11, 6, 0, 5).toISOString(), now)).toBe("Today");
    expect(dayLabel(new Date(2026, 11, 5, 23, 55).toISOString(), now)).toBe("Yesterday");
    expect(dayLabel(new Date(2026, 11, 5, 0, 1).toISOString(), now)).toBe("Yesterday");
  });

  it("names an older day, with its year only when it is not this one", () => {
    const older = dayLabel(new Date(2026, 10, 20, 12).toISOString(), now);
    expect(older).toMatch(/20/);
    expect(older).not.toMatch(/2026/);
    expect(dayLabel(new Date(2025, 11, 31, 12).toISOString(), now)).toMatch(/2025/);
  });

  it("keys messages of one local day alike, and a bad timestamp as nothing", () => {
    expect(dayKey(new Date(2026, 11, 6, 0, 1).toISOString())).toBe(dayKey(new Date(2026, 11, 6, 23, 59).toISOString()));
    expect(dayKey(new Date(2026, 11, 6, 0, 1).toISOString())).not.toBe(dayKey(new Date(2026, 11, 5, 23, 59).toISOString()));
    expect(dayKey("not a time")).toBe("");
    expect(dayLabel("not a time", now)).toBe("");
  });
});
