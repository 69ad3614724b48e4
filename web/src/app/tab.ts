// The browser's side of calling the user back (ChatDeps.attention): the tab's title and desktop
// notifications. Thin on purpose: what to say and when is decided in state/attention.ts and
// app/chat.ts, which tests drive with a fake of this.
import type { Attention, Permission } from "./chat";
import type { NotificationText } from "../state/attention";

/** What of the browser this needs; `window` in the app, a stand-in in tests. */
export interface TabWindow {
  document: { title: string };
  focus(): void;
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
