import { describe, expect, it } from "vitest";
import { dividerAfterLive, dividerBefore, mentions, ReadState, readUpTo } from "../src/state/unread";
import { BOB, ME, msg } from "./fixtures";

describe("ReadState", () => {
  it("starts from the server's numbers and counts new messages from others after the mark", () => {
    const r = new ReadState(ME);
    r.fromServer({ count: 2, mentions: 1, last_read_seq: 10 });
    expect(r.onMessage(msg(11))).toBe(true);
    expect(r.onMessage(msg(12, { from: ME }))).toBe(false);
    expect(r.onMessage(msg(9))).toBe(false);
    expect([r.count, r.mentions]).toEqual([3, 1]);
  });

  it("treats seq 0 as a message: a never-read team (-1) counts it, shows the divider, reports reading it", () => {
    const r = new ReadState(ME);
    r.fromServer({ count: 0, mentions: 0, last_read_seq: -1 });
    const first = msg(0, { to: ME });
    expect(r.onMessage(first)).toBe(true);
    expect([r.count, r.mentions]).toEqual([1, 1]);
    expect(dividerBefore([first], r.lastRead, ME)).toBe(first.id);
    expect(r.seen(0, [first])).toBe(0);
    expect([r.count, r.mentions, r.lastRead]).toEqual([0, 0, 0]);
  });

  it("counts a redelivered message once", () => {
    const r = new ReadState(ME);
    r.onMessage(msg(1));
    r.onMessage(msg(1));
    expect(r.count).toBe(1);
  });

  it("counts a mention for <@me> in a text and for any DM to me", () => {
    const r = new ReadState(ME);
    r.onMessage(msg(1, { data: `ping <@${ME}>` }));
    r.onMessage(msg(2, { to: ME, type: "image", data: "att" }));
    r.onMessage(msg(3, { data: `ping <@${BOB}>` }));
    expect([r.count, r.mentions]).toEqual([3, 2]);
    expect(mentions(msg(4, { data: `<@${ME}>`, type: "file" }), ME)).toBe(false);
  });

  it("moves the mark forward only, recounts what is left, and reports each seq once", () => {
    const r = new ReadState(ME);
    const held = [msg(1), msg(2, { data: `<@${ME}>` }), msg(3), msg(4, { from: ME })];
    for (const m of held) r.onMessage(m);
    expect(r.seen(2, held)).toBe(2);
    expect([r.count, r.mentions, r.lastRead]).toEqual([1, 0, 2]);
    expect(r.seen(1, held)).toBeNull();
    expect(r.lastRead).toBe(2);
    expect(r.seen(4, held)).toBe(4);
    expect(r.count).toBe(0);
  });

  it("does not count deleted messages when recounting", () => {
    const r = new ReadState(ME);
    const held = [msg(1), msg(2, { deleted: true, data: "" }), msg(3)];
    r.seen(1, held);
    expect(r.count).toBe(1);
  });

  it("takes a deleted unread message off the counts once, its mention too", () => {
    const r = new ReadState(ME);
    r.fromServer({ count: 0, mentions: 0, last_read_seq: 10 });
    const mention = msg(11, { data: `hi <@${ME}>` });
    r.onMessage(mention);
    r.onMessage(msg(12));
    const gone = { ...mention, deleted: true, data: "" };
    // Held or not (a team whose messages are not loaded), the mention is known from the count.
    expect(r.onDeleted(gone, undefined)).toBe(true);
    expect(r.onDeleted(gone, mention)).toBe(false);
    expect([r.count, r.mentions]).toEqual([1, 0]);
  });

  it("takes a deleted message the server counted off the counts, not one already read or mine", () => {
    const r = new ReadState(ME);
    r.fromServer({ count: 2, mentions: 1, last_read_seq: 10 });
    const dm = msg(11, { to: ME });
    expect(r.onDeleted({ ...dm, deleted: true, data: "" }, dm)).toBe(true);
    expect([r.count, r.mentions]).toEqual([1, 0]);
    expect(r.onDeleted(msg(9, { deleted: true, data: "" }), msg(9))).toBe(false);
    expect(r.onDeleted(msg(12, { from: ME, deleted: true, data: "" }), undefined)).toBe(false);
    expect(r.onDeleted(msg(13, { deleted: true, data: "" }), msg(13, { deleted: true, data: "" }))).toBe(false);
    expect(r.count).toBe(1);
  });

  it("takes a read mark from another socket without reporting it back", () => {
    const r = new ReadState(ME);
    const held = [msg(1), msg(2), msg(3)];
    for (const m of held) r.onMessage(m);
    r.readElsewhere(3, held);
    expect([r.count, r.lastRead]).toEqual([0, 3]);
    expect(r.seen(3, held)).toBeNull();
  });
});

describe("dividerBefore", () => {
  it("goes above the first message from someone else after the read mark", () => {
    const view = [msg(1), msg(2, { from: ME }), msg(3), msg(4)];
    expect(dividerBefore(view, 1, ME)).toBe("m3");
    expect(dividerBefore(view, 4, ME)).toBeNull();
    expect(dividerBefore(view, null, ME)).toBeNull();
  });
});

describe("readUpTo", () => {
  const team = (m: { to: string; from: string }) => m.to === "*";

  it("reads up to the cursor at the end of the list: thread replies and later changes included", () => {
    const held = [msg(1), msg(2), msg(3, { thread_id: "m1" })];
    expect(readUpTo(2, true, 5, held, team, ME, 1)).toBe(5);
  });

  it("reads only what was seen when the reader is not at the end of the list", () => {
    const held = [msg(1), msg(2), msg(3, { thread_id: "m1" })];
    expect(readUpTo(1, false, 3, held, team, ME, 0)).toBe(1);
  });

  it("stops before an unread message of another conversation (a DM not open)", () => {
    const held = [msg(1), msg(2, { thread_id: "m1" }), msg(4, { to: ME }), msg(5)];
    expect(readUpTo(1, true, 5, held, team, ME, 1)).toBe(3);
    // The user's own DM elsewhere is nothing to read.
    expect(readUpTo(1, true, 5, [msg(1), msg(4, { from: ME, to: BOB })], team, ME, 1)).toBe(5);
  });

  it("is not held back by a DM elsewhere that was already read in its own view", () => {
    const held = [msg(1), msg(4, { to: ME }), msg(6, { thread_id: "m1" })];
    expect(readUpTo(1, true, 6, held, team, ME, 4)).toBe(6);
  });
});

describe("dividerAfterLive", () => {
  it("moves past a message watched arriving when no divider is shown", () => {
    const view = [msg(1), msg(2)];
    expect(dividerAfterLive(1, view, msg(2), ME)).toBe(2);
    expect(dividerBefore(view, 2, ME)).toBeNull();
  });

  it("keeps a divider already shown where it is", () => {
    const view = [msg(1), msg(2), msg(3)];
    expect(dividerAfterLive(1, view, msg(3), ME)).toBe(1);
  });

  it("shows no divider when the read mark is unknown", () => {
    expect(dividerAfterLive(null, [msg(1)], msg(1), ME)).toBeNull();
  });
});
