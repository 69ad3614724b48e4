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

export class TypingState {
  // channel -> conversation -> user -> until (ms)
  private until = new Map<string, Map<string, Map<string, number>>>();
  private lastSent = new Map<string, number>();

  constructor(private readonly me: string) {}

  heard(frame: TypingFrame, now: number): void {
    if (frame.from === this.me) return;
    const conv = conversationOf(frame.to, frame.from, this.me);
    let byConv = this.until.get(frame.channel_id);
    if (!byConv) this.until.set(frame.channel_id, (byConv = new Map()));
    let users = byConv.get(conv);
    if (!users) byConv.set(conv, (users = new Map()));
    users.set(frame.from, now + SHOWN_MS);
  }

  /** Their message arrived: they stopped typing it. */
  stopped(channel: string, to: string, from: string): void {
    this.until.get(channel)?.get(conversationOf(to, from, this.me))?.delete(from);
  }

  /** Who is typing in a conversation now, in the order they started. */
  who(channel: string, conversation: string, now: number): string[] {
    const users = this.until.get(channel)?.get(conversation);
    if (!users) return [];
    const out: string[] = [];
    for (const [user, until] of users) {
      if (until > now) out.push(user);
      else users.delete(user);
    }
    return out;
  }

  /** Whether a keystroke now should send a typing frame for this conversation. */
  shouldSend(channel: string, to: string, now: number): boolean {
    const key = `${channel}/${to}`;
    const last = this.lastSent.get(key);
    if (last !== undefined && now - last < SEND_EVERY_MS) return false;
    this.lastSent.set(key, now);
    return true;
  }

  /** A message was sent: the next keystroke may signal at once. */
  sent(channel: string, to: string): void {
    this.lastSent.delete(`${channel}/${to}`);
  }
}
