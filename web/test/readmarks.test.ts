import { describe, expect, it } from "vitest";
import { ReadMarks } from "../src/app/readmarks";
import { ChannelTimeline } from "../src/state/timeline";
import { ReadState } from "../src/state/unread";
import { FakeClock, ME, msg, TEAM } from "./fixtures";

function setup(lastRead: number, page: number[], hasOlder: boolean, stoppedAt: number | null = null, unread = page.length, joining = false) {
  const clock = new FakeClock();
  const timeline = new ChannelTimeline();
  timeline.beginResume();
  timeline.applyLatest(page.map((seq) => msg(seq)), hasOlder, stoppedAt);
  timeline.endResume();
  const read = new ReadState(ME);
  read.fromServer({ count: unread, mentions: 0, last_read_seq: lastRead });
  const reported: number[] = [];
  const marks = new ReadMarks({
    clock,
    me: ME,
    timeline: () => timeline,
    read: () => read,
    older: async () => 0,
    joining: () => joining,
    markRead: async (_team, seq) => {
      reported.push(seq);
    },
    changed: () => undefined,
    fail: () => undefined,
  });
  return { clock, marks, read, reported };
}

describe("ReadMarks", () => {
  it("starts a list at the divider only once the history above the mark is held, at the bottom with no mark", () => {
    expect(setup(2, [5, 6, 7], true).marks.listStart(TEAM)).toBe("wait");
    expect(setup(5, [5, 6, 7], true).marks.listStart(TEAM)).toBe("divider");
    expect(setup(2, [5, 6, 7], false).marks.listStart(TEAM)).toBe("divider");
    // A member who has read nothing (-1) since being added to an empty team: everything is
    // unread, from the start, so it is read back and opens at the divider.
    expect(setup(-1, [5, 6, 7], true).marks.listStart(TEAM)).toBe("wait");
    expect(setup(-1, [5, 6, 7], false).marks.listStart(TEAM)).toBe("divider");
    expect(setup(-1, [], false, null, 0).marks.listStart(TEAM)).toBe("bottom");
    // Just added: -1 may mean "not written yet" (the whole history looks unread): the bottom,
    // and nothing read back, as before the server has the joining position.
    expect(setup(-1, [5, 6, 7], true, null, 3, true).marks.listStart(TEAM)).toBe("bottom");
    // The server read below the mark for the first page and found nothing else for this reader
    // (others' DMs): nothing above the mark is missing, so no reading back.
    expect(setup(2, [5, 6, 7], true, 2).marks.listStart(TEAM)).toBe("divider");
    expect(setup(2, [5, 6, 7], true, 3).marks.listStart(TEAM)).toBe("wait");
  });

  it("marks nothing read, for a member who has read nothing, until what is above the view is held", () => {
    // 80 unread from the very start, the latest 3 held: the view at the bottom does not pass the
    // unread above it as read (it asks for them first).
    const s = setup(-1, [77, 78, 79], true, null, 80);
    s.marks.seen(TEAM, 79, () => true);
    expect(s.read.lastRead).toBe(-1);
    expect(s.read.count).toBe(80);
    s.clock.advance(1000);
    expect(s.reported).toEqual([]);
  });

  it("reports the mark once the reader pauses, however often the view says what it saw", () => {
    const s = setup(4, [4, 5, 6, 7], true);
    s.marks.seen(TEAM, 5, () => true);
    s.clock.advance(200);
    s.marks.seen(TEAM, 7, () => true);
    expect(s.read.lastRead).toBe(7);
    s.clock.advance(399);
    expect(s.reported).toEqual([]);
    s.clock.advance(1);
    expect(s.reported).toEqual([7]);
  });
});
