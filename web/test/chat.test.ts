import { describe, expect, it } from "vitest";
import { ApiError, type Api } from "../src/api/client";
import type { Hello, Team, Unread } from "../src/api/types";
import { ChatModel } from "../src/app/chat";
import { boxKey } from "../src/app/outbox";
import type { Attention, Permission } from "../src/app/onscreen";
import type { NotificationText } from "../src/state/attention";
import { dividerBefore } from "../src/state/unread";
import type { SocketHandlers, SocketStatus } from "../src/net/socket";
import { BOB, created, FakeClock, flush, ME, msg, TEAM, update } from "./fixtures";

const OTHER = "o".repeat(31) + "2";

function team(id: string, over: Partial<Team> = {}): Team {
  return { id, name: id === TEAM ? "Core" : "Other", icon: "", active: true, meta_tags: [], members: [ME, BOB], admins: [ME], super_admin: ME, doc: "", ...over };
}

/** The tab as the model sees it: titles set, notifications shown (with their click), the permission. */
function fakeTab(permission: Permission | null = "granted") {
  const tab = {
    permission,
    titles: [] as string[],
    shown: [] as { text: NotificationText; click: () => void }[],
    dismissed: [] as string[],
    lookingHere: [] as [string | null, string | null][],
    elsewhere: new Set<string>(),
  };
  const port: Attention = {
    base: "chatstack",
    title: (text) => tab.titles.push(text),
    permission: () => tab.permission,
    ask: async () => {
      tab.permission = "granted";
    },
    show: (text, click) => tab.shown.push({ text, click }),
    dismiss: (tag) => tab.dismissed.push(tag),
    dismissAll: () => tab.dismissed.push("*all*"),
    looking: (tag, thread = null) => tab.lookingHere.push([tag, thread]),
    lookedAtElsewhere: (tag) => tab.elsewhere.has(tag),
  };
  return { tab, port };
}

function setup(saved: string | null = null, attention?: Attention) {
  const clock = new FakeClock();
  // The tab's remembered place (sessionStorage in the app).
  const place = {
    team: saved,
    conversation: "*",
    load: () => (place.team === null ? null : { team: place.team, conversation: place.conversation }),
    save: (t: string, c: string) => {
      place.team = t;
      place.conversation = c;
    },
    forget: () => {
      place.team = null;
    },
  };
  const sent: Record<string, unknown>[] = [];
  const reconnects: string[] = [];
  const calls: string[] = [];
  let handlers: SocketHandlers | null = null;
  let connected = false;
  const log = [created(msg(1)), created(msg(2))];
  // What the server holds: the user's teams, their unread counts, whether changes pages fail.
  const server = {
    teams: new Set([TEAM, OTHER]),
    unread: { [TEAM]: { count: 0, mentions: 0, last_read_seq: 2 } } as Record<string, Unread>,
    failChanges: false,
    members: [ME, BOB],
    users: new Map<string, string>([[BOB, "Bob"]]),
    userAsks: [] as string[],
    inactive: new Set<string>(),
    superAdmin: ME,
    admins: [ME],
    names: {} as Record<string, string>,
    teamReads: 0,
    failTeams: 0,
    online: [] as string[],
  };
  const api = {
    teams: async () => {
      if (server.failTeams > 0) {
        server.failTeams -= 1;
        throw new ApiError(503, "unavailable", "busy");
      }
      const named = (id: string) => (server.names[id] ? { name: server.names[id] } : {});
      const roles = { super_admin: server.superAdmin, admins: server.admins };
      return { data: [...server.teams].map((id) => team(id, { unread: server.unread[id], members: server.members, ...roles, ...named(id) })), meta: { has_more: false } };
    },
    // A team named "nnn..." is one the user just created: they are its only member.
    team: async (id: string) => {
      server.teamReads += 1;
      if (id === "n".repeat(32)) return team(id, { members: [ME] });
      const over: Partial<Team> = { unread: server.unread[id], members: server.members, active: !server.inactive.has(id), super_admin: server.superAdmin, admins: server.admins };
      return team(id, server.names[id] ? { ...over, name: server.names[id] } : over);
    },
    user: async (id: string) => {
      server.userAsks.push(id);
      return { id, email: `${id}@x`, name: server.users.get(id) ?? "Someone" };
    },
    presence: async () => server.members.map((user_id) => ({ user_id, status: server.online.includes(user_id) ? "online" : "offline" })),
    history: async (t: string, q: { before?: number }) => {
      calls.push(`history ${JSON.stringify(q)}`);
      return { data: log.map((c) => ({ ...c.message, channel_id: t })), meta: { has_more: false } };
    },
    changes: async (t: string, after: number) => {
      calls.push(`changes ${after}`);
      if (server.failChanges) throw new ApiError(503, "unavailable", "busy");
      const page = log.filter((c) => c.seq > after).map((c) => ({ ...c, message: { ...c.message, channel_id: t } }));
      return { data: page, meta: { has_more: false } };
    },
    leave: async (id: string) => {
      server.teams.delete(id);
    },
    markRead: async (_t: string, seq: number) => {
      calls.push(`read ${seq}`);
    },
    renameMe: async (name: string) => {
      if (!name.trim()) throw new ApiError(422, "invalid", "invalid profile", null, { name: "required" });
      return { id: ME, email: "me@x", name };
    },
  } as unknown as Api;
  const model = new ChatModel({
    api,
    me: { id: ME, email: "me@x", name: "Me" },
    clock,
    place,
    attention,
    newId: (() => {
      let n = 0;
      return () => `c${++n}`;
    })(),
    openSocket: (h) => {
      handlers = h;
      return {
        start: () => undefined,
        stop: () => undefined,
        send: (f: object) => {
          if (connected) sent.push(f as Record<string, unknown>);
          return connected;
        },
        reconnect: (detail: string) => {
          reconnects.push(detail);
        },
      };
    },
  });
  const hello = (extra: Partial<Hello> = {}) => {
    connected = true;
    handlers?.hello({ type: "hello", user_id: ME, channels: [TEAM, OTHER], relay: "r1", heartbeat_s: 20, ...extra });
  };
  const frame = (f: object) => handlers?.frame(f as Record<string, unknown>);
  const drop = () => (connected = false);
  const status = (to: SocketStatus) => handlers?.status(to, "");
  return { model, clock, sent, calls, log, server, hello, frame, drop, status, place, reconnects };
}

/** A model that has loaded its teams and been greeted by the socket, with the first page in. */
async function started(attention?: Attention) {
  const s = setup(null, attention);
  await s.model.start();
  s.hello();
  await flush();
  return s;
}

describe("ChatModel", () => {
  it("loads the open team's latest page, then resumes it from its cursor after each hello", async () => {
    const s = await started();
    expect(s.model.view(TEAM, "*").map((m) => m.seq)).toEqual([1, 2]);
    s.log.push(created(msg(3)));
    s.drop();
    s.hello();
    await flush();
    // The first page may predate the socket's subscription: each hello resumes from the cursor.
    expect(s.calls).toEqual(['history {"limit":50}', "changes 1", "changes 1"]);
    expect(s.model.view(TEAM, "*").map((m) => m.seq)).toEqual([1, 2, 3]);
  });

  it("shows presence as unknown while offline, and the server's again after the next hello", async () => {
    const s = setup();
    s.server.online = [BOB];
    await s.model.start();
    s.status("open");
    s.hello();
    await flush();
    expect(s.model.presence.status(TEAM, BOB)).toBe("online");
    s.drop();
    s.status("reconnecting");
    // Bob may have gone meanwhile: no frame can say so while the link is down.
    expect(s.model.presence.status(TEAM, BOB)).toBe("unknown");
    s.server.online = [];
    s.status("open");
    s.hello();
    await flush();
    expect(s.model.presence.status(TEAM, BOB)).toBe("offline");
    // A read asked for while open that lands after the link dropped is not shown.
    s.server.online = [BOB];
    s.status("open");
    s.hello();
    s.drop();
    s.status("reconnecting");
    await flush();
    expect(s.model.presence.status(TEAM, BOB)).toBe("unknown");
  });

  it("keeps what was typed and not sent per conversation, forgets a blank one, and all of it at sign-out", () => {
    const s = setup();
    s.model.keepUnsent("t/*", "half a sentence");
    s.model.keepUnsent("t/bob", "for bob");
    expect([s.model.unsent("t/*"), s.model.unsent("t/bob"), s.model.unsent("t/carol")]).toEqual(["half a sentence", "for bob", ""]);
    s.model.keepUnsent("t/*", "  ");
    expect(s.model.unsent("t/*")).toBe("");
    s.model.stop();
    expect(s.model.unsent("t/bob")).toBe("");
  });

  it("takes the edit window from hello, and keeps the default when the server does not say", async () => {
    const s = setup();
    await s.model.start();
    s.hello();
    expect(s.model.editWindowMs).toBe(300_000);
    s.drop();
    s.hello({ edit_window_s: 3600 });
    expect(s.model.editWindowMs).toBe(3_600_000);
  });

  it("shows a sent message as pending until its delivery, matched through the ack's id", async () => {
    const s = await started();
    s.model.sendText("hi");
    expect(s.sent).toEqual([{ channel_id: TEAM, to: "*", type: "text", data: "hi", client_msg_id: "c1" }]);
    expect(s.model.pendingIn(TEAM, "*", null)).toHaveLength(1);
    s.frame({ type: "ack", client_msg_id: "c1", id: "m9", seq: 9, ts: "" });
    expect(s.model.pendingIn(TEAM, "*", null)).toHaveLength(1);
    s.frame(msg(9, { from: ME, data: "hi" }));
    expect(s.model.pendingIn(TEAM, "*", null)).toHaveLength(0);
    expect(s.model.view(TEAM, "*").filter((m) => m.id === "m9")).toHaveLength(1);
  });

  it("sends what was never acknowledged again after a reconnect, with the same client_msg_id", async () => {
    const s = setup();
    await s.model.start();
    s.model.sendText("while offline");
    expect(s.sent).toEqual([]);
    s.hello();
    expect(s.sent.map((f) => f.client_msg_id)).toEqual(["c1"]);
    s.drop();
    s.hello();
    expect(s.sent.map((f) => f.client_msg_id)).toEqual(["c1", "c1"]);
  });

  it("marks a refused message as failed with the server's reason", async () => {
    const s = setup();
    await s.model.start();
    s.hello();
    s.model.sendText("x");
    s.frame({ type: "error", code: "too_large", message: "too long", client_msg_id: "c1" });
    expect(s.model.pendingIn(TEAM, "*", null)[0]).toMatchObject({ status: "failed", error: "too long" });
  });

  it("sends a thread reply again by itself while the server is briefly unavailable", async () => {
    const s = setup();
    await s.model.start();
    s.hello();
    s.model.sendText("a reply", "m1");
    // The relay checks a reply's root with the controller, which is restarting.
    s.frame({ type: "error", code: "unavailable", message: "temporarily unavailable; retry later", client_msg_id: "c1" });
    expect(s.model.pendingIn(TEAM, "*", "m1")[0]).toMatchObject({ status: "sending", error: null });
    s.clock.advance(1000);
    expect(s.sent.filter((f) => f.client_msg_id === "c1")).toHaveLength(2);
    expect(s.sent.at(-1)).toMatchObject({ thread_id: "m1", data: "a reply" });
  });

  it("sends no text the server would refuse, and says why", async () => {
    const s = setup();
    await s.model.start();
    s.hello();
    expect(s.model.sendText("x".repeat(4001))).toMatch(/^Too long/);
    expect(s.model.sendText("bell\u0007")).toMatch(/control character/);
    expect(s.sent).toEqual([]);
    expect(s.model.pendingIn(TEAM, "*", null)).toEqual([]);
  });

  it("offers no retry for a text refused for good, and hands it back to its composer", async () => {
    const s = setup();
    await s.model.start();
    s.hello();
    s.model.sendText("x", "m1");
    s.frame({ type: "error", code: "invalid", message: "text contains control characters", client_msg_id: "c1" });
    expect(s.model.pendingIn(TEAM, "*", "m1")[0]).toMatchObject({ status: "failed", retryable: false });
    s.model.retry("c1");
    expect(s.sent).toHaveLength(1);
    s.model.takeBack("c1");
    expect(s.model.pendingIn(TEAM, "*", "m1")).toEqual([]);
    expect(s.model.draft).toMatchObject({ box: `${TEAM}/thread/m1`, text: "x" });
    // A DM's refused text goes back to that DM's box, not to whichever is open when it is taken.
    s.model.openConversation(BOB);
    s.model.sendText("y");
    s.frame({ type: "error", code: "invalid", message: "no", client_msg_id: "c2" });
    s.model.openConversation("*");
    s.model.takeBack("c2");
    expect(s.model.draft).toMatchObject({ box: `${TEAM}/${BOB}`, text: "y" });
  });

  it("counts unread and mentions for a team that is not open, once per message", async () => {
    const s = setup();
    await s.model.start();
    s.hello();
    const m = msg(5, { channel_id: OTHER, data: `hey <@${ME}>` });
    s.frame(m);
    s.frame(m);
    expect([s.model.read(OTHER).count, s.model.read(OTHER).mentions]).toEqual([1, 1]);
    expect(s.model.announcement).toBe("New message from Bob in Other");
  });

  it("announces a message in the open conversation with mentions as names and attachments in words", async () => {
    const s = await started();
    s.model.selectTeam(TEAM);
    s.frame(msg(5, { data: `ping <@${ME}>` }));
    expect(s.model.announcement).toBe("Bob: ping @Me");
    s.frame(msg(6, { type: "image", data: "a".repeat(32) }));
    expect(s.model.announcement).toBe("Bob: sent an image");
  });

  it("lowers the live unread count when a counted message is deleted (an update frame)", async () => {
    const s = await started();
    const m = msg(5, { channel_id: OTHER, data: `hey <@${ME}>` });
    s.frame(m);
    s.frame(msg(6, { channel_id: OTHER }));
    s.frame(update(7, { ...m, deleted: true, data: "" }, "deleted"));
    s.frame(update(7, { ...m, deleted: true, data: "" }, "deleted"));
    expect([s.model.read(OTHER).count, s.model.read(OTHER).mentions]).toEqual([1, 0]);
  });

  it("moves the read mark with the user's own message as the server does, unless a DM to them below it is unread", async () => {
    const s = await started();
    s.frame(msg(3));
    s.frame(msg(4));
    expect(s.model.read(TEAM).count).toBe(2);
    s.frame(msg(5, { from: ME }));
    expect([s.model.read(TEAM).count, s.model.read(TEAM).lastRead]).toEqual([0, 5]);
    s.frame(msg(6, { to: ME }));
    s.frame(msg(7));
    s.frame(msg(8, { from: ME }));
    expect([s.model.read(TEAM).count, s.model.read(TEAM).lastRead]).toEqual([2, 5]);
    s.clock.advance(1000);
    // The server moved its own mark: nothing to report.
    expect(s.calls.filter((c) => c.startsWith("read"))).toEqual([]);
  });

  it("reports the read mark once, after a pause, as messages come into view", async () => {
    const s = await started();
    s.frame(msg(3));
    s.frame(msg(4));
    expect(s.model.read(TEAM).count).toBe(2);
    s.model.markSeen(3, true);
    s.model.markSeen(4, true);
    expect(s.model.read(TEAM).count).toBe(0);
    s.clock.advance(1000);
    expect(s.calls.filter((c) => c.startsWith("read"))).toEqual(["read 4"]);
  });

  it("forgets a team the user was removed from and opens another", async () => {
    const s = setup();
    await s.model.start();
    s.hello();
    s.frame({ type: "membership", channel_id: TEAM, event: "removed" });
    await flush();
    expect(s.model.teams.has(TEAM)).toBe(false);
    expect(s.model.selectedTeam).toBe(OTHER);
    expect(s.model.notices.at(-1)?.text).toBe("You are no longer a member of Core.");
  });

  it("says a removal learned at a reconnect, with the message written offline there, which waits in its box", async () => {
    const s = setup();
    await s.model.start();
    s.hello();
    await flush();
    s.drop();
    expect(s.model.sendText(`for <@${BOB}> while offline`)).toBeNull();
    // Removed meanwhile: the next hello and the team list no longer have the team.
    s.server.teams.delete(TEAM);
    s.hello({ channels: [OTHER] });
    await flush();
    expect(s.model.teams.has(TEAM)).toBe(false);
    expect(s.model.notices.map((n) => n.text)).toEqual([
      "You are no longer a member of Core. A message you wrote there could not be sent; kept in case you are added back.",
    ]);
    expect(s.model.unsent(boxKey(TEAM, "*", null))).toBe("for @Bob while offline");
  });

  it("replaces 'no longer a member' with 'added' when the user is added back to the team", async () => {
    const s = setup();
    await s.model.start();
    s.hello();
    s.frame({ type: "membership", channel_id: TEAM, event: "removed" });
    await flush();
    s.frame({ type: "membership", channel_id: TEAM, event: "added" });
    await flush();
    expect(s.model.notices.map((n) => n.text)).toEqual(["You were added to Core."]);
  });

  it("sends a thread reply to where its root went: a DM root gets a DM reply to the other person", async () => {
    const s = setup();
    s.log.push(created(msg(3, { to: ME, from: BOB })));
    await s.model.start();
    s.hello();
    await flush();
    s.model.sendText("answer", "m3");
    expect(s.sent.at(-1)).toMatchObject({ to: BOB, thread_id: "m3" });
  });

  it("lets news of being added fade after a few seconds, and keeps errors until dismissed", async () => {
    const s = setup();
    await s.model.start();
    s.hello();
    s.frame({ type: "membership", channel_id: OTHER, event: "added" });
    await flush();
    expect(s.model.notices.map((n) => n.text)).toEqual(["You were added to Other."]);
    s.clock.advance(10_000);
    expect(s.model.notices).toEqual([]);
  });

  it("opens the team this tab had open after a reload, and knows when 'no teams' is true", async () => {
    const first = setup();
    expect(first.model.teamsLoaded).toBe(false);
    await first.model.start();
    await flush();
    expect(first.model.teamsLoaded).toBe(true);
    first.model.selectTeam(OTHER);
    expect(first.place.team).toBe(OTHER);
    const reloaded = setup(OTHER);
    await reloaded.model.start();
    await flush();
    expect(reloaded.model.selectedTeam).toBe(OTHER);
    // A DM open at the reload opens again; one with someone no longer in the team does not.
    reloaded.model.openConversation(BOB);
    expect([reloaded.place.team, reloaded.place.conversation]).toEqual([OTHER, BOB]);
    const inDm = setup(OTHER);
    inDm.place.conversation = BOB;
    await inDm.model.start();
    await flush();
    expect([inDm.model.selectedTeam, inDm.model.conversation]).toEqual([OTHER, BOB]);
    for (const conversation of ["e".repeat(32), ME]) {
      // Someone who left the team, or the reader (there is no DM with oneself): the team's own.
      const left = setup(OTHER);
      left.place.conversation = conversation;
      await left.model.start();
      await flush();
      expect(left.model.conversation).toBe("*");
    }
    const gone = setup("f".repeat(32)); // a team this account no longer has: the first one
    await gone.model.start();
    await flush();
    expect(gone.model.selectedTeam).toBe(TEAM);
  });

  it("knows an account has no teams once hello says so, even when the first list read failed", async () => {
    const s = setup();
    s.server.teams.clear();
    s.server.failTeams = 1;
    await s.model.start();
    expect(s.model.teamsLoaded).toBe(false); // "Loading your teams…", not "No teams yet"
    s.hello({ channels: [] });
    await flush();
    expect(s.model.teamsLoaded).toBe(true);
  });

  it("shows names stored with text-direction controls without them, so they cannot pose as others", async () => {
    const s = setup();
    s.server.users.set(BOB, "Carol \u202eevil");
    await s.model.start();
    s.hello();
    await flush();
    await s.model.ensureUsers([BOB]);
    expect(s.model.name(BOB)).toBe("Carol evil");
  });

  /** A started model of a team whose super admin is `superAdmin`, which is then deactivated. */
  async function deactivatedBy(superAdmin: string) {
    const s = setup();
    s.server.superAdmin = superAdmin;
    await s.model.start();
    s.hello();
    await flush();
    s.server.inactive.add(TEAM);
    s.frame({ type: "membership", channel_id: TEAM, event: "deactivated" });
    await flush();
    expect(s.model.teams.get(TEAM)?.active).toBe(false);
    return s;
  }

  it("shows a team deactivated and then reactivated elsewhere as read-only, then writable again", async () => {
    const s = await deactivatedBy(BOB);
    expect(s.model.notices.map((n) => n.text)).toEqual(["Core was deactivated: it can be read, not written to."]);
    s.server.inactive.delete(TEAM);
    s.frame({ type: "membership", channel_id: TEAM, event: "activated" });
    await flush();
    expect(s.model.teams.get(TEAM)?.active).toBe(true);
    // The latest state replaces the earlier notice instead of stacking under it.
    expect(s.model.notices.map((n) => n.text)).toEqual(["Core was reactivated: you can write to it again."]);
  });

  it("tells the super admin who changed the team's status nothing more than their panel did", async () => {
    const s = await deactivatedBy(ME);
    expect(s.model.notices).toEqual([]);
  });

  it("tells of being added by someone else, not of a team the user just created", async () => {
    const s = setup();
    await s.model.start();
    s.hello();
    s.frame({ type: "membership", channel_id: OTHER, event: "added" });
    await flush();
    expect(s.model.notices.at(-1)?.text).toBe("You were added to Other.");
    const count = s.model.notices.length;
    s.frame({ type: "membership", channel_id: "n".repeat(32), event: "added" });
    await flush();
    expect(s.model.notices).toHaveLength(count);
  });

  it("takes a just-added member's -1 for 'not known yet' until the server's last recount, then for a real mark", async () => {
    const s = setup();
    await s.model.start();
    s.hello();
    s.server.unread[OTHER] = { count: 40, mentions: 0, last_read_seq: -1 }; // never written
    s.frame({ type: "membership", channel_id: OTHER, event: "added" });
    await flush();
    expect(s.model.listStart(OTHER)).toBe("bottom");
    for (let i = 0; i < 4; i++) {
      s.clock.advance(1500); // recount after recount still says -1
      await flush();
      expect(s.model.listStart(OTHER)).toBe("bottom");
    }
    for (let i = 0; i < 3; i++) {
      s.clock.advance(1500);
      await flush();
    }
    // Five recounts later the server has said -1 all along: it is the member's real mark.
    expect(s.model.listStart(OTHER)).not.toBe("bottom");
  });

  it("clears a thread reply's unread once the reader is at the end of the team's list", async () => {
    const s = await started();
    const root = msg(2);
    s.frame(msg(3, { thread_id: root.id }));
    s.frame(update(3, { ...root, thread: { replies: 1, last_reply_ts: root.ts } }, "thread"));
    expect(s.model.read(TEAM).count).toBe(1);
    // The main list ends with seq 2 (the reply lives in the thread panel).
    s.model.markSeen(2, true);
    expect([s.model.read(TEAM).count, s.model.read(TEAM).lastRead]).toEqual([0, 3]);
    s.clock.advance(1000);
    expect(s.calls.filter((c) => c.startsWith("read"))).toEqual(["read 3"]);
  });

  it("leaves an unread DM elsewhere unread when the team's list is read to its end", async () => {
    const s = await started();
    s.frame(msg(3, { to: ME }));
    s.frame(msg(4, { thread_id: "m1" }));
    s.model.markSeen(2, true);
    // The mark stays below the DM; the reply, read at the list's end, no longer counts here.
    expect([s.model.read(TEAM).count, s.model.read(TEAM).lastRead]).toEqual([1, 2]);
    expect(s.model.dmUnread(TEAM, BOB)).toBe(1);
  });

  it("clears the team once the DM is read after the list: a reply seen at the list's end holds nothing", async () => {
    const s = await started();
    s.frame(msg(3)); // a root
    s.frame(msg(4, { to: ME })); // a DM to me
    s.frame(msg(5, { thread_id: "m3" })); // a reply in the root's thread
    s.model.markSeen(3, true); // the team's list, read to its end: stops before the DM
    // The badge counts the DM alone: the reply was read at the list's end, held above the mark.
    expect([s.model.read(TEAM).count, s.model.read(TEAM).lastRead]).toEqual([1, 3]);
    s.model.openConversation(BOB);
    s.model.markSeen(4, true); // the DM's list, read to its end
    expect([s.model.read(TEAM).count, s.model.read(TEAM).lastRead]).toEqual([0, 5]);
  });

  it("reads older pages back to the read mark before moving it, so a DM below the first page is not marked read unseen", async () => {
    const s = setup();
    s.server.unread[TEAM] = { count: 5, mentions: 1, last_read_seq: 2 };
    const api = (s.model as unknown as { api: Record<string, unknown> }).api;
    // Above the mark: a DM to me (3), then team messages (4-7); the first page holds 5-7 only.
    const pages = [
      { before: undefined, data: [msg(5), msg(6), msg(7)], more: true },
      { before: 5, data: [msg(2), msg(3, { to: ME }), msg(4)], more: true },
    ];
    let fail = true;
    api.history = async (_t: string, q: { before?: number }) => {
      if (q.before !== undefined && fail) {
        fail = false;
        throw new ApiError(503, "unavailable", "busy");
      }
      const page = pages.find((p) => p.before === q.before);
      return { data: page?.data ?? [], meta: { has_more: page?.more ?? false } };
    };
    await s.model.start();
    s.hello();
    await flush();
    s.model.markSeen(7, true); // the team's list, read to its end
    expect(s.model.read(TEAM).lastRead).toBe(2); // nothing moves while the page below is out
    await flush();
    // The first read failed (503): asked again after a pause, the mark still where it was.
    s.model.markSeen(7, true);
    expect(s.model.read(TEAM).lastRead).toBe(2);
    s.clock.advance(2000);
    s.model.markSeen(7, true);
    await flush();
    expect(s.model.view(TEAM, "*").map((m) => m.seq)).toEqual([2, 4, 5, 6, 7]);
    s.model.markSeen(7, true);
    // Held now: the mark stops below the DM, which its row shows as new.
    expect([s.model.read(TEAM).lastRead, s.model.read(TEAM).count, s.model.read(TEAM).mentions]).toEqual([2, 1, 1]);
    expect(s.model.dmUnread(TEAM, BOB)).toBe(1);
  });

  it("stops reading back to the read mark after three failures, says so, and lets the mark move", async () => {
    const s = setup();
    s.server.unread[TEAM] = { count: 5, mentions: 0, last_read_seq: 2 };
    const api = (s.model as unknown as { api: Record<string, unknown> }).api;
    api.history = async (_t: string, q: { before?: number }) => {
      if (q.before !== undefined) throw new ApiError(503, "unavailable", "busy");
      return { data: [msg(5), msg(6), msg(7)], meta: { has_more: true } };
    };
    await s.model.start();
    s.hello();
    await flush();
    expect(s.model.listStart(TEAM)).toBe("wait");
    for (let attempt = 0; attempt < 3; attempt++) {
      s.model.markSeen(7, true);
      await flush();
      expect(s.model.read(TEAM).lastRead).toBe(2);
      s.clock.advance(2000);
    }
    expect(s.model.notices.map((n) => n.text)).toEqual(["Could not load older messages: busy"]);
    expect(s.model.listStart(TEAM)).toBe("divider");
    s.model.markSeen(7, true);
    expect(s.model.read(TEAM).lastRead).toBe(7);
  });

  it("reads back to the very start for a member who has read nothing since being added to an empty team, and marks nothing read unseen", async () => {
    const s = setup();
    s.server.unread[TEAM] = { count: 6, mentions: 0, last_read_seq: -1 };
    const asked: string[] = [];
    const api = (s.model as unknown as { api: Record<string, unknown> }).api;
    api.history = async (_t: string, q: { before?: number }) => {
      asked.push(String(q.before));
      if (q.before === undefined) return { data: [msg(5), msg(6), msg(7)], meta: { has_more: true } };
      return { data: [msg(2), msg(3), msg(4)], meta: { has_more: false } };
    };
    await s.model.start();
    s.hello();
    await flush();
    // The first page is the latest three of six unread: the list waits while the rest is read.
    expect(s.model.listStart(TEAM)).toBe("wait");
    s.model.markSeen(7, true);
    await flush();
    expect(s.model.read(TEAM).lastRead).toBe(-1);
    expect(asked).toEqual(["undefined", "5"]);
    // Now it opens at the divider, before the first message; read once scrolled through.
    expect(s.model.listStart(TEAM)).toBe("divider");
    s.model.markSeen(7, true);
    await flush();
    expect(s.model.read(TEAM).lastRead).toBe(7);
  });

  it("guesses nothing from an edit of a message it does not hold, and keeps the counts kept from live frames", async () => {
    const s = await started();
    s.model.read(TEAM).fromServer({ count: 3, mentions: 1, last_read_seq: 2 });
    s.server.unread[TEAM] = { count: 2, mentions: 0, last_read_seq: 2 }; // trails a live message
    s.frame(update(9, msg(4, { data: "mention edited out" })));
    s.clock.advance(5000);
    await flush();
    expect([s.model.read(TEAM).count, s.model.read(TEAM).mentions]).toEqual([3, 1]);
  });

  it("never marks read a DM that came before a reply seen in an open thread", async () => {
    const s = await started();
    s.model.openThread("m2");
    s.frame(msg(3, { to: ME }));
    s.frame(msg(4, { thread_id: "m2" }));
    s.model.markSeen(4); // the thread panel has the reply in view
    // The mark stops below the DM; the badge counts the DM alone (the reply was seen).
    expect([s.model.read(TEAM).count, s.model.read(TEAM).mentions, s.model.read(TEAM).lastRead]).toEqual([1, 1, 2]);
    expect(s.model.dmUnread(TEAM, BOB)).toBe(1);
    s.clock.advance(1000);
    expect(s.calls.filter((c) => c.startsWith("read"))).toEqual([]);
    s.model.openConversation(BOB);
    s.model.markSeen(3, true);
    expect([s.model.read(TEAM).count, s.model.read(TEAM).lastRead]).toEqual([0, 4]);
  });

  it("marks a root's replies that came since the conversation opened as new, until the thread is opened", async () => {
    const s = await started();
    s.frame(msg(3, { thread_id: "m1" }));
    s.frame(msg(4, { thread_id: "m1" }));
    expect(s.model.newReplies(TEAM).get("m1")).toBe(2);
    s.model.markSeen(2, true); // read to the end of the list: still new for this visit
    expect(s.model.newReplies(TEAM).get("m1")).toBe(2);
    s.model.openThread("m1");
    expect(s.model.newReplies(TEAM).get("m1")).toBeUndefined();
    s.model.openConversation("*"); // a later visit: what was read is no longer new
    s.frame(msg(5, { thread_id: "m1" }));
    expect(s.model.newReplies(TEAM).get("m1")).toBe(1);
  });

  it("marks a reply as new when it comes to a thread that was opened and closed in this visit", async () => {
    const s = await started();
    s.frame(msg(3, { thread_id: "m1" }));
    s.model.openThread("m1");
    s.model.openThread(null);
    expect(s.model.newReplies(TEAM).get("m1")).toBeUndefined();
    s.frame(msg(4, { thread_id: "m1" }));
    expect(s.model.newReplies(TEAM).get("m1")).toBe(1);
    expect(s.model.threadsWithNewReplies(TEAM).map((t) => [t.root, t.count])).toEqual([["m1", 1]]);
    // Open, it shows every reply: none is new there.
    s.model.openThread("m1");
    expect(s.model.newReplies(TEAM).get("m1")).toBeUndefined();
  });

  it("keeps pointing to a live reply's thread across visits until the thread is opened, though the mark passed it", async () => {
    const s = await started();
    s.frame(msg(3, { thread_id: "m1", data: "an answer far below its root" }));
    s.model.markSeen(3, true); // the end of the list: the mark passes the reply
    expect(s.model.read(TEAM).lastRead).toBe(3);
    s.model.openConversation(BOB);
    s.model.openConversation("*");
    expect(s.model.threadsWithNewReplies(TEAM).map((t) => [t.root, t.count])).toEqual([["m1", 1]]);
    expect(s.model.newReplies(TEAM).get("m1")).toBe(1);
    s.model.openThread("m1");
    s.model.openThread(null);
    s.model.openConversation("*");
    expect(s.model.threadsWithNewReplies(TEAM)).toEqual([]);
  });

  it("signals typing in a thread's box with the thread and its audience, and shows others' there only", async () => {
    const s = await started();
    s.frame(msg(3, { to: ME, from: BOB, data: "a DM root" }));
    s.model.openConversation(BOB);
    s.model.typed("m3");
    s.model.typed();
    expect(s.sent).toEqual([
      { type: "typing", channel_id: TEAM, to: BOB, thread_id: "m3" },
      { type: "typing", channel_id: TEAM, to: BOB },
    ]);
    s.frame({ type: "typing", channel_id: TEAM, to: ME, from: BOB, ts: "", thread_id: "m3" });
    expect(s.model.typingNames()).toEqual([]);
    expect(s.model.typingNames("m3")).toEqual(["Bob"]);
  });

  it("points to the open conversation's threads with new replies, newest first, whose roots may be far above", async () => {
    const s = await started();
    s.model.markSeen(2, true);
    // Replies to m1 (held) and to an old root not held; a DM's thread belongs to the DM.
    s.frame(msg(3, { thread_id: "m1" }));
    s.frame(msg(4, { thread_id: "m-old" }));
    s.frame(msg(5, { thread_id: "m1" }));
    s.frame(msg(6, { to: ME, thread_id: "m-dm" }));
    s.frame(msg(7, { thread_id: "m-mine", from: ME }));
    expect(s.model.threadsWithNewReplies(TEAM)).toEqual([
      { root: "m1", count: 2, author: BOB, excerpt: "text 1" },
      { root: "m-old", count: 1, author: null, excerpt: "" },
    ]);
    // The reader reaching the end of the list does not make them go: opening the thread does.
    s.model.markSeen(7, true);
    expect(s.model.threadsWithNewReplies(TEAM).map((t) => t.root)).toEqual(["m1", "m-old"]);
    s.model.openThread("m-old");
    s.model.openThread(null);
    expect(s.model.threadsWithNewReplies(TEAM).map((t) => t.root)).toEqual(["m1"]);
    // The DM with Bob has its own: the mark stayed below its unopened reply.
    s.model.openConversation(BOB);
    expect(s.model.threadsWithNewReplies(TEAM).map((t) => t.root)).toEqual(["m-dm"]);
  });

  it("reconnects when a send gets no answer in time, and not when it does", async () => {
    const s = await started();
    expect(s.model.sendText("answered")).toBeNull();
    const first = s.sent.at(-1) as { client_msg_id: string };
    s.frame({ type: "ack", client_msg_id: first.client_msg_id, id: "m9", seq: 9, ts: new Date().toISOString() });
    expect(s.model.sendText("lost on a dead link")).toBeNull();
    s.clock.advance(19_000);
    expect(s.reconnects).toEqual([]);
    s.clock.advance(1_000);
    expect(s.reconnects).toEqual(["the server did not answer"]);
  });

  it("keeps live counts when the team is read again for its members", async () => {
    const s = await started();
    s.model.selectTeam(OTHER);
    await flush();
    s.frame(msg(3));
    s.frame(msg(4, { to: ME }));
    // Opening the team re-reads it; the server's counts trail the fan-out and still say 0.
    s.model.selectTeam(TEAM);
    await flush();
    s.clock.advance(10_000);
    await flush();
    expect([s.model.read(TEAM).count, s.model.read(TEAM).mentions]).toEqual([2, 1]);
  });

  it("puts no divider above messages watched arriving, and one above those that came while hidden", async () => {
    const s = await started();
    expect(s.model.dividerAfter).toBe(2);
    s.frame(msg(3));
    s.model.markSeen(3, true);
    expect(dividerBefore(s.model.view(TEAM, "*"), s.model.dividerAfter, ME)).toBeNull();
    s.model.setPageVisible(false);
    s.frame(msg(4));
    s.frame(msg(5));
    s.model.setPageVisible(true);
    expect(dividerBefore(s.model.view(TEAM, "*"), s.model.dividerAfter, ME)).toBe("m4");
  });

  it("keeps the badge of a DM a read on another device did not cover, in a team not loaded here", async () => {
    const s = setup();
    await s.model.start();
    s.hello({ unread: { [OTHER]: { count: 0, mentions: 0 } } });
    await flush();
    s.frame(msg(11, { channel_id: OTHER, to: ME }));
    expect(s.model.read(OTHER).count).toBe(1);
    // The phone had seen up to 10 and marks that read; 11 is still unread on the server.
    s.server.unread[OTHER] = { count: 1, mentions: 1, last_read_seq: 10 };
    s.frame({ type: "read", channel_id: OTHER, seq: 10 });
    await flush();
    expect([s.model.read(OTHER).count, s.model.read(OTHER).mentions]).toEqual([1, 1]);
    expect(s.model.read(OTHER).lastRead).toBe(10);
  });

  it("counts what a resync recovered: the server's counts replace ours", async () => {
    const s = await started();
    s.model.selectTeam(OTHER);
    await flush();
    s.model.selectTeam(TEAM);
    await flush();
    // Bob's DM at seq 3 was lost live (a controller stream broke), so the relay says resync.
    s.log.push(created(msg(3, { to: ME })));
    s.server.unread[OTHER] = { count: 1, mentions: 1, last_read_seq: 2 };
    s.frame({ type: "resync" });
    await flush();
    expect(s.model.view(OTHER, BOB).map((m) => m.seq)).toEqual([3]);
    expect([s.model.read(OTHER).count, s.model.read(OTHER).mentions]).toEqual([1, 1]);
  });

  it("leaves no team buffering for good when a sync retry fires after the team was dropped", async () => {
    const s = await started();
    s.server.failChanges = true; // the resume fails (busy): a retry is due in 2 s
    s.frame({ type: "resync" });
    await flush();
    s.server.failChanges = false;
    s.server.teams.delete(TEAM); // removed meanwhile
    s.frame({ type: "membership", channel_id: TEAM, event: "removed" });
    await flush();
    s.clock.advance(2000);
    await flush();
    expect(s.model.timelines.has(TEAM)).toBe(false);
    // Added back, the team opens and shows what arrives.
    s.server.teams.add(TEAM);
    s.frame({ type: "membership", channel_id: TEAM, event: "added" });
    await flush();
    s.model.selectTeam(TEAM);
    await flush();
    s.frame(msg(7));
    await flush();
    expect(s.model.view(TEAM, "*").map((m) => m.seq)).toEqual([1, 2, 7]);
  });

  it("learns a member added since the list was read from their first message, and names them", async () => {
    const s = await started();
    const dave = "d".repeat(32);
    s.server.members = [ME, BOB, dave];
    s.server.users.set(dave, "Dave");
    s.frame(msg(3, { from: dave }));
    await flush();
    s.clock.advance(5000); // the list was read moments ago, on opening: once more after 5 s
    await flush();
    expect(s.model.teams.get(TEAM)?.members).toContain(dave);
    expect(s.model.name(dave)).toBe("Dave");
  });

  it("learns a member added since the list was read from their presence, so the DM list shows them before they write", async () => {
    const s = await started();
    const dave = "d".repeat(32);
    s.server.members = [ME, BOB, dave];
    s.server.users.set(dave, "Dave");
    s.frame({ type: "presence", channel_id: TEAM, user_id: dave, status: "online" });
    await flush();
    s.clock.advance(5000);
    await flush();
    expect(s.model.teams.get(TEAM)?.members).toContain(dave);
    expect(s.model.name(dave)).toBe("Dave");
    expect(s.model.presence.status(TEAM, dave)).toBe("online");
  });

  it("names the author of an old message who has left the team, asking for them once", async () => {
    const s = setup();
    const carol = "c".repeat(32);
    s.server.users.set(carol, "Carol");
    s.log.push(created(msg(3, { from: carol })));
    await s.model.start();
    s.hello();
    await flush();
    expect(s.model.name(carol)).toBe("…"); // asked for now
    await flush();
    expect(s.model.name(carol)).toBe("Carol");
    expect(s.server.userAsks.filter((id) => id === carol)).toHaveLength(1);
  });

  it("says a removal once, and nothing of it to a member who left by themselves", async () => {
    const s = await started();
    const removed = { type: "membership", channel_id: OTHER, event: "removed" };
    s.frame(removed);
    s.frame(removed); // from a second socket, or again after a reconnect
    await flush();
    expect(s.model.notices.map((n) => n.text)).toEqual(["You are no longer a member of Other."]);
    // Leaving: the frame the server sends for it may come before the call's answer.
    const leaving = s.model.leave(TEAM);
    s.frame({ type: "membership", channel_id: TEAM, event: "removed" });
    expect(await leaving).toBeNull();
    await flush();
    // The leaver hears of it once, in their own words, not as a removal.
    expect(s.model.notices.map((n) => n.text)).toEqual(["You are no longer a member of Other.", "You left Core."]);
  });

  it("asks again for a name the server was too busy to give, and gives up on one that does not exist", async () => {
    const s = setup();
    let busy = 2;
    const api = (s.model as unknown as { api: { user: (id: string) => Promise<unknown> } }).api;
    const real = api.user;
    api.user = async (id: string) => {
      if (id === "9".repeat(32)) throw new ApiError(404, "not_found", "no such user");
      if (busy-- > 0) throw new ApiError(429, "rate_limited", "too many requests");
      return real(id);
    };
    await s.model.start();
    s.hello();
    await flush();
    const asked = s.model.ensureUsers(["c".repeat(32), "9".repeat(32)]);
    await flush();
    expect(s.model.name("c".repeat(32))).toBe("…");
    s.clock.advance(1000);
    await flush();
    s.clock.advance(2000);
    await flush();
    await asked;
    expect(s.model.name("c".repeat(32))).toBe("Someone");
    expect(s.model.name("9".repeat(32))).toBe("…");
  });

  it("reads the team again when a change is refused for a role the page thought it had, or for a member already gone", async () => {
    for (const refusal of [new ApiError(403, "forbidden", "only team admins can add or remove members"), new ApiError(404, "not_found", "no such member in this team")]) {
      const s = await started();
      const api = (s.model as unknown as { api: Record<string, unknown> }).api;
      api.removeMember = async () => {
        throw refusal;
      };
      s.server.members = [ME];
      expect(await s.model.removeMember(TEAM, BOB)).toContain(refusal.message);
      await flush();
      expect(s.model.teams.get(TEAM)?.members).toEqual([ME]);
    }
  });

  it("keeps the unsent text of a team the user was removed from, and gives it back when they are added again", async () => {
    const s = await started();
    s.model.keepUnsent(`${TEAM}/*`, "half a sentence");
    s.model.keepUnsent(`${OTHER}/*`, "elsewhere");
    s.server.teams.delete(TEAM);
    s.frame({ type: "membership", channel_id: TEAM, event: "removed" });
    await flush();
    s.model.keepUnsent(`${TEAM}/*`, "half a sentence, more"); // the box, closing
    s.server.teams.add(TEAM);
    s.frame({ type: "membership", channel_id: TEAM, event: "added" });
    await flush();
    expect([s.model.unsent(`${TEAM}/*`), s.model.unsent(`${OTHER}/*`)]).toEqual(["half a sentence, more", "elsewhere"]);
  });

  it("says what to do when the address to add has no account yet", async () => {
    const s = await started();
    const api = (s.model as unknown as { api: Record<string, unknown> }).api;
    api.addMember = async () => {
      throw new ApiError(404, "not_found", "no such user");
    };
    expect(await s.model.addMember(TEAM, "ghost@example.com")).toBe(
      "nobody has an account with this address yet: ask them to create one here, then add them again",
    );
  });

  it("reads the teams again every five minutes while the page is on screen: members of the open one, another's new name", async () => {
    const s = await started();
    const api = (s.model as unknown as { api: Record<string, unknown> }).api;
    const list = api.teams as () => Promise<{ data: Team[] }>;
    api.teams = async () => {
      const page = await list();
      return { ...page, data: page.data.map((t) => (t.id === OTHER ? { ...t, name: "Renamed" } : t)) };
    };
    s.server.members = [ME]; // Bob left; the frame saying so was missed
    s.clock.advance(300_000);
    await flush();
    expect(s.model.teams.get(TEAM)?.members).toEqual([ME]);
    expect(s.model.teams.get(OTHER)?.name).toBe("Renamed");
    s.server.members = [ME, BOB];
    s.model.setPageVisible(false);
    s.clock.advance(300_000);
    await flush();
    expect(s.model.teams.get(TEAM)?.members).toEqual([ME]);
  });

  it("keeps a team change that came while the five-minute list read was out over that list's older copy", async () => {
    const s = await started();
    const api = (s.model as unknown as { api: Record<string, unknown> }).api;
    const list = api.teams as () => Promise<{ data: Team[] }>;
    let answer: () => void = () => undefined;
    api.teams = () => {
      const old = list(); // the list as it stands when asked: the team still active
      return new Promise((resolve) => (answer = () => resolve(old)));
    };
    s.clock.advance(300_000);
    await flush();
    s.server.inactive.add(TEAM);
    s.server.superAdmin = BOB;
    s.frame({ type: "membership", channel_id: TEAM, event: "deactivated" });
    await flush();
    expect(s.model.teams.get(TEAM)?.active).toBe(false);
    answer();
    await flush();
    expect(s.model.teams.get(TEAM)?.active).toBe(false);
  });

  it("reads a team again on `team` frames, once for a burst of them, and tells the user their role changed", async () => {
    const s = await started();
    s.server.superAdmin = BOB;
    s.server.admins = [BOB];
    s.server.names[TEAM] = "Core renamed";
    s.server.members = [ME, BOB, "c".repeat(32)];
    s.server.users.set("c".repeat(32), "Carol");
    const reads = s.server.teamReads;
    for (const change of ["settings", "roles", "members", "roles"]) s.frame({ type: "team", channel_id: TEAM, change });
    s.frame({ type: "team", channel_id: "z".repeat(32), change: "settings" }); // a team not held: ignored
    await flush();
    expect(s.model.teams.get(TEAM)?.name).toBe("Core"); // read after a moment, not at once
    s.clock.advance(1000);
    await flush();
    expect(s.server.teamReads - reads).toBe(1);
    const core = s.model.teams.get(TEAM);
    expect([core?.name, core?.super_admin, core?.members.length]).toEqual(["Core renamed", BOB, 3]);
    expect(s.server.userAsks).toContain("c".repeat(32)); // the newcomer's name is looked up
    expect(s.model.notices.map((n) => n.text)).toEqual(["You are no longer an admin of Core renamed."]);
    s.server.admins = [BOB, ME];
    s.frame({ type: "team", channel_id: TEAM, change: "roles" });
    s.clock.advance(3000); // at least 3 s after the last read
    await flush();
    expect(s.model.notices.at(-1)?.text).toBe("You are now an admin of Core renamed.");
  });

  it("says nothing of a role change the user made in this page (a transfer makes them a plain admin)", async () => {
    const s = await started();
    const api = (s.model as unknown as { api: Record<string, unknown> }).api;
    api.transferSuperAdmin = async () => team(TEAM, { super_admin: BOB, admins: [ME, BOB] });
    expect(await s.model.transfer(TEAM, BOB)).toBeNull();
    expect(s.model.teams.get(TEAM)?.super_admin).toBe(BOB);
    s.server.superAdmin = BOB;
    s.server.admins = [ME, BOB];
    s.frame({ type: "team", channel_id: TEAM, change: "roles" });
    s.clock.advance(1000);
    await flush();
    expect(s.model.notices).toEqual([]);
  });

  it("does not put the panel's slow read of a team over the newer copy a `team` frame brought, nor tell of a role change back", async () => {
    const s = setup();
    s.server.superAdmin = BOB;
    s.server.admins = [BOB];
    await s.model.start();
    s.hello();
    await flush();
    const api = (s.model as unknown as { api: Record<string, unknown> }).api;
    const read = api.team as (id: string) => Promise<Team>;
    let answer: () => void = () => undefined;
    api.team = (id: string) => {
      const old = read(id); // Me a plain member, as it stands when asked
      api.team = read;
      return new Promise((resolve) => (answer = () => resolve(old)));
    };
    const opening = s.model.refreshTeam(TEAM); // the panel opens; its read is slow
    s.server.admins = [BOB, ME];
    s.frame({ type: "team", channel_id: TEAM, change: "roles" });
    s.clock.advance(1000);
    await flush();
    answer();
    await opening;
    await flush();
    expect(s.model.teams.get(TEAM)?.admins).toEqual([BOB, ME]);
    expect(s.model.notices.map((n) => n.text)).toEqual(["You are now an admin of Core."]);
  });

  it("says nothing of a role change whose frame is read before the answer to the change made here", async () => {
    const s = await started();
    const api = (s.model as unknown as { api: Record<string, unknown> }).api;
    let answer: () => void = () => undefined;
    api.transferSuperAdmin = () => new Promise((resolve) => (answer = () => resolve(team(TEAM, { super_admin: BOB, admins: [ME, BOB] }))));
    const transfer = s.model.transfer(TEAM, BOB);
    s.server.superAdmin = BOB;
    s.server.admins = [ME, BOB];
    s.frame({ type: "team", channel_id: TEAM, change: "roles" });
    s.clock.advance(1000);
    await flush();
    expect(s.model.teams.get(TEAM)?.super_admin).toBe(BOB);
    answer();
    expect(await transfer).toBeNull();
    expect(s.model.notices).toEqual([]);
  });

  it("reads the teams again at the first hello when the list was read well before it (the relays were slow)", async () => {
    const s = setup();
    const api = (s.model as unknown as { api: Record<string, unknown> }).api;
    const list = api.teams as () => Promise<unknown>;
    let lists = 0;
    api.teams = () => {
      lists += 1;
      return list();
    };
    await s.model.start();
    s.hello(); // at once: the list holds
    await flush();
    expect(lists).toBe(1);
    const late = setup();
    await late.model.start();
    late.server.names[OTHER] = "Renamed before the hello";
    late.clock.advance(5000);
    late.hello();
    await flush();
    expect(late.model.teams.get(OTHER)?.name).toBe("Renamed before the hello");
  });

  it("tells of a dismissal read while the user's own change was out, and that change's older answer does not undo it", async () => {
    const s = await started();
    s.server.superAdmin = BOB;
    s.server.admins = [BOB, ME];
    await s.model.refreshTeam(TEAM); // Me an admin
    const api = (s.model as unknown as { api: Record<string, unknown> }).api;
    let answer: () => void = () => undefined;
    // The answer to Me's rename, built before Bob dismissed Me.
    api.patchTeam = () => new Promise((resolve) => (answer = () => resolve(team(TEAM, { name: "Mine", super_admin: BOB, admins: [BOB, ME] }))));
    const saving = s.model.updateTeam(TEAM, { name: "Mine" });
    s.server.admins = [BOB];
    s.server.names[TEAM] = "Mine";
    s.frame({ type: "team", channel_id: TEAM, change: "roles" });
    s.clock.advance(1000);
    await flush();
    expect(s.model.notices.map((n) => n.text)).toEqual(["You are no longer an admin of Mine."]);
    answer();
    expect(await saving).toBeNull();
    await flush();
    // Put, then read again: the answer may be the older copy.
    expect(s.model.teams.get(TEAM)?.admins).toEqual([BOB]);
  });

  it("says what a reconnection's list brings: a team the user was removed from, one they were added to", async () => {
    const s = await started();
    const joined = "j".repeat(32);
    s.server.teams.delete(OTHER);
    s.server.teams.add(joined);
    s.drop();
    s.hello({ channels: [TEAM, joined] });
    await flush();
    expect([...s.model.teams.keys()].sort()).toEqual([TEAM, joined].sort());
    expect(s.model.notices.map((n) => n.text)).toEqual(["You are no longer a member of Other.", "You were added to Other."]);
  });

  it("forgets the tab's place when the team it names is left and no other is held", async () => {
    const s = setup();
    s.server.teams.delete(OTHER);
    await s.model.start();
    s.hello({ channels: [TEAM] });
    await flush();
    expect(s.place.team).toBe(TEAM);
    s.server.teams.delete(TEAM);
    s.frame({ type: "membership", channel_id: TEAM, event: "removed" });
    await flush();
    expect(s.place.team).toBeNull();
  });

  it("keeps a team joined and a team left while a list read was out as they are, not as the list says", async () => {
    const s = await started();
    const api = (s.model as unknown as { api: Record<string, unknown> }).api;
    const list = api.teams as () => Promise<unknown>;
    let answer: () => void = () => undefined;
    api.teams = () => {
      const old = list(); // Core and Other, as they stand when asked
      api.teams = list;
      return new Promise((resolve) => (answer = () => resolve(old)));
    };
    s.frame({ type: "resync" });
    await flush();
    const joined = "j".repeat(32);
    s.server.teams.add(joined);
    s.frame({ type: "membership", channel_id: joined, event: "added" });
    s.server.teams.delete(OTHER);
    s.frame({ type: "membership", channel_id: OTHER, event: "removed" });
    await flush();
    answer();
    await flush();
    expect([...s.model.teams.keys()].sort()).toEqual([TEAM, joined].sort());
  });

  it("asks for a team again when a newer copy was put while its read was out", async () => {
    const s = await started();
    const api = (s.model as unknown as { api: Record<string, unknown> }).api;
    const read = api.team as (id: string) => Promise<Team>;
    let answer: () => void = () => undefined;
    api.team = (id: string) => {
      const old = read(id); // the team as it stands when asked
      api.team = read;
      return new Promise((resolve) => (answer = () => resolve(old)));
    };
    s.frame({ type: "team", channel_id: TEAM, change: "settings" });
    s.clock.advance(1000);
    await flush();
    // Renamed here meanwhile: the answer comes back, then the slow read's older copy lands.
    s.server.names[TEAM] = "Renamed here";
    api.patchTeam = async () => team(TEAM, { name: "Renamed here" });
    await s.model.updateTeam(TEAM, { name: "Renamed here" });
    answer();
    await flush();
    expect(s.model.teams.get(TEAM)?.name).toBe("Renamed here");
  });

  it("reads the teams again after a reconnection: their frames of that time never came", async () => {
    const s = await started();
    s.server.names[OTHER] = "Renamed while away";
    s.drop();
    s.hello();
    await flush();
    expect(s.model.teams.get(OTHER)?.name).toBe("Renamed while away");
  });

  it("reads a newcomer's counts again once the server has written their joining position", async () => {
    const s = setup();
    s.server.teams.clear();
    await s.model.start();
    s.hello();
    await flush();
    s.server.teams.add(TEAM);
    s.server.unread[TEAM] = { count: 2, mentions: 0, last_read_seq: -1 }; // not written yet
    s.frame({ type: "membership", channel_id: TEAM, event: "added" });
    await flush();
    expect(s.model.read(TEAM).count).toBe(2);
    s.clock.advance(1500); // asked again: still not written
    await flush();
    expect(s.model.read(TEAM).count).toBe(2);
    s.server.unread[TEAM] = { count: 0, mentions: 0, last_read_seq: 2 };
    s.clock.advance(1500);
    await flush();
    expect([s.model.read(TEAM).count, s.model.read(TEAM).lastRead]).toEqual([0, 2]);
  });

  it("takes someone with no team open to the team they were just added to", async () => {
    const s = setup();
    s.server.teams.clear();
    await s.model.start();
    s.hello();
    await flush();
    expect(s.model.selectedTeam).toBeNull();
    s.server.teams.add(TEAM);
    s.frame({ type: "membership", channel_id: TEAM, event: "added" });
    await flush();
    expect(s.model.selectedTeam).toBe(TEAM);
  });
});

describe("ChatModel and the tab (title, desktop notifications)", () => {
  it("shows mentions and DMs waiting in the title, a dot for the rest, and the bare name once read", async () => {
    const { tab, port } = fakeTab();
    const s = await started(port);
    s.server.unread[OTHER] = { count: 0, mentions: 0, last_read_seq: 5 };
    s.frame(msg(3));
    await flush();
    s.frame(msg(4, { to: ME }));
    s.frame(msg(5, { channel_id: OTHER, data: `<@${ME}> look` }));
    await flush();
    expect(s.model.mentionsWaiting()).toBe(2);
    s.model.markSeen(3, true); // the team's list: the mark stops below the DM
    await flush();
    s.model.openConversation(BOB);
    s.model.markSeen(4, true);
    await flush();
    s.frame({ type: "read", channel_id: OTHER, seq: 5 }); // read on another device
    await flush();
    await flush();
    // Each title once, in order: an unchanged title is not set again.
    expect(tab.titles).toEqual(["chatstack", "• chatstack", "(2) chatstack", "(1) chatstack", "chatstack"]);
    expect(s.model.mentionsWaiting()).toBe(0); // what the phone's ☰ shows, the same number
  });

  it("closes a conversation's notifications once it is on screen: opened, or the page shown again", async () => {
    const { tab, port } = fakeTab();
    const s = await started(port);
    s.model.setPageVisible(false);
    tab.dismissed.length = 0;
    s.frame(msg(4, { to: ME }));
    await flush();
    expect(tab.shown.map((n) => n.text.tag)).toEqual([`chatstack:${TEAM}:${BOB}`]);
    expect(tab.dismissed).toEqual([]); // hidden: nothing is on screen
    s.model.setPageVisible(true);
    expect(tab.dismissed).toEqual([`chatstack:${TEAM}:*`]); // the team's list, not the DM
    s.model.openConversation(BOB);
    expect(tab.dismissed.at(-1)).toBe(`chatstack:${TEAM}:${BOB}`);
  });

  it("takes the title from the server's counts at start and again on each hello", async () => {
    const { tab, port } = fakeTab();
    const s = setup(null, port);
    s.server.unread[OTHER] = { count: 3, mentions: 2, last_read_seq: 0 };
    await s.model.start();
    s.hello();
    await flush();
    expect(tab.titles.at(-1)).toBe("(2) chatstack");
    s.drop();
    s.hello({ unread: { [OTHER]: { count: 1, mentions: 0 } } });
    await flush();
    expect(tab.titles.at(-1)).toBe("• chatstack");
  });

  it("gives the tab its base title back on signing out, closes its notifications, and sets no title after", async () => {
    const { tab, port } = fakeTab();
    const s = await started(port);
    s.frame(msg(3, { to: ME }));
    await flush();
    expect(tab.titles.at(-1)).toBe("(1) chatstack");
    s.model.stop();
    expect(tab.titles.at(-1)).toBe("chatstack");
    expect(tab.dismissed.at(-1)).toBe("*all*");
    s.frame(msg(4, { to: ME }));
    await flush();
    expect(tab.titles.at(-1)).toBe("chatstack");
  });

  it("notifies a DM that arrives while another conversation is open, by sender, text and conversation", async () => {
    const { tab, port } = fakeTab();
    const s = await started(port);
    s.frame(msg(3, { to: ME, data: "lunch?" }));
    expect(tab.shown.map((n) => n.text)).toEqual([{ title: "Bob (direct message in Core)", body: "lunch?", tag: `chatstack:${TEAM}:${BOB}` }]);
  });

  it("notifies nothing while the reader looks at the conversation, and does once the page is hidden", async () => {
    const { tab, port } = fakeTab();
    const s = await started(port);
    s.model.openConversation(BOB);
    s.frame(msg(3, { to: ME }));
    expect(tab.shown).toHaveLength(0);
    s.model.setPageVisible(false);
    s.frame(msg(4, { to: ME }));
    expect(tab.shown).toHaveLength(1);
  });

  it("notifies a mention in a team that is not open, titled with that team and names for mentions", async () => {
    const { tab, port } = fakeTab();
    const s = await started(port);
    s.frame(msg(3, { channel_id: OTHER, data: `<@${ME}> ping` }));
    expect(tab.shown.map((n) => [n.text.title, n.text.body])).toEqual([["Bob in Other", "@Me ping"]]);
  });

  it("stays quiet for my own messages, plain team messages, edits, reactions, repeats and replies not for me", async () => {
    const { tab, port } = fakeTab();
    const s = await started(port);
    s.model.setPageVisible(false);
    s.frame(msg(3, { from: ME, to: BOB })); // mine, from another device
    s.frame(msg(4, { from: ME, data: `<@${ME}> reminder` }));
    s.frame(msg(5));
    s.frame(update(6, { ...msg(2), data: `now naming <@${ME}>`, edited_ts: "x" }, "edited"));
    s.frame(update(7, { ...msg(1, { to: ME }), reactions: [{ emoji: "👍", count: 1, users: [BOB] }] }, "reaction"));
    s.frame(msg(8, { thread_id: "m1" }));
    expect(tab.shown).toHaveLength(0);
    const dm = msg(9, { to: ME });
    s.frame(dm);
    s.frame(dm); // delivered again
    expect(tab.shown).toHaveLength(1);
  });

  it("notifies nothing a resync brought, even when its live frame comes after, nor a redelivery below the cursor", async () => {
    const { tab, port } = fakeTab();
    const s = setup(null, port);
    s.server.unread[TEAM] = { count: 2, mentions: 0, last_read_seq: -1 };
    await s.model.start();
    s.hello();
    await flush();
    s.model.setPageVisible(false);
    s.log.push(created(msg(3, { to: ME })));
    s.frame({ type: "resync" });
    await flush();
    expect(s.model.view(TEAM, BOB).map((m) => m.seq)).toEqual([3]);
    s.frame(msg(3, { to: ME })); // its live copy, late
    s.frame(msg(0, { to: ME })); // an old message delivered again, below what the page holds
    expect(tab.shown).toHaveLength(0);
    s.frame(msg(4, { to: ME }));
    expect(tab.shown).toHaveLength(1);
  });

  it("notifies a reply in a thread I started or replied in, and not one in a thread of others", async () => {
    const { tab, port } = fakeTab();
    const s = await started(port);
    s.model.setPageVisible(false);
    s.frame(msg(3, { from: ME, data: "my question" }));
    s.frame(msg(4, { thread_id: "m3", data: "an answer" })); // to my root
    s.frame(msg(5, { thread_id: "m1", data: "chatter" })); // Bob's root, I never replied
    s.frame(msg(6, { thread_id: "m1", from: ME, data: "me too" }));
    s.clock.advance(6000);
    s.frame(msg(7, { thread_id: "m1", data: "and you?" })); // now I am in that thread
    expect(tab.shown.map((n) => n.text.body)).toEqual(["an answer", "and you?"]);
  });

  it("notifies a thread reply that mentions me, and its click opens the thread", async () => {
    const { tab, port } = fakeTab();
    const s = await started(port);
    s.model.setPageVisible(false);
    s.frame(msg(3, { thread_id: "m1", data: `<@${ME}> thoughts?` }));
    expect(tab.shown.map((n) => n.text.title)).toEqual(["Bob in Core"]);
    tab.shown[0]?.click();
    expect([s.model.selectedTeam, s.model.conversation, s.model.threadRoot]).toEqual([TEAM, "*", "m1"]);
  });

  it("notifies a thread reply that mentions me while its channel is on screen but the thread is not", async () => {
    const { tab, port } = fakeTab();
    const s = await started(port);
    tab.elsewhere.add(`chatstack:${TEAM}:*`); // another tab shows the channel too
    s.frame(msg(3, { thread_id: "m1", data: `<@${ME}> thoughts?` }));
    expect(tab.shown.map((n) => n.text.body)).toEqual(["@Me thoughts?"]);
    s.model.openThread("m1");
    await flush();
    expect(tab.lookingHere.at(-1)).toEqual([`chatstack:${TEAM}:*`, `chatstack:${TEAM}:*#m1`]); // the other tabs hear it
    s.clock.advance(10_000); // past the conversation's quiet window
    s.frame(msg(4, { thread_id: "m1", data: `<@${ME}> and?` }));
    expect(tab.shown).toHaveLength(1); // the thread is open: read as it comes
  });

  it("does not notify a thread reply whose thread another tab has open", async () => {
    const { tab, port } = fakeTab();
    const s = await started(port);
    s.model.setPageVisible(false);
    tab.elsewhere.add(`chatstack:${TEAM}:*#m1`);
    s.frame(msg(3, { thread_id: "m1", data: `<@${ME}> thoughts?` }));
    expect(tab.shown).toHaveLength(0);
    s.frame(msg(4, { thread_id: "m2", data: `<@${ME}> and here?` }));
    expect(tab.shown).toHaveLength(1);
  });

  it("opens a clicked notification's conversation in its team", async () => {
    const { tab, port } = fakeTab();
    const s = await started(port);
    s.frame(msg(3, { channel_id: OTHER, to: ME }));
    tab.shown[0]?.click();
    expect([s.model.selectedTeam, s.model.conversation, s.model.threadRoot]).toEqual([OTHER, BOB, null]);
  });

  it("lets one notification per conversation through every few seconds, each conversation on its own", async () => {
    const { tab, port } = fakeTab();
    const s = await started(port);
    s.model.setPageVisible(false);
    s.frame(msg(3, { to: ME }));
    s.frame(msg(4, { to: ME }));
    s.frame(msg(5, { data: `<@${ME}>` }));
    expect(tab.shown.map((n) => n.text.tag)).toEqual([`chatstack:${TEAM}:${BOB}`, `chatstack:${TEAM}:*`]);
    expect(tab.shown[0]?.text.body).toBe("text 3");
  });

  it("does not notify what another tab has on screen, and tells the others what this one shows", async () => {
    const { tab, port } = fakeTab();
    const s = await started(port);
    s.model.setPageVisible(false);
    expect(tab.lookingHere.at(-1)).toEqual([null, null]);
    tab.elsewhere.add(`chatstack:${TEAM}:${BOB}`);
    s.frame(msg(3, { to: ME }));
    await flush();
    expect(tab.shown).toEqual([]);
    tab.elsewhere.clear();
    s.frame(msg(4, { to: ME }));
    await flush();
    expect(tab.shown).toHaveLength(1);
    s.model.setPageVisible(true);
    s.model.openConversation(BOB);
    await flush();
    expect(tab.lookingHere.at(-1)).toEqual([`chatstack:${TEAM}:${BOB}`, null]);
    s.model.stop();
    expect(tab.lookingHere.at(-1)).toEqual([null, null]);
  });

  it("shows the latest of a burst when the quiet window ends, in place of the first", async () => {
    const { tab, port } = fakeTab();
    const s = await started(port);
    s.model.setPageVisible(false);
    s.frame(msg(3, { to: ME, data: "hey" }));
    s.clock.advance(1500);
    s.frame(msg(4, { to: ME, data: "are you there" }));
    s.frame(msg(5, { to: ME, data: "URGENT: checkout is failing" }));
    expect(tab.shown.map((n) => n.text.body)).toEqual(["hey"]);
    s.clock.advance(3500);
    expect(tab.shown.map((n) => n.text.body)).toEqual(["hey", "URGENT: checkout is failing"]);
    expect(new Set(tab.shown.map((n) => n.text.tag)).size).toBe(1); // it replaces the first
    // A burst the reader looks at before its window ends is not shown afterwards.
    s.frame(msg(6, { to: ME, data: "one more" }));
    s.model.setPageVisible(true);
    s.model.openConversation(BOB);
    s.clock.advance(5000);
    expect(tab.shown).toHaveLength(2);
  });

  it("names a sender new to the page (someone just added) instead of showing Someone", async () => {
    const { tab, port } = fakeTab();
    const s = await started(port);
    s.model.setPageVisible(false);
    const dan = "d".repeat(32);
    s.server.users.set(dan, "Dan");
    s.frame(msg(3, { from: dan, data: `<@${ME}> your numbers?` }));
    await flush();
    await flush();
    expect(tab.shown.map((n) => n.text.title)).toEqual(["Dan in Core"]);
  });

  it("offers to turn notifications on only while the browser has not asked, and notifies once granted", async () => {
    const { tab, port } = fakeTab("default");
    const s = await started(port);
    s.frame(msg(3, { to: ME }));
    expect(tab.shown).toHaveLength(0);
    expect(s.model.canAskToNotify()).toBe(true);
    const version = s.model.version;
    await s.model.askToNotify();
    expect(s.model.version).toBeGreaterThan(version); // the offer goes from the view
    expect(s.model.canAskToNotify()).toBe(false);
    s.frame(msg(4, { to: ME }));
    expect(tab.shown).toHaveLength(1);
  });

  it("neither offers nor notifies where notifications are refused or do not exist", async () => {
    for (const permission of ["denied", null] as const) {
      const { tab, port } = fakeTab(permission);
      const s = await started(port);
      expect(s.model.canAskToNotify()).toBe(false);
      s.frame(msg(3, { to: ME }));
      expect(tab.shown).toHaveLength(0);
    }
  });

  it("shows the user's new name everywhere at once once the server has it, and keeps the old one on a refusal", async () => {
    const s = setup();
    await s.model.start();
    await s.model.rename("Me Renamed");
    expect(s.model.me.name).toBe("Me Renamed");
    expect(s.model.name(ME)).toBe("Me Renamed");
    await expect(s.model.rename("  ")).rejects.toMatchObject({ status: 422 });
    expect(s.model.me).toMatchObject({ id: ME, email: "me@x", name: "Me Renamed" });
  });

  it("shows a member's new name as soon as a profile frame tells it, without asking the server again", async () => {
    const s = setup();
    s.server.users.set(BOB, "Bob");
    await s.model.start();
    s.hello();
    await flush();
    await s.model.ensureUsers([BOB]);
    const asked = s.server.userAsks.length;
    s.frame({ type: "profile", channel_id: TEAM, user_id: BOB, name: "Robert \u202eevil" });
    expect(s.model.name(BOB)).toBe("Robert evil"); // shown without its direction controls
    // The user's own rename made in another tab shows here too.
    s.frame({ type: "profile", channel_id: TEAM, user_id: ME, name: "Me Elsewhere" });
    expect([s.model.me.name, s.model.name(ME)]).toEqual(["Me Elsewhere", "Me Elsewhere"]);
    // Someone not looked up yet is not added from a frame (the lookup brings the name), and a
    // frame missing its fields changes nothing.
    const carol = "c".repeat(32);
    s.frame({ type: "profile", channel_id: TEAM, user_id: carol, name: "Carol" });
    s.frame({ type: "profile", channel_id: TEAM, user_id: BOB });
    expect(s.model.users.has(carol)).toBe(false);
    expect(s.model.name(BOB)).toBe("Robert evil");
    expect(s.server.userAsks.slice(asked)).toEqual([]);
  });
});
