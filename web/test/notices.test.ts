import { describe, expect, it } from "vitest";
import { ApiError } from "../src/api/client";
import { Notices, readable } from "../src/app/notices";
import { FakeClock } from "./fixtures";

function setup() {
  const clock = new FakeClock();
  let changes = 0;
  const notices = new Notices(clock, () => (changes += 1));
  return { clock, notices, changes: () => changes };
}

describe("Notices", () => {
  it("lets news go by itself after 8 s and keeps an error until it is dismissed", () => {
    const s = setup();
    s.notices.notify("info", "You were added to Core.");
    s.notices.fail("Could not react", new Error("busy"));
    expect(s.notices.list.map((n) => n.text)).toEqual(["You were added to Core.", "Could not react: busy"]);
    s.clock.advance(8000);
    expect(s.notices.list.map((n) => n.kind)).toEqual(["error"]);
    s.notices.dismiss(s.notices.list[0]!.id);
    expect(s.notices.list).toEqual([]);
    expect(s.changes()).toBeGreaterThanOrEqual(4);
  });

  it("replaces a notice of the same topic with the newer one, and keeps at most four", () => {
    const s = setup();
    s.notices.notify("info", "Core was deactivated.", "status t");
    s.notices.notify("info", "Core was reactivated.", "status t");
    expect(s.notices.list.map((n) => n.text)).toEqual(["Core was reactivated."]);
    for (const n of [1, 2, 3, 4]) s.notices.notify("error", `error ${n}`);
    expect(s.notices.list.map((n) => n.text)).toEqual(["error 1", "error 2", "error 3", "error 4"]);
  });

  it("announces what it shows, and what it is told to say without a notice", () => {
    const s = setup();
    s.notices.notify("info", "You left Core.");
    expect(s.notices.announcement).toBe("You left Core.");
    s.notices.announce("Ada: hello");
    expect(s.notices.announcement).toBe("Ada: hello");
    expect(s.notices.list).toHaveLength(1);
  });
});

describe("readable", () => {
  it("says a 403 is not allowed, and a plain error as its message", () => {
    expect(readable(new ApiError(403, "forbidden", "only admins may do this"))).toMatch(/^Not allowed: /);
    expect(readable(new Error("offline"))).toBe("offline");
  });
});
