// Desktop notifications of live messages: which to show, named, one per conversation per few
// seconds with the latest of a burst after the pause. What calls for one is state/attention.ts;
// the browser's part is app/tab.ts.
import type { Message } from "../api/types";
import type { Clock } from "../auth/keeper";
import { conversationTag, mentionedIds, type Names, notificationText, notifies, RateLimit } from "../state/attention";
import type { Attention } from "./onscreen";

/** At most one desktop notification per conversation in this time. */
const NOTIFY_EVERY_MS = 5000;

export interface AlertDeps {
  attention: Attention;
  clock: Clock;
  me: string;
  names: Names;
  /** Looks up people the page does not know yet, so a notification names them. */
  ensureUsers(ids: readonly string[]): Promise<void>;
  known(id: string): boolean;
  /** Whether the reader wrote the root of this thread, or a reply in it, as far as held. */
  inThread(root: string): boolean;
  /** Whether the reader has the message on screen (here or, where known, in another tab). */
  lookingAt(message: Message): boolean;
  /** A notification was clicked: show its message. */
  reveal(message: Message): void;
  stopped(): boolean;
}

export class Alerts {
  private readonly limit = new RateLimit(NOTIFY_EVERY_MS);
  /** Per notification tag, the latest message of a burst, shown when its quiet window ends. */
  private readonly burstLatest = new Map<string, Message>();

  constructor(private readonly deps: AlertDeps) {}

  /** A message that just arrived live, counted as unread: notified when it calls for it. */
  alert(message: Message): void {
    const d = this.deps;
    if (d.attention.permission() !== "granted") return;
    if (!notifies(message, d.me, d.lookingAt(message), (root) => d.inThread(root))) return;
    // A sender or a mentioned member new to this page (someone just added) is looked up first:
    // "Someone in Launch" says nothing.
    const names = [message.from, ...mentionedIds(message)].filter((id) => !d.known(id));
    if (names.length === 0) this.now(message);
    else void d.ensureUsers(names).then(() => this.now(message));
  }

  /**
   * Shows it, or, inside a conversation's quiet window, keeps it as the latest of a burst: when
   * the window ends the latest replaces what was shown (same tag), unless the reader is looking.
   */
  private now(message: Message): void {
    const d = this.deps;
    if (d.stopped()) return;
    const tag = conversationTag(message, d.me);
    const at = d.clock.now();
    if (this.limit.allow(tag, at)) {
      this.show(message);
      return;
    }
    const waiting = this.burstLatest.has(tag);
    this.burstLatest.set(tag, message);
    if (waiting) return;
    d.clock.setTimeout(() => {
      const latest = this.burstLatest.get(tag);
      this.burstLatest.delete(tag);
      if (!latest || d.stopped() || d.lookingAt(latest)) return;
      if (this.limit.allow(tag, d.clock.now())) this.show(latest);
    }, this.limit.wait(tag, at));
  }

  private show(message: Message): void {
    const d = this.deps;
    d.attention.show(notificationText(message, d.me, d.names), () => d.reveal(message));
  }
}
