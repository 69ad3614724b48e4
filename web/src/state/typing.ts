// Typing indicators: who is typing where (shown a few seconds after their last signal), and when
// this user's own typing is worth a signal (the relay allows 1 per second; every 3 s is plenty).
import type { TypingFrame } from "../api/types";

export const SHOWN_MS = 6000;
export const SEND_EVERY_MS = 3000;

/** The conversation a frame belongs to from this user's side: "*" or the other person's id. */
export function conversationOf(to: string, from: string, me: string): string {
  if (to === "*") return "*";
  return from === me ? to : from;
}

/** Where someone types: a conversation's own box, or a thread's reply box in it. */
function where(conversation: string, thread: string | null | undefined): string {
  return thread ? `${conversation}#${thread}` : conversation;
}

export class TypingState {
  // channel -> where (a conversation, or a thread in it) -> user -> until (ms)
  private until = new Map<string, Map<string, Map<string, number>>>();
  private lastSent = new Map<string, number>();

  constructor(private readonly me: string) {}

  heard(frame: TypingFrame, now: number): void {
    if (frame.from === this.me) return;
    const at = where(conversationOf(frame.to, frame.from, this.me), frame.thread_id);
    let byPlace = this.until.get(frame.channel_id);
    if (!byPlace) this.until.set(frame.channel_id, (byPlace = new Map()));
    let users = byPlace.get(at);
    if (!users) byPlace.set(at, (users = new Map()));
    users.set(frame.from, now + SHOWN_MS);
  }

  /** Their message arrived (a reply: in that thread): they stopped typing it. */
  stopped(channel: string, to: string, from: string, thread: string | null = null): void {
    this.until.get(channel)?.get(where(conversationOf(to, from, this.me), thread))?.delete(from);
  }

  /** Who is typing in a conversation's box (or a thread's in it) now, in the order they started. */
  who(channel: string, conversation: string, now: number, thread: string | null = null): string[] {
    const users = this.until.get(channel)?.get(where(conversation, thread));
    if (!users) return [];
    const out: string[] = [];
    for (const [user, until] of users) {
      if (until > now) out.push(user);
      else users.delete(user);
    }
    return out;
  }

  /** Whether a keystroke now should send a typing frame for this box. */
  shouldSend(channel: string, to: string, now: number, thread: string | null = null): boolean {
    const key = `${channel}/${where(to, thread)}`;
    const last = this.lastSent.get(key);
    if (last !== undefined && now - last < SEND_EVERY_MS) return false;
    this.lastSent.set(key, now);
    return true;
  }

  /** A message was sent: the next keystroke may signal at once. */
  sent(channel: string, to: string, thread: string | null = null): void {
    this.lastSent.delete(`${channel}/${where(to, thread)}`);
  }
}
