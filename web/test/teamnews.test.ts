import { describe, expect, it } from "vitest";
import type { Team } from "../src/api/types";
import { TeamNews } from "../src/app/teamnews";
import { BOB, FakeClock, flush, ME, TEAM } from "./fixtures";

function team(over: Partial<Team> = {}): Team {
  return { id: TEAM, name: "Core", icon: "", active: true, meta_tags: [], members: [ME, BOB], admins: [BOB], super_admin: BOB, doc: "", ...over };
}

function setup(spread: number) {
  const clock = new FakeClock();
  const log = { reads: 0, looked: [] as string[][] };
  let held: Team | undefined = team();
  let server = team();
  const news = new TeamNews({
    clock,
    members: (id) => (id === TEAM ? held?.members.length : undefined),
    reread: async () => {
      log.reads += 1;
      held = server;
      return server;
    },
    membersChanged: async (_team, members) => {
      log.looked.push([...members]);
    },
    random: () => spread,
  });
  const frame = (change: "settings" | "roles" | "members", channel_id = TEAM) => news.heard({ type: "team", channel_id, change });
  return { clock, log, frame, serve: (t: Team) => (server = t), hold: (t: Team | undefined) => (held = t) };
}

describe("TeamNews", () => {
  it("reads a team once for a burst of frames, at a moment between 0.2 and 1 s drawn by the page", async () => {
    const s = setup(1);
    s.frame("settings");
    s.frame("members");
    s.frame("z".repeat(32) as never); // not a change the page knows: still one read
    s.clock.advance(999);
    await flush();
    expect(s.log.reads).toBe(0);
    s.clock.advance(1);
    await flush();
    expect(s.log.reads).toBe(1);
    const early = setup(0);
    early.frame("settings");
    early.clock.advance(200);
    await flush();
    expect(early.log.reads).toBe(1);
  });

  it("spreads the pages of a big team over more time: 5 ms per member", async () => {
    const s = setup(1);
    s.hold(team({ members: Array.from({ length: 1000 }, (_, i) => i.toString(16).padStart(32, "0")) }));
    s.frame("settings");
    s.clock.advance(5199);
    await flush();
    expect(s.log.reads).toBe(0);
    s.clock.advance(1);
    await flush();
    expect(s.log.reads).toBe(1);
  });

  it("reads a team that keeps changing at most every 3 s, whatever the pace of its frames", async () => {
    const s = setup(0);
    const at: number[] = [];
    for (let ms = 0; ms < 10_000; ms += 100) {
      s.frame("members");
      s.clock.advance(100);
      await flush();
      if (s.log.reads > at.length) at.push(s.clock.now());
    }
    expect(at).toEqual([200, 3200, 6200, 9200]);
  });

  it("ignores a frame for a team the page does not hold, and looks members up only when they changed", async () => {
    const s = setup(0);
    s.frame("settings", "o".repeat(32));
    s.frame("settings");
    s.clock.advance(200);
    await flush();
    expect([s.log.reads, s.log.looked]).toEqual([1, []]);
    s.serve(team({ members: [ME, BOB, "c".repeat(32)] }));
    s.frame("members");
    s.clock.advance(3000); // at least 3 s after the last read
    await flush();
    expect(s.log.looked).toEqual([[ME, BOB, "c".repeat(32)]]);
  });
});
