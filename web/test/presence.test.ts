import { describe, expect, it } from "vitest";
import { PresenceState } from "../src/state/presence";

const TEAM = "t".repeat(32);
const frame = (user: string, status: "online" | "offline") => ({ type: "presence" as const, channel_id: TEAM, user_id: user, status });

describe("presence", () => {
  it("takes a snapshot, then frames change single members", () => {
    const p = new PresenceState();
    expect(p.status(TEAM, "cy")).toBe("unknown");
    p.snapshot(TEAM, [{ user_id: "cy", status: "online", last_seen: null }, { user_id: "bo", status: "offline", last_seen: null }]);
    p.apply(frame("bo", "online"));
    expect([p.status(TEAM, "cy"), p.status(TEAM, "bo")]).toEqual(["online", "online"]);
  });

  it("keeps a frame that came while an older snapshot was on its way", () => {
    const p = new PresenceState();
    p.snapshot(TEAM, [{ user_id: "cy", status: "online", last_seen: null }]);
    const asOf = p.mark();
    p.apply(frame("cy", "offline")); // the answer below was read before Cy left
    p.snapshot(TEAM, [{ user_id: "cy", status: "online", last_seen: null }], asOf);
    expect(p.status(TEAM, "cy")).toBe("offline");
  });

  it("lets a snapshot asked for after a frame replace it", () => {
    const p = new PresenceState();
    p.apply(frame("cy", "online"));
    const asOf = p.mark();
    p.snapshot(TEAM, [{ user_id: "cy", status: "offline", last_seen: null }], asOf);
    expect(p.status(TEAM, "cy")).toBe("offline");
  });

  it("forgets a team entirely", () => {
    const p = new PresenceState();
    p.apply(frame("cy", "online"));
    p.forget(TEAM);
    expect(p.status(TEAM, "cy")).toBe("unknown");
  });
});
