import { describe, expect, it } from "vitest";
import { ChannelTimeline } from "../src/state/timeline";
import { created, msg, update } from "./fixtures";

function loaded(...seqs: number[]): ChannelTimeline {
  const t = new ChannelTimeline();
  t.beginResume();
  t.applyLatest(seqs.map((s) => msg(s)), true);
  t.endResume();
  return t;
}

describe("ChannelTimeline", () => {
  it("sets the cursor to the end of the starting page and keeps messages in seq order", () => {
    const t = loaded(5, 3, 4);
    expect(t.cursor).toBe(5);
    expect(t.messages().map((m) => m.seq)).toEqual([3, 4, 5]);
  });

  it("holds the channel from a seq up only when loaded, not resuming, and held down to it", () => {
    expect(new ChannelTimeline().holdsFrom(0)).toBe(false);
    const t = loaded(3, 4, 5); // a page with older ones still to fetch
    expect([t.holdsFrom(3), t.holdsFrom(4), t.holdsFrom(2)]).toEqual([true, true, false]);
    t.beginResume();
    expect(t.holdsFrom(4)).toBe(false);
  });

  it("ignores live frames of a channel whose starting page is not loaded", () => {
    const t = new ChannelTimeline();
    expect(t.live(msg(1))).toEqual([]);
    expect(t.size).toBe(0);
    expect(t.cursor).toBeNull();
  });

  it("applies a live message once: a redelivery of the same id is dropped", () => {
    const t = loaded(1);
    expect(t.live(msg(2)).map((m) => m.id)).toEqual(["m2"]);
    expect(t.live(msg(2))).toEqual([]);
    expect(t.size).toBe(2);
    expect(t.cursor).toBe(2);
  });

  it("moves the cursor with update frames, as with messages (the cursor rule)", () => {
    const t = loaded(1, 2);
    t.live(update(7, msg(1, { data: "edited", edited_ts: "x" })));
    expect(t.cursor).toBe(7);
    expect(t.get("m1")?.data).toBe("edited");
  });

  it("never moves the cursor for older pages, threads or REST answers", () => {
    const t = loaded(10, 11);
    t.applyOlder([msg(3), msg(4)], true, t.tick());
    t.applyOutOfBand([msg(40, { thread_id: "m10" })]);
    expect(t.cursor).toBe(11);
    expect(t.oldestSeq()).toBe(3);
    expect(t.size).toBe(5);
  });

  it("buffers live frames during a resume and moves the cursor only as pages apply", () => {
    const t = loaded(1);
    expect(t.beginResume()).toBe(1);
    expect(t.live(msg(4))).toEqual([]);
    expect(t.cursor).toBe(1);
    t.applyChanges([created(msg(2)), created(msg(3))]);
    expect(t.cursor).toBe(3);
    expect(t.size).toBe(3);
    const late = t.endResume();
    expect(late.map((m) => m.id)).toEqual(["m4"]);
    expect(t.cursor).toBe(4);
  });

  it("shows nothing twice when a resume page and the buffer hold the same messages", () => {
    const t = loaded(1);
    t.beginResume();
    t.live(msg(3));
    t.live(msg(2));
    t.applyChanges([created(msg(2)), created(msg(3))]);
    expect(t.endResume()).toEqual([]);
    expect(t.messages().map((m) => m.id)).toEqual(["m1", "m2", "m3"]);
  });

  it("applies each change once and in order: an older change never overwrites a newer one", () => {
    const t = loaded(1);
    t.beginResume();
    t.live(update(9, msg(1, { data: "second" })));
    t.applyChanges([{ seq: 5, change: "edited", message: msg(1, { data: "first" }) }, { seq: 9, change: "edited", message: msg(1, { data: "second" }) }]);
    t.endResume();
    expect(t.get("m1")?.data).toBe("second");
    t.live(update(5, msg(1, { data: "first" })));
    expect(t.get("m1")?.data).toBe("second");
    expect(t.cursor).toBe(9);
  });

  it("keeps buffering after a failed resume, so the next one loses nothing", () => {
    const t = loaded(1);
    t.beginResume();
    t.live(msg(5));
    t.abortResume();
    t.beginResume();
    t.applyChanges([created(msg(2))]);
    expect(t.endResume().map((m) => m.id)).toEqual(["m5"]);
    expect(t.messages().map((m) => m.seq)).toEqual([1, 2, 5]);
  });

  it("keeps a deleted message as a tombstone in its place", () => {
    const t = loaded(1, 2);
    t.live(update(3, msg(1, { deleted: true, data: "" }), "deleted"));
    expect(t.messages().map((m) => [m.id, m.deleted ?? false])).toEqual([
      ["m1", true],
      ["m2", false],
    ]);
  });

  it("keeps a change to a message below what is held aside: no hole in scroll-back", () => {
    const t = loaded(100, 101);
    t.live(update(150, msg(5, { data: "edited" }), "edited"));
    expect(t.oldestSeq()).toBe(100);
    expect(t.cursor).toBe(150);
    expect(t.get("m5")).toBeUndefined();
    // The older page that brings it: the live state wins only if it came after the page was asked.
    const askedAt = t.tick();
    t.live(update(151, msg(6, { data: "edited after the ask" }), "edited"));
    t.applyOlder([msg(5, { data: "stale" }), msg(6, { data: "stale" })], false, askedAt);
    expect(t.get("m5")?.data).toBe("stale");
    expect(t.get("m6")?.data).toBe("edited after the ask");
    // And a replay of the live change does not apply again.
    t.live(update(151, msg(6, { data: "replayed" }), "edited"));
    expect(t.get("m6")?.data).toBe("edited after the ask");
    expect(t.messages().map((m) => m.seq)).toEqual([5, 6, 100, 101]);
  });
});
