// A team's read state for this user (DESIGN 5b): the server's last_read_seq, unread and mention
// counts kept current by live messages, the "new messages" divider, and when to mark read.
import type { Message, Unread } from "../api/types";

/** A mention is `<@user_id>` in a text, or any DM to the user (the contract's definition). */
export function mentions(message: Message, me: string): boolean {
  if (message.to === me) return true;
  return message.type === "text" && message.data.includes(`<@${me}>`);
}

function countsAsUnread(message: Message, me: string, lastRead: number | null): boolean {
  return message.from !== me && !message.deleted && (lastRead === null || message.seq > lastRead);
}

/**
 * Whether the user's own message `own` moves their read mark to it, by the server's rule
 * (chatcore/unread.py, `ReadState.after_own`): writing in a conversation reads it, not the
 * team's others, so only when nothing unread from someone else below it is in another
 * conversation — no DM to the user below a team message; below a DM, nothing but DMs from the
 * person it answers. `held` must hold everything between `lastRead` and `own`.
 */
export function ownMessageReads(own: Message, held: readonly Message[], me: string, lastRead: number): boolean {
  if (own.seq <= lastRead) return false;
  const below = held.filter((m) => m.seq < own.seq && countsAsUnread(m, me, lastRead));
  if (own.to === "*") return !below.some((m) => m.to === me);
  return below.every((m) => m.to === me && m.from === own.to);
}

const REMEMBERED_IDS = 2000;

/** Adds an id to a bounded set, forgetting the oldest. */
function remember(ids: Set<string>, id: string): void {
  ids.add(id);
  if (ids.size > REMEMBERED_IDS) {
    const oldest = ids.values().next().value;
    if (oldest !== undefined) ids.delete(oldest);
  }
}

export class ReadState {
  lastRead: number | null = null;
  count = 0;
  mentions = 0;
  /** Ids already counted: live delivery is at-least-once, a repeat must not count twice. */
  private counted = new Set<string>();
  /** Those of the counted ids that were mentions (a deleted text no longer shows it). */
  private mentioning = new Set<string>();
  /** Ids whose deletion was taken off the counts: a repeated `deleted` update takes nothing more. */
  private uncounted = new Set<string>();
  /** The highest seq reported to the server, so a view scrolling back never re-sends. */
  private reported: number | null = null;
  /** Ids of messages the reader has had in view: they do not hold the mark back elsewhere. */
  private viewedIds = new Set<string>();
  /**
   * Whether the counts are kept here from live frames: a team read after the first (a member
   * list refresh, a settings change) must not replace them with the server's, which trail the
   * fan-out by up to a second and may have been asked for before a read mark moved.
   */
  private live = false;

  constructor(private readonly me: string) {}

  /**
   * The server's numbers. `authoritative` (the team list at start, hello, a read asked for
   * because the mark moved elsewhere) replaces ours unless the answer predates our read mark;
   * any other read of the team only fills in counts not known yet.
   */
  fromServer(unread: Partial<Unread> | undefined, authoritative = true): void {
    if (!unread) return;
    if (!authoritative && this.live) return;
    const theirs = unread.last_read_seq;
    // Asked for before the mark moved here (its answer came after): its counts are of before.
    if (typeof theirs === "number" && this.lastRead !== null && theirs < this.lastRead) return;
    this.live = true;
    this.count = unread.count ?? this.count;
    this.mentions = unread.mentions ?? this.mentions;
    if (typeof unread.last_read_seq === "number") {
      this.lastRead = Math.max(this.lastRead ?? -1, unread.last_read_seq);
      this.reported = Math.max(this.reported ?? -1, unread.last_read_seq);
    }
  }

  /** A live message; returns whether it counted (new, from someone else, after the read mark). */
  onMessage(message: Message): boolean {
    if (this.counted.has(message.id) || !countsAsUnread(message, this.me, this.lastRead)) return false;
    remember(this.counted, message.id);
    this.count += 1;
    if (mentions(message, this.me)) {
      this.mentions += 1;
      remember(this.mentioning, message.id);
    }
    return true;
  }

  /**
   * A message was deleted (`update` with change `deleted`): if it was among the unread, the counts
   * lose it, as the server's do. `before` is the message as held until then (a deleted text has no
   * data left to tell a mention by). Returns whether the counts changed.
   */
  onDeleted(deleted: Message, before: Message | undefined): boolean {
    const was = before ?? deleted;
    if (this.uncounted.has(deleted.id) || before?.deleted) return false;
    // Every unread message from someone else is in the count: counted live, or by the server.
    if (!countsAsUnread({ ...was, deleted: false }, this.me, this.lastRead)) return false;
    remember(this.uncounted, deleted.id);
    this.count = Math.max(0, this.count - 1);
    const mentioned = deleted.to === this.me || this.mentioning.has(deleted.id) || (before !== undefined && mentions(before, this.me));
    if (mentioned) this.mentions = Math.max(0, this.mentions - 1);
    this.mentions = Math.min(this.mentions, this.count);
    return true;
  }

  /**
   * A message was edited (`update` with change `edited`): an unread team text counts as a
   * mention by its new text, as the server's counts do. `before` is the message as held until
   * then. Returns whether the counts changed.
   */
  onEdited(edited: Message, before: Message | undefined): boolean {
    if (edited.to !== "*" || !countsAsUnread(edited, this.me, this.lastRead)) return false;
    // Viewed already (no longer in the count), or neither held nor counted here (what it said
    // before is not known: the next read of the counts has it).
    if (this.viewedIds.has(edited.id) || (before === undefined && !this.counted.has(edited.id))) return false;
    const was = this.mentioning.has(edited.id) || (before !== undefined && mentions(before, this.me));
    const now = mentions(edited, this.me);
    if (was === now) return false;
    if (now) {
      remember(this.mentioning, edited.id);
      this.mentions += 1;
    } else {
      this.mentioning.delete(edited.id);
      this.mentions = Math.max(0, this.mentions - 1);
    }
    return true;
  }

  /**
   * Everything up to `seq` has been seen: moves the read mark forward (never back) and recounts
   * from the held messages, which include everything above any seq the user can have seen.
   * Returns the seq to report with `PUT /read`, or null when the server already knows.
   */
  seen(seq: number, held: readonly Message[]): number | null {
    const moves = this.lastRead === null || seq > this.lastRead;
    if (moves) this.lastRead = seq;
    const mark = this.lastRead ?? seq;
    // Above the mark, what the reader had in view is not news to them (the mark stopped below
    // something they have not seen): the badge counts what is left to see.
    const rest = held.filter((m) => countsAsUnread(m, this.me, mark) && !this.viewedIds.has(m.id));
    if (moves || rest.length < this.count) {
      this.count = rest.length;
      this.mentions = rest.filter((m) => mentions(m, this.me)).length;
    }
    if (!moves || (this.reported !== null && seq <= this.reported)) return null;
    this.reported = seq;
    return seq;
  }

  /** The reader had these messages in view. */
  view(messages: readonly Message[]): void {
    for (const m of messages) remember(this.viewedIds, m.id);
  }

  viewed(m: Message): boolean {
    return this.viewedIds.has(m.id);
  }

  /** Whether a server answer about the team is no older than the read mark known here. */
  current(unread: Partial<Unread> | undefined): boolean {
    const theirs = unread?.last_read_seq;
    return this.lastRead === null || (typeof theirs === "number" && theirs >= this.lastRead);
  }

  /** Another of the user's sockets marked read (a `read` frame): same as seeing it here. */
  readElsewhere(seq: number, held: readonly Message[]): void {
    this.reported = Math.max(this.reported ?? -1, seq);
    this.seen(seq, held);
  }

  /**
   * The same, when what lies above `seq` is not all held here (the team is not loaded, or the read
   * is below its oldest page): the mark moves, the counts wait for the server's. Returns whether
   * the mark moved (and the counts should be fetched).
   */
  movedElsewhere(seq: number): boolean {
    this.reported = Math.max(this.reported ?? -1, seq);
    if (this.lastRead !== null && seq <= this.lastRead) return false;
    this.lastRead = seq;
    return true;
  }
}

/** Where the "new messages" divider goes: above the first message from others after `lastRead`. */
export function dividerBefore(view: readonly Message[], lastRead: number | null, me: string): string | null {
  if (lastRead === null) return null;
  const first = view.find((m) => m.seq > lastRead && m.from !== me);
  return first ? first.id : null;
}

/**
 * What the reader has seen once `seenSeq` is in view in a list: at the end of the list, all of
 * it, so up to the timeline's cursor (thread replies, which the list does not show yet counts,
 * and changes are read too, or the team would stay unread for good).
 */
export function listSeenUpTo(seenSeq: number, atEnd: boolean, cursor: number | null): number {
  return atEnd && cursor !== null && cursor > seenSeq ? cursor : seenSeq;
}

/**
 * How far the read mark may go once the reader has seen up to `target` in one conversation or
 * thread. The mark is one seq for the whole team, so it stops short of the first message from
 * someone else, still unread, that they have not viewed (a DM not open, a reply in a thread not
 * shown): moving past it would mark it read unseen. What they viewed elsewhere does not hold it.
 */
export function readUpTo(
  target: number,
  held: readonly Message[],
  viewed: (m: Message) => boolean,
  me: string,
  lastRead: number | null,
): number {
  const unseen = held.find((m) => m.seq <= target && countsAsUnread(m, me, lastRead) && !viewed(m));
  return unseen ? unseen.seq - 1 : target;
}

/**
 * The divider's mark after `arrived` came in while the reader was looking at its conversation:
 * what they watch arrive is not "new" to them, so with no divider shown the mark follows it.
 * A divider already shown stays where it is (it marks what came while they were away).
 */
export function dividerAfterLive(current: number | null, view: readonly Message[], arrived: Message, me: string): number | null {
  if (current === null) return null;
  const shown = dividerBefore(
    view.filter((m) => m.id !== arrived.id && m.seq < arrived.seq),
    current,
    me,
  );
  return shown === null ? Math.max(current, arrived.seq) : current;
}

/** Per thread root opened in this visit, the replies seen there: up to this seq (Infinity while
 * it is open). */
export type OpenedThreads = ReadonlyMap<string, number>;

/**
 * Per thread root, how many replies from others came after `since` (the read mark when the
 * conversation was opened) and are still there: the "new" beside a root's reply count, since the
 * list shows a thread's replies only as that count. Replies seen in the thread opened meanwhile
 * are not new; those that came after it was closed are.
 */
export function newReplies(held: readonly Message[], since: number | null, me: string, opened: OpenedThreads): Map<string, number> {
  const found = new Map<string, number>();
  if (since === null) return found;
  for (const m of held) {
    if (!m.thread_id || m.seq <= since || m.from === me || m.deleted || m.seq <= (opened.get(m.thread_id) ?? -1)) continue;
    found.set(m.thread_id, (found.get(m.thread_id) ?? 0) + 1);
  }
  return found;
}

/** A thread with replies from others since the conversation was opened. */
export interface NewReplyThread {
  root: string;
  count: number;
  /** The newest such reply's seq: threads are listed newest first. */
  latest: number;
}

/**
 * The threads of one conversation (`inConversation` says which replies belong to it) with new
 * replies, newest first: what the list shows only as a count beside each root, which may be
 * far above the view. Same rules as `newReplies`.
 */
export function newReplyThreads(
  held: readonly Message[],
  since: number | null,
  me: string,
  opened: OpenedThreads,
  inConversation: (m: Message) => boolean,
): NewReplyThread[] {
  const counts = newReplies(held.filter(inConversation), since, me, opened);
  const latest = new Map<string, number>();
  for (const m of held) if (m.thread_id && counts.has(m.thread_id)) latest.set(m.thread_id, m.seq);
  return [...counts]
    .map(([root, count]) => ({ root, count, latest: latest.get(root) ?? 0 }))
    .sort((a, b) => b.latest - a.latest);
}
