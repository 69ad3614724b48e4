// The browser's side of calling the user back (ChatDeps.attention): the tab's title and desktop
// notifications. Thin on purpose: what to say and when is decided in state/attention.ts and
// app/chat.ts, which tests drive with a fake of this.
import type { Attention, Permission } from "./onscreen";
import { type NotificationText, OtherTabs, type TabNews, tabNews } from "../state/attention";

/** The app's other tabs: a BroadcastChannel in the app. */
export interface TabChannel {
  postMessage(news: TabNews): void;
  onmessage: ((ev: { data: unknown }) => void) | null;
}

// A tab repeats what it shows this often; one silent for three times as long is gone.
const LOOKING_EVERY_MS = 60_000;

/** What of the browser this needs; `window` in the app, a stand-in in tests. */
export interface TabWindow {
  document: { title: string };
  focus(): void;
  /** Where the other tabs are; none: this tab knows only itself. */
  channel?: TabChannel;
  now(): number;
  setInterval(fn: () => void, ms: number): unknown;
  addEventListener(type: "pagehide", fn: () => void): void;
  Notification?: {
    readonly permission: Permission;
    requestPermission(): Promise<Permission>;
    new (title: string, options: { body: string; tag: string }): { onclick: unknown; close(): void };
  };
}

export function tabAttention(win: TabWindow): Attention {
  // index.html's title: what the tab says when nothing waits, and after signing out.
  const base = win.document.title;
  const api = win.Notification;
  // What this page shows, by tag, to close when its conversation is opened.
  const shown = new Map<string, { close(): void }>();
  const me = Math.random().toString(36).slice(2);
  const others = new OtherTabs(3 * LOOKING_EVERY_MS);
  let mine: string | null = null;
  let mineThread: string | null = null;
  const channel = win.channel;
  const say = () => channel?.postMessage({ kind: "looking", tab: me, tag: mine, thread: mineThread });
  if (channel) {
    channel.onmessage = (ev) => {
      const news = tabNews(ev.data);
      if (news?.kind === "ask") say();
      else if (news && news.tab !== me) others.note(news.tab, news.tag, win.now(), news.thread);
    };
    channel.postMessage({ kind: "ask" }); // a new tab learns what the others show
    win.setInterval(say, LOOKING_EVERY_MS);
    win.addEventListener("pagehide", () => {
      mine = null;
      mineThread = null;
      say();
    });
  }
  return {
    base,
    title: (text) => {
      if (win.document.title !== text) win.document.title = text;
    },
    permission: () => api?.permission ?? null,
    ask: async () => {
      await api?.requestPermission();
    },
    show: (text: NotificationText, open: () => void) => {
      if (api?.permission !== "granted") return;
      try {
        const made = new api(text.title, { body: text.body, tag: text.tag });
        shown.set(text.tag, made);
        made.onclick = () => {
          win.focus();
          open();
          made.close();
        };
      } catch {
        // Chrome on Android has `Notification` but only lets a service worker show one.
      }
    },
    looking: (tag, thread = null) => {
      if (tag === mine && thread === mineThread) return;
      mine = tag;
      mineThread = thread;
      say();
    },
    lookedAtElsewhere: (tag) => others.looking(tag, win.now()),
    dismissAll: () => {
      for (const made of shown.values()) made.close();
      shown.clear();
    },
    dismiss: (tag) => {
      const made = shown.get(tag);
      if (made === undefined) return;
      shown.delete(tag);
      made.close();
    },
  };
}
