import { describe, expect, it } from "vitest";
import { conversationOf, SEND_EVERY_MS, SHOWN_MS, TypingState } from "../src/state/typing";
import { BOB, ME, TEAM } from "./fixtures";

const frame = (to: string, from = BOB) => ({ type: "typing" as const, channel_id: TEAM, to, from, ts: "" });

describe("TypingState", () => {
  it("shows who types in which conversation until the signal is stale", () => {
    const t = new TypingState(ME);
    t.heard(frame("*"), 0);
    t.heard(frame(ME), 0);
    expect(t.who(TEAM, "*", 1000)).toEqual([BOB]);
    expect(t.who(TEAM, BOB, 1000)).toEqual([BOB]);
    expect(t.who(TEAM, "*", SHOWN_MS + 1)).toEqual([]);
  });

  it("shows typing in a thread's box in that thread only, until their reply there arrives", () => {
    const t = new TypingState(ME);
    t.heard({ ...frame("*"), thread_id: "root1" }, 0);
    expect(t.who(TEAM, "*", 1000)).toEqual([]);
    expect(t.who(TEAM, "*", 1000, "root1")).toEqual([BOB]);
    expect(t.who(TEAM, "*", 1000, "root2")).toEqual([]);
    t.stopped(TEAM, "*", BOB); // a message in the channel: still typing in the thread
    expect(t.who(TEAM, "*", 1000, "root1")).toEqual([BOB]);
    t.stopped(TEAM, "*", BOB, "root1");
    expect(t.who(TEAM, "*", 1000, "root1")).toEqual([]);
    // The user's own signals are paced per box: the thread's does not wait for the channel's.
    expect(t.shouldSend(TEAM, "*", 0)).toBe(true);
    expect(t.shouldSend(TEAM, "*", 10, "root1")).toBe(true);
    expect(t.shouldSend(TEAM, "*", 20, "root1")).toBe(false);
  });

  it("clears a typist when their message arrives and ignores the user's own echo", () => {
    const t = new TypingState(ME);
    t.heard(frame("*"), 0);
    t.heard(frame("*", ME), 0);
    t.stopped(TEAM, "*", BOB);
    expect(t.who(TEAM, "*", 1)).toEqual([]);
  });

  it("sends at most one signal per interval per conversation, and again right after a send", () => {
    const t = new TypingState(ME);
    expect(t.shouldSend(TEAM, "*", 0)).toBe(true);
    expect(t.shouldSend(TEAM, "*", SEND_EVERY_MS - 1)).toBe(false);
    expect(t.shouldSend(TEAM, BOB, 10)).toBe(true);
    expect(t.shouldSend(TEAM, "*", SEND_EVERY_MS)).toBe(true);
    t.sent(TEAM, "*");
    expect(t.shouldSend(TEAM, "*", SEND_EVERY_MS + 1)).toBe(true);
  });

  it("names a DM conversation by the other person from either side", () => {
    expect(conversationOf(ME, BOB, ME)).toBe(BOB);
    expect(conversationOf(BOB, ME, ME)).toBe(BOB);
    expect(conversationOf("*", BOB, ME)).toBe("*");
  });
});
