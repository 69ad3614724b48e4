// What calls the user back to the tab, without the DOM: the tab's title (how many mentions and
// DMs wait, or only that something is unread), whether a live message makes a desktop
// notification, what that notification says, and how often one conversation may make one.
// app/chat.ts decides when to ask (a message that arrived live); app/tab.ts does the browser's part.
import type { Message } from "../api/types";
import { shownName } from "../text/bidi";
import { conversationOf } from "./typing";
import { mentions } from "./unread";

/** What one team has waiting: ReadState's `count` and `mentions` (a DM to the reader is a mention). */
export interface Waiting {
  count: number;
  mentions: number;
}

/**
 * The tab's title: "(N) base" with N the mentions (DMs to the reader included, as the contract
 * counts them) of every team, "• base" when only ordinary messages are unread, else the base.
 */
export function tabTitle(base: string, teams: Iterable<Waiting>): string {
  const { count, mentions } = waitingIn(teams);
  if (mentions > 0) return `(${mentions}) ${base}`;
  return count > 0 ? `• ${base}` : base;
}

/** What waits in all these teams together. */
export function waitingIn(teams: Iterable<Waiting>): Waiting {
  let count = 0;
  let mentions = 0;
  for (const t of teams) {
    count += Math.max(0, t.count);
    mentions += Math.max(0, t.mentions);
  }
  return { count, mentions };
}

/**
 * Whether a message that arrived live calls for a desktop notification: from someone else, still
 * there, a DM to the reader or a text that mentions them (a thread reply too: a reply in a DM's
 * thread is to the reader), or a reply in a thread the reader is `inThread` (wrote its root or a
 * reply: people answering them; asked only when needed), and not where the reader is `looking`
 * (the page on screen with the message's conversation open). Edits and reactions are `update`
 * frames: they never get here.
 */
export function notifies(message: Message, me: string, looking: boolean, inThread: (root: string) => boolean = () => false): boolean {
  if (message.from === me || message.deleted || looking) return false;
  // The thread check reads what the page holds: asked last, and only for a reply.
  return mentions(message, me) || (!!message.thread_id && inThread(message.thread_id));
}

export interface NotificationText {
  title: string;
  body: string;
  /** One per conversation: a newer notification replaces the one before it. */
  tag: string;
}

/** Names as the page knows them; undefined for someone not looked up yet. */
export interface Names {
  user(id: string): string | undefined;
  team(id: string): string | undefined;
}

export const BODY_MAX = 140;

const ATTACHMENT: Record<Exclude<Message["type"], "text">, string> = {
  image: "sent an image",
  video: "sent a video",
  audio: "sent an audio clip",
  file: "sent a file",
};

const MENTION = /<@([0-9a-f]{32})>/gi;

/** The members a text mentions (`<@id>`), lower-cased; none for an attachment. */
export function mentionedIds(message: Message): string[] {
  if (message.type !== "text") return [];
  return [...message.data.matchAll(MENTION)].map((m) => (m[1] ?? "").toLowerCase());
}
// Control characters (newlines and tabs among them) and runs of spaces become one space.
const BLANKS = /[\u0000-\u0020\u007f-\u009f\u2028\u2029]+/g;

/** A conversation as a notification tag: its team and "*" or the other person. */
export function tagOf(team: string, conversation: string): string {
  return `chatstack:${team}:${conversation}`;
}

/** A thread open on screen, as the tabs tell each other: its conversation's tag and its root. */
export function threadTag(tag: string, root: string): string {
  return `${tag}#${root}`;
}

/** The tag of the conversation a message belongs to. */
export function conversationTag(message: Message, me: string): string {
  return tagOf(message.channel_id, conversationOf(message.to, message.from, me));
}

/** A message as a notification: who and where in the title, the text (plain, shortened) below. */
export function notificationText(message: Message, me: string, names: Names): NotificationText {
  const sender = names.user(message.from) ?? "Someone";
  // A DM names its team too: someone in two teams with the reader has a DM in each.
  const team = names.team(message.channel_id) ?? "a team";
  const title = message.to === me ? `${sender} (direct message in ${team})` : `${sender} in ${team}`;
  return { title, body: plainBody(message, names), tag: conversationTag(message, me) };
}

/**
 * The body: a text with its mentions as "@Name", on one line, without text-direction controls,
 * cut to BODY_MAX characters (code points, so no emoji is split) with "…"; an attachment as words.
 */
export function plainBody(message: Message, names: Pick<Names, "user">): string {
  if (message.type !== "text") return ATTACHMENT[message.type];
  const text = shownName(message.data.replace(MENTION, (_, id: string) => `@${names.user(id.toLowerCase()) ?? "someone"}`))
    .replace(BLANKS, " ")
    .trim();
  const chars = [...text];
  return chars.length <= BODY_MAX ? text : `${chars.slice(0, BODY_MAX - 1).join("").trimEnd()}…`;
}

/**
 * At most one notification per key (a conversation) per `windowMs`: a burst of messages makes
 * one, and the tag makes any later one replace it rather than pile up.
 */
export class RateLimit {
  private readonly last = new Map<string, number>();

  constructor(private readonly windowMs: number) {}

  /** How long until one may go out for `key` (0: now). */
  wait(key: string, now: number): number {
    const before = this.last.get(key);
    return before === undefined ? 0 : Math.max(0, this.windowMs - (now - before));
  }

  /** Whether one may go out for `key` at `now`; if so, it counts as gone out. */
  allow(key: string, now: number): boolean {
    const before = this.last.get(key);
    if (before !== undefined && now - before < this.windowMs) return false;
    this.last.set(key, now);
    if (this.last.size > 100) {
      for (const [k, at] of this.last) if (now - at >= this.windowMs) this.last.delete(k);
    }
    return true;
  }
}

/** What one tab tells the app's other tabs (a BroadcastChannel between them). */
export type TabNews = { kind: "looking"; tab: string; tag: string | null; thread: string | null } | { kind: "ask" };

/** A message from another tab as `TabNews`, or null when it is not one. */
export function tabNews(data: unknown): TabNews | null {
  if (typeof data !== "object" || data === null) return null;
  const d = data as Record<string, unknown>;
  if (d.kind === "ask") return { kind: "ask" };
  if (d.kind !== "looking" || typeof d.tab !== "string") return null;
  if (d.tag !== null && typeof d.tag !== "string") return null;
  // A tab of a version that did not say its thread shows none.
  const thread = typeof d.thread === "string" ? d.thread : null;
  return { kind: "looking", tab: d.tab, tag: d.tag, thread };
}

/**
 * Which conversation each of the app's other tabs has on screen, as they last said: a message
 * the reader is reading in one tab must not make another tab notify it. A tab that said nothing
 * for `maxAgeMs` (closed without a word) no longer counts.
 */
export class OtherTabs {
  private readonly said = new Map<string, { tag: string; thread: string | null; at: number }>();

  constructor(private readonly maxAgeMs: number) {}

  /** What a tab shows: a conversation's tag, and the `threadTag` of a thread open beside it. */
  note(tab: string, tag: string | null, at: number, thread: string | null = null): void {
    if (tag === null) this.said.delete(tab);
    else this.said.set(tab, { tag, thread, at });
  }

  /** Whether another tab shows this conversation tag, or this thread tag. */
  looking(tag: string, now: number): boolean {
    for (const [tab, s] of this.said) {
      if (now - s.at > this.maxAgeMs) this.said.delete(tab);
      else if (s.tag === tag || s.thread === tag) return true;
    }
    return false;
  }
}
