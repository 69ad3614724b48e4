// What this page has on screen, told to the browser and to the app's other tabs: the tab's title
// (mentions waiting), which conversation is shown (other tabs do not notify it), its notifications
// closed once it is shown. No DOM: the browser's side is `Attention` (app/tab.ts, a fake in tests).
import type { Message } from "../api/types";
import { conversationTag, type NotificationText, tabTitle, tagOf, threadTag } from "../state/attention";
import type { ReadState } from "../state/unread";

export type Permission = "default" | "granted" | "denied";

/** What calls the user back to the tab (app/tab.ts, or a fake in tests). */
export interface Attention {
  /** The title with nothing waiting, and after signing out. */
  readonly base: string;
  title(text: string): void;
  /** Whether notifications may be shown; null where the browser has none. */
  permission(): Permission | null;
  /** Asks the user; the browser allows it only while handling their click. */
  ask(): Promise<void>;
  /** Shows a notification; `open` runs when it is clicked (after the window took focus). */
  show(text: NotificationText, open: () => void): void;
  /** Closes what this page showed with that tag: its conversation is on screen now. */
  dismiss(tag: string): void;
  /** Closes everything this page showed: signed out, its texts must not stay on screen. */
  dismissAll(): void;
  /** Tells the app's other tabs which conversation this one has on screen (null: none). */
  looking(tag: string | null, thread?: string | null): void;
  /** Whether another tab of the app has that conversation (or that `threadTag`) on screen. */
  lookedAtElsewhere(tag: string): boolean;
}

/** Where the page is, as the model has it. */
export interface Shown {
  /** The page is on screen (not a hidden tab). */
  visible: boolean;
  team: string | null;
  conversation: string;
  thread: string | null;
}

export class OnScreen {
  /** The title last given to the tab, so an unchanged one is not set again. */
  private shownTitle: string | null = null;
  private signedOut = false;

  constructor(
    private readonly attention: Attention | undefined,
    private readonly me: string,
    private readonly where: () => Shown,
    /** The badges' own counts: the sidebar's teams, their ReadState. */
    private readonly reads: () => ReadState[],
  ) {}

  /** After any change of the page: the title and what the other tabs hear. */
  follow(): void {
    this.showTitle();
    this.tellLooking();
  }

  /** The notification tag of the conversation on screen; null while the page is not. */
  private tag(): string | null {
    const { visible, team, conversation } = this.where();
    return visible && team ? tagOf(team, conversation) : null;
  }

  /** The other tabs hear which conversation this one shows, so that they do not notify it. */
  tellLooking(): void {
    if (this.signedOut) return;
    const shown = this.tag();
    const thread = this.where().thread;
    this.attention?.looking(shown, shown !== null && thread ? threadTag(shown, thread) : null);
  }

  /** The open conversation is on screen: its desktop notifications have said what they had to. */
  dismissShown(): void {
    const shown = this.tag();
    if (shown !== null) this.attention?.dismiss(shown);
  }

  /**
   * Whether the reader has the message on screen, here or in another tab: its conversation; for a
   * thread reply, its thread open (the conversation shows only "1 reply" under the root).
   */
  lookingAt(message: Message): boolean {
    const tag = conversationTag(message, this.me);
    if (message.thread_id) {
      const here = tag === this.tag() && this.where().thread === message.thread_id;
      return here || (this.attention?.lookedAtElsewhere(threadTag(tag, message.thread_id)) ?? false);
    }
    return tag === this.tag() || (this.attention?.lookedAtElsewhere(tag) ?? false);
  }

  /** Whether to offer "Turn on notifications": the browser has them and the user was never asked. */
  canAsk(): boolean {
    return this.attention?.permission() === "default";
  }

  /** The user asked for notifications (from their click: the browser asks them nowhere else). */
  async ask(): Promise<void> {
    try {
      await this.attention?.ask();
    } catch {
      // A browser that refuses to ask: nothing changes, the offer stays.
    }
  }

  /** Signed out: the tab says nothing of this account any more. */
  signOut(): void {
    this.signedOut = true;
    if (!this.attention) return;
    this.attention.title(this.attention.base);
    this.attention.dismissAll();
    this.attention.looking(null);
  }

  private showTitle(): void {
    if (!this.attention) return;
    const title = tabTitle(this.attention.base, this.reads());
    if (title === this.shownTitle) return;
    this.shownTitle = title;
    this.attention.title(title);
  }
}
