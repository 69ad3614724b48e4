import { describe, expect, it } from "vitest";
import { dividerAfterLive, dividerBefore, listSeenUpTo, mentions, newReplies, ownMessageReads, ReadState, readUpTo } from "../src/state/unread";
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

  it("recounts an unread team text's mention by its edited text, once per edit, as the server does", () => {
    const r = new ReadState(ME);
    r.fromServer({ count: 0, mentions: 0, last_read_seq: 10 });
    const original = msg(11, { data: `hi <@${ME}>` });
    r.onMessage(original);
    r.onMessage(msg(12));
    const plain = { ...original, data: "hi all", edited_ts: "2026-12-07T00:00:00.000Z" };
    expect(r.onEdited(plain, original)).toBe(true);
    expect(r.onEdited(plain, plain)).toBe(false); // delivered again
    expect([r.count, r.mentions]).toEqual([2, 0]);
    const named = { ...plain, data: `hi again <@${ME}>` };
    expect(r.onEdited(named, plain)).toBe(true);
    expect([r.count, r.mentions]).toEqual([2, 1]);
    // A DM is a mention whatever it says; a message already read, or mine, counts nothing.
    expect(r.onEdited(msg(13, { to: ME, data: "x" }), msg(13, { to: ME, data: `<@${ME}>` }))).toBe(false);
    expect(r.onEdited(msg(9, { data: `<@${ME}>` }), msg(9))).toBe(false);
    expect(r.onEdited(msg(14, { from: ME, data: `<@${ME}>` }), msg(14, { from: ME }))).toBe(false);
    expect([r.count, r.mentions]).toEqual([2, 1]);
    // Counted by the server, not held here: what it said before is unknown, nothing is guessed.
    expect(r.onEdited(msg(15, { data: "no longer" }), undefined)).toBe(false);
    // Viewed already (out of the count): an edit adds no mention to it.
    const viewed = msg(16);
    r.onMessage(viewed);
    r.view([viewed]);
    expect(r.onEdited({ ...viewed, data: `<@${ME}>` }, viewed)).toBe(false);
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
  const none = () => false;

  it("reads up to the cursor at the end of the list: thread replies and later changes included", () => {
    expect(listSeenUpTo(2, true, 5)).toBe(5);
    expect(listSeenUpTo(2, false, 5)).toBe(2);
    expect(listSeenUpTo(2, true, null)).toBe(2);
    const held = [msg(1), msg(2), msg(3, { thread_id: "m1" })];
    const viewed = (m: { seq: number }) => m.seq <= 3;
    expect(readUpTo(5, held, viewed, ME, 1)).toBe(5);
  });

  it("stops before an unread message the reader has not viewed (a DM not open, a thread not shown)", () => {
    const held = [msg(1), msg(2, { thread_id: "m1" }), msg(4, { to: ME }), msg(5)];
    const team = (m: { to: string }) => m.to === "*";
    expect(readUpTo(5, held, team, ME, 1)).toBe(3);
    // The user's own DM elsewhere is nothing to read.
    expect(readUpTo(5, [msg(1), msg(4, { from: ME, to: BOB })], none, ME, 1)).toBe(5);
  });

  it("never marks read a DM below what was seen in a thread", () => {
    // A thread open in its panel gets a reply (6) after a DM (5) the reader has not opened.
    const held = [msg(1), msg(5, { to: ME }), msg(6, { thread_id: "m1" })];
    const thread = (m: { id: string; thread_id?: string | null }) => m.id === "m1" || m.thread_id === "m1";
    expect(readUpTo(6, held, thread, ME, 1)).toBe(4);
  });

  it("is not held back by what was read before or viewed elsewhere", () => {
    const held = [msg(1), msg(4, { to: ME }), msg(6, { thread_id: "m1" })];
    expect(readUpTo(6, held, none, ME, 6)).toBe(6);
    expect(readUpTo(6, held, (m) => m.seq === 4 || m.seq === 6, ME, 1)).toBe(6);
  });
});

describe("ReadState and the server's numbers", () => {
  it("keeps live counts against a later read of the team that is not asked for its counts", () => {
    const r = new ReadState(ME);
    r.fromServer({ count: 0, mentions: 0, last_read_seq: 10 }, true);
    r.onMessage(msg(11));
    r.onMessage(msg(12, { to: ME }));
    // A member-list refresh answered from counts that trail the fan-out by a second.
    r.fromServer({ count: 0, mentions: 0, last_read_seq: 10 }, false);
    expect([r.count, r.mentions]).toEqual([2, 1]);
  });

  it("fills in counts from any read while none are known yet (a team just joined)", () => {
    const r = new ReadState(ME);
    r.fromServer({ count: 3, mentions: 1, last_read_seq: 7 }, false);
    expect([r.count, r.mentions, r.lastRead]).toEqual([3, 1, 7]);
  });

  it("ignores counts asked for before the read mark moved here", () => {
    const r = new ReadState(ME);
    r.fromServer({ count: 3, mentions: 0, last_read_seq: 7 }, true);
    expect(r.seen(10, [msg(8), msg(9), msg(10)])).toBe(10);
    expect(r.current({ count: 3, mentions: 0, last_read_seq: 7 })).toBe(false);
    r.fromServer({ count: 3, mentions: 0, last_read_seq: 7 }, true);
    expect([r.count, r.lastRead]).toEqual([0, 10]);
    expect(r.current({ count: 0, mentions: 0, last_read_seq: 10 })).toBe(true);
    r.fromServer({ count: 1, mentions: 0, last_read_seq: 10 }, true);
    expect(r.count).toBe(1);
  });

  it("remembers what the reader viewed", () => {
    const r = new ReadState(ME);
    r.view([msg(3)]);
    expect(r.viewed(msg(3))).toBe(true);
    expect(r.viewed(msg(4))).toBe(false);
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

describe("newReplies", () => {
  it("counts per root the replies from others since the mark, not deleted, of threads not opened", () => {
    const held = [
      msg(1),
      msg(2, { thread_id: "m1" }), // before the mark
      msg(4, { thread_id: "m1" }),
      msg(5, { thread_id: "m1", from: ME }), // mine
      msg(6, { thread_id: "m1", deleted: true }),
      msg(7, { thread_id: "m3" }),
      msg(8, { thread_id: "m9" }),
    ];
    expect([...newReplies(held, 3, ME, new Map([["m9", Number.POSITIVE_INFINITY]]))]).toEqual([
      ["m1", 1],
      ["m3", 1],
    ]);
    // A thread closed after showing up to seq 7: its reply at 8 came after, and is new.
    expect([...newReplies(held, 3, ME, new Map([["m9", 7]]))]).toEqual([
      ["m1", 1],
      ["m3", 1],
      ["m9", 1],
    ]);
    expect(newReplies(held, null, ME, new Map()).size).toBe(0);
  });
});

describe("ownMessageReads", () => {
  const CY = "c".repeat(32);

  it("moves the mark for a team message unless a DM to the user below it is unread", () => {
    const held = [msg(11), msg(12, { from: CY })];
    expect(ownMessageReads(msg(13, { from: ME }), held, ME, 10)).toBe(true);
    const dm = [...held, msg(12.5, { to: ME })];
    expect(ownMessageReads(msg(13, { from: ME }), dm, ME, 10)).toBe(false);
    // Read already, deleted, or above the message: no longer in the way.
    expect(ownMessageReads(msg(13, { from: ME }), dm, ME, 12.5)).toBe(true);
    expect(ownMessageReads(msg(13, { from: ME }), [msg(12, { to: ME, deleted: true })], ME, 10)).toBe(true);
    expect(ownMessageReads(msg(13, { from: ME }), [msg(14, { to: ME })], ME, 10)).toBe(true);
  });

  it("moves the mark for a DM only over DMs from the person it answers", () => {
    const answer = msg(13, { from: ME, to: BOB });
    expect(ownMessageReads(answer, [msg(11, { to: ME }), msg(12, { to: ME })], ME, 10)).toBe(true);
    expect(ownMessageReads(answer, [msg(11, { to: ME }), msg(12, { from: CY, to: ME })], ME, 10)).toBe(false);
    expect(ownMessageReads(answer, [msg(11, { to: ME }), msg(12)], ME, 10)).toBe(false);
    expect(ownMessageReads(answer, [msg(12, { from: ME })], ME, 10)).toBe(true);
    expect(ownMessageReads(answer, [], ME, 13)).toBe(false);
  });
});
