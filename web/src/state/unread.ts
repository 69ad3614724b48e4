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

const REMEMBERED_IDS = 2000;

export class ReadState {
  lastRead: number | null = null;
  count = 0;
  mentions = 0;
  /** Ids already counted: live delivery is at-least-once, a repeat must not count twice. */
  private counted = new Set<string>();
  /** The highest seq reported to the server, so a view scrolling back never re-sends. */
  private reported: number | null = null;

  constructor(private readonly me: string) {}

  /** The server's numbers (GET /teams, hello) replace ours. */
  fromServer(unread: Partial<Unread> | undefined): void {
    if (!unread) return;
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
    this.counted.add(message.id);
    if (this.counted.size > REMEMBERED_IDS) {
      const oldest = this.counted.values().next().value;
      if (oldest !== undefined) this.counted.delete(oldest);
    }
    this.count += 1;
    if (mentions(message, this.me)) this.mentions += 1;
    return true;
  }

  /**
   * Everything up to `seq` has been seen: moves the read mark forward (never back) and recounts
   * from the held messages, which include everything above any seq the user can have seen.
   * Returns the seq to report with `PUT /read`, or null when the server already knows.
   */
  seen(seq: number, held: readonly Message[]): number | null {
    if (this.lastRead !== null && seq <= this.lastRead) return null;
    this.lastRead = seq;
    const rest = held.filter((m) => countsAsUnread(m, this.me, seq));
    this.count = rest.length;
    this.mentions = rest.filter((m) => mentions(m, this.me)).length;
    if (this.reported !== null && seq <= this.reported) return null;
    this.reported = seq;
    return seq;
  }

  /** Another of the user's sockets marked read (a `read` frame): same as seeing it here. */
  readElsewhere(seq: number, held: readonly Message[]): void {
    this.reported = Math.max(this.reported ?? -1, seq);
    this.seen(seq, held);
  }
}

/** Where the "new messages" divider goes: above the first message from others after `lastRead`. */
export function dividerBefore(view: readonly Message[], lastRead: number | null, me: string): string | null {
  if (lastRead === null) return null;
  const first = view.find((m) => m.seq > lastRead && m.from !== me);
  return first ? first.id : null;
}
