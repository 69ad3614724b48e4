import { describe, expect, it } from "vitest";
import type { Permission } from "../src/app/onscreen";
import { type TabChannel, type TabWindow, tabAttention } from "../src/app/tab";

/** A window with a title, focus, and (unless `notifications` is false) a Notification stand-in. */
function fakeWindow(permission: Permission = "default", notifications = true) {
  const made: { title: string; options: { body: string; tag: string }; onclick: unknown; closed: boolean }[] = [];
  const log: string[] = [];
  const state = { permission, answer: "granted" as Permission, throws: false };
  class FakeNotification {
    static get permission(): Permission {
      return state.permission;
    }
    static async requestPermission(): Promise<Permission> {
      log.push("asked");
      state.permission = state.answer;
      return state.answer;
    }
    onclick: unknown = null;
    closed = false;
    constructor(
      readonly title: string,
      readonly options: { body: string; tag: string },
    ) {
      if (state.throws) throw new TypeError("Illegal constructor");
      made.push(this);
    }
    close(): void {
      this.closed = true;
      log.push("closed");
    }
  }
  const win: TabWindow = {
    document: { title: "chatstack" },
    focus: () => log.push("focus"),
    now: () => 0,
    setInterval: () => undefined,
    addEventListener: () => undefined,
    ...(notifications ? { Notification: FakeNotification } : {}),
  };
  return { win, made, log, state };
}

describe("tabAttention", () => {
  it("keeps the page's own title as the base and sets the tab's title", () => {
    const { win } = fakeWindow();
    const tab = tabAttention(win);
    tab.title("(2) chatstack");
    expect([tab.base, win.document.title]).toEqual(["chatstack", "(2) chatstack"]);
  });

  it("says there are no notifications where the browser has none, and asking there does nothing", async () => {
    const { win, log } = fakeWindow("default", false);
    const tab = tabAttention(win);
    expect(tab.permission()).toBeNull();
    await tab.ask();
    tab.show({ title: "t", body: "b", tag: "g" }, () => undefined);
    expect(log).toEqual([]);
  });

  it("asks the browser for permission and reports its answer", async () => {
    const { win, log } = fakeWindow();
    const tab = tabAttention(win);
    expect(tab.permission()).toBe("default");
    await tab.ask();
    expect(log).toEqual(["asked"]);
    expect(tab.permission()).toBe("granted");
  });

  it("shows a notification with its body and tag only once permission is granted", () => {
    const { win, made, state } = fakeWindow("denied");
    const tab = tabAttention(win);
    tab.show({ title: "Bob (direct message)", body: "hi", tag: "chatstack:t:b" }, () => undefined);
    expect(made).toHaveLength(0);
    state.permission = "granted";
    tab.show({ title: "Bob (direct message)", body: "hi", tag: "chatstack:t:b" }, () => undefined);
    expect(made.map((n) => [n.title, n.options])).toEqual([["Bob (direct message)", { body: "hi", tag: "chatstack:t:b" }]]);
  });

  it("on a click focuses the window, opens the conversation and closes the notification, in that order", () => {
    const { win, made, log } = fakeWindow("granted");
    tabAttention(win).show({ title: "t", body: "b", tag: "g" }, () => log.push("open"));
    (made[0]?.onclick as () => void)();
    expect(log).toEqual(["focus", "open", "closed"]);
  });

  it("closes the notification it showed with a tag when told, and nothing else", () => {
    const { win, made } = fakeWindow("granted");
    const tab = tabAttention(win);
    tab.show({ title: "t", body: "b", tag: "g1" }, () => undefined);
    tab.show({ title: "t", body: "b", tag: "g2" }, () => undefined);
    tab.dismiss("g1");
    tab.dismiss("g1");
    tab.dismiss("nothing shown");
    expect(made.map((n) => n.closed)).toEqual([true, false]);
    tab.dismissAll();
    expect(made.map((n) => n.closed)).toEqual([true, true]);
  });

  it("tells the other tabs what it shows, and hears what they show, a new tab included", () => {
    // A BroadcastChannel between tabs: a message reaches every tab but the sender.
    const channels: TabChannel[] = [];
    const hub = () => {
      const ch: TabChannel = {
        onmessage: null,
        postMessage: (news) => channels.filter((c) => c !== ch).forEach((c) => c.onmessage?.({ data: structuredClone(news) })),
      };
      channels.push(ch);
      return ch;
    };
    const leaving: (() => void)[] = [];
    const tabOf = () =>
      tabAttention({ ...fakeWindow("granted").win, channel: hub(), addEventListener: (_type, fn) => void leaving.push(fn) });
    const first = tabOf();
    first.looking("chatstack:t:bob");
    const second = tabOf(); // asks when it opens: the first says again
    expect(second.lookedAtElsewhere("chatstack:t:bob")).toBe(true);
    expect(second.lookedAtElsewhere("chatstack:t:*")).toBe(false);
    expect(first.lookedAtElsewhere("chatstack:t:bob")).toBe(false); // not itself
    first.looking(null);
    expect(second.lookedAtElsewhere("chatstack:t:bob")).toBe(false);
    second.looking("chatstack:t:*");
    expect(first.lookedAtElsewhere("chatstack:t:*")).toBe(true);
    second.looking("chatstack:t:*", "chatstack:t:*#m1"); // a thread opened beside it
    expect([first.lookedAtElsewhere("chatstack:t:*#m1"), first.lookedAtElsewhere("chatstack:t:*#m2")]).toEqual([true, false]);
    leaving[1]?.(); // the second tab closes
    expect(first.lookedAtElsewhere("chatstack:t:*")).toBe(false);
    expect(first.lookedAtElsewhere("chatstack:t:*#m1")).toBe(false);
  });

  it("shrugs off a browser that has Notification but will not construct one (Chrome on Android)", () => {
    const { win, state } = fakeWindow("granted");
    state.throws = true;
    expect(() => tabAttention(win).show({ title: "t", body: "b", tag: "g" }, () => undefined)).not.toThrow();
  });
});
