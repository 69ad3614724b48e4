import { describe, expect, it } from "vitest";
import { BODY_MAX, conversationTag, mentionedIds, notificationText, notifies, OtherTabs, plainBody, RateLimit, tabNews, tabTitle, threadTag } from "../src/state/attention";
import { BOB, ME, msg, TEAM } from "./fixtures";

const OTHER = "o".repeat(31) + "2";
const CAROL = "c".repeat(32);
const names = {
  user: (id: string) => ({ [BOB]: "Bob", [CAROL]: "Carol" })[id],
  team: (id: string) => (id === TEAM ? "Core" : undefined),
};

describe("tabTitle", () => {
  it("is the base title when nothing waits, or with no team at all", () => {
    expect(tabTitle("chatstack", [])).toBe("chatstack");
    expect(tabTitle("chatstack", [{ count: 0, mentions: 0 }, { count: 0, mentions: 0 }])).toBe("chatstack");
  });

  it("puts a dot before it when only ordinary messages are unread", () => {
    expect(tabTitle("chatstack", [{ count: 0, mentions: 0 }, { count: 4, mentions: 0 }])).toBe("• chatstack");
  });

  it("counts the mentions (DMs included) of every team, and the number wins over the dot", () => {
    expect(tabTitle("chatstack", [{ count: 5, mentions: 2 }, { count: 1, mentions: 1 }, { count: 3, mentions: 0 }])).toBe("(3) chatstack");
  });

  it("reads the counts it is given once, from any iterable (the model passes its ReadStates)", () => {
    function* teams() {
      yield { count: 1, mentions: 1 };
    }
    expect(tabTitle("base", teams())).toBe("(1) base");
  });
});

describe("notifies", () => {
  it("notifies a DM to me, text or attachment, from someone else", () => {
    expect(notifies(msg(1, { to: ME }), ME, false)).toBe(true);
    expect(notifies(msg(2, { to: ME, type: "image", data: "att1" }), ME, false)).toBe(true);
  });

  it("notifies a team text that mentions me, and not one that mentions someone else or nobody", () => {
    expect(notifies(msg(1, { data: `look <@${ME}>` }), ME, false)).toBe(true);
    expect(notifies(msg(2, { data: `look <@${BOB}>` }), ME, false)).toBe(false);
    expect(notifies(msg(3), ME, false)).toBe(false);
  });

  it("never notifies my own message, sent from another device, even one that names me", () => {
    expect(notifies(msg(1, { from: ME, to: BOB }), ME, false)).toBe(false);
    expect(notifies(msg(2, { from: ME, data: `note to self <@${ME}>` }), ME, false)).toBe(false);
  });

  it("notifies a thread reply only when it mentions me or is in a DM's thread", () => {
    expect(notifies(msg(5, { thread_id: "m1" }), ME, false)).toBe(false);
    expect(notifies(msg(6, { thread_id: "m1", data: `<@${ME}> thoughts?` }), ME, false)).toBe(true);
    expect(notifies(msg(7, { thread_id: "m2", to: ME }), ME, false)).toBe(true);
  });

  it("stays quiet while I look at the conversation, and for a message already deleted", () => {
    expect(notifies(msg(1, { to: ME }), ME, true)).toBe(false);
    expect(notifies(msg(2, { to: ME, deleted: true, data: "" }), ME, false)).toBe(false);
  });
});

describe("notificationText", () => {
  it("titles a DM with its sender, and says it is direct", () => {
    expect(notificationText(msg(1, { to: ME, data: "lunch?" }), ME, names)).toEqual({ title: "Bob (direct message in Core)", body: "lunch?", tag: `chatstack:${TEAM}:${BOB}` });
  });

  it("titles a team message with its sender and the team", () => {
    expect(notificationText(msg(1, { data: `<@${ME}> deploy` }), ME, names).title).toBe("Bob in Core");
  });

  it("says Someone and a team for names the page has not learnt yet", () => {
    const m = msg(1, { channel_id: OTHER, from: "9".repeat(32), data: `<@${ME}>` });
    expect(notificationText(m, ME, names).title).toBe("Someone in a team");
  });

  it("tags by conversation: a DM's messages share one tag, apart from the team's and from another team's DM", () => {
    const dm = conversationTag(msg(1, { to: ME }), ME);
    expect(conversationTag(msg(2, { to: ME, thread_id: "m1" }), ME)).toBe(dm);
    expect(conversationTag(msg(3, { data: `<@${ME}>` }), ME)).not.toBe(dm);
    expect(conversationTag(msg(4, { to: ME, channel_id: OTHER }), ME)).not.toBe(dm);
    expect(conversationTag(msg(5, { to: ME, from: CAROL }), ME)).not.toBe(dm);
  });
});

describe("plainBody", () => {
  it("writes mentions as @Name, and @someone for a user it cannot name", () => {
    expect(plainBody(msg(1, { data: `<@${ME.toUpperCase()}> and <@${BOB}>, ask <@${"9".repeat(32)}>` }), { user: (id) => (id === ME ? "Me" : names.user(id)) })).toBe(
      "@Me and @Bob, ask @someone",
    );
  });

  it("puts the text on one line and drops text-direction controls", () => {
    expect(plainBody(msg(1, { data: "first line\n\n\tsecond\u202e line  " }), names)).toBe("first line second line");
  });

  it("keeps markup as the characters it is: a notification is plain text", () => {
    expect(plainBody(msg(1, { data: `<img src=x onerror="alert(1)"> &amp;` }), names)).toBe(`<img src=x onerror="alert(1)"> &amp;`);
  });

  it("cuts a long text to BODY_MAX characters ending in …, without splitting an emoji", () => {
    const body = plainBody(msg(1, { data: "😀".repeat(200) }), names);
    expect([...body]).toHaveLength(BODY_MAX);
    expect(body.endsWith("😀…")).toBe(true);
    const exact = "x".repeat(BODY_MAX);
    expect(plainBody(msg(2, { data: exact }), names)).toBe(exact);
    expect(plainBody(msg(3, { data: `${exact}y` }), names)).toBe(`${"x".repeat(BODY_MAX - 1)}…`);
  });

  it("says what an attachment is instead of its id", () => {
    const kinds = (["image", "video", "audio", "file"] as const).map((type) => plainBody(msg(1, { type, data: "a".repeat(32) }), names));
    expect(kinds).toEqual(["sent an image", "sent a video", "sent an audio clip", "sent a file"]);
  });
});

describe("RateLimit", () => {
  it("lets one through per key per window, and the next once the window has passed", () => {
    const limit = new RateLimit(5000);
    expect(limit.allow("a", 0)).toBe(true);
    expect(limit.allow("a", 4999)).toBe(false);
    expect(limit.allow("a", 5000)).toBe(true);
  });

  it("counts the window from the one that went out, not from those held back", () => {
    const limit = new RateLimit(5000);
    limit.allow("a", 0);
    limit.allow("a", 3000);
    expect(limit.allow("a", 5001)).toBe(true);
  });

  it("keeps keys apart, and forgets old keys without forgetting a recent one", () => {
    const limit = new RateLimit(5000);
    expect(limit.allow("recent", 10_000)).toBe(true);
    expect(limit.allow("other", 10_000)).toBe(true);
    for (let i = 0; i < 150; i++) limit.allow(`old${i}`, i);
    expect(limit.allow("recent", 12_000)).toBe(false);
    expect(limit.allow("old1", 12_000)).toBe(true);
  });
});

describe("other tabs", () => {
  it("reads only well-formed news from another tab", () => {
    expect(tabNews({ kind: "ask" })).toEqual({ kind: "ask" });
    expect(tabNews({ kind: "looking", tab: "t1", tag: "chatstack:a:*", thread: "chatstack:a:*#m1" })).toEqual({
      kind: "looking",
      tab: "t1",
      tag: "chatstack:a:*",
      thread: "chatstack:a:*#m1",
    });
    // From a tab that does not say its thread (an older version of the app): none.
    expect(tabNews({ kind: "looking", tab: "t1", tag: "chatstack:a:*" })).toEqual({ kind: "looking", tab: "t1", tag: "chatstack:a:*", thread: null });
    expect(tabNews({ kind: "looking", tab: "t1", tag: null, thread: 5 })).toEqual({ kind: "looking", tab: "t1", tag: null, thread: null });
    for (const bad of [null, "ask", 7, { kind: "looking", tab: 1, tag: null }, { kind: "looking", tab: "t", tag: 3 }, { kind: "other" }]) {
      expect(tabNews(bad)).toBeNull();
    }
  });

  it("knows which conversation another tab shows until it says otherwise or falls silent", () => {
    const others = new OtherTabs(1000);
    others.note("t1", "x", 0);
    others.note("t2", "y", 0);
    expect([others.looking("x", 500), others.looking("y", 500), others.looking("z", 500)]).toEqual([true, true, false]);
    others.note("t1", null, 600);
    expect(others.looking("x", 700)).toBe(false);
    expect(others.looking("y", 1001)).toBe(false); // silent too long: closed without a word
  });

  it("knows the thread another tab has open beside its conversation", () => {
    const others = new OtherTabs(1000);
    others.note("t1", "x", 0, threadTag("x", "m1"));
    expect([others.looking("x", 1), others.looking(threadTag("x", "m1"), 1), others.looking(threadTag("x", "m2"), 1)]).toEqual([true, true, false]);
  });

  it("lists the members a text mentions, and none for an attachment", () => {
    expect(mentionedIds(msg(1, { data: `<@${ME}> and <@${BOB.toUpperCase()}>` }))).toEqual([ME, BOB]);
    expect(mentionedIds(msg(1, { type: "file", data: "f".repeat(32) }))).toEqual([]);
  });
});
