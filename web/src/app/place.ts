// What this tab keeps across a reload, in its sessionStorage (this tab only, gone with it): where
// it was (the team and the conversation), and what was typed in each message box and not sent.
// Only for the account that left it there: in a tab where someone else signs in next, it would
// say whom the previous user was messaging, and what they were writing.
import type { Conversation, UnsentKeeper } from "./outbox";

/** Where this tab was (sessionStorage in the app): a reload opens it again. */
export interface Place {
  load(): { team: string; conversation: Conversation } | null;
  save(team: string, conversation: Conversation): void;
  /** Nothing to go back to (the team saved was left). */
  forget(): void;
}

/** The part of `Storage` this uses (a stand-in in tests). */
export type PlaceStorage = Pick<Storage, "getItem" | "setItem">;

const KEY = "chatstack.place";
const UNSENT_KEY = "chatstack.unsent";

/** `storage` is asked for at each use: merely reaching `sessionStorage` throws where it is refused. */
export function tabPlaceOf(storage: () => PlaceStorage & Pick<Storage, "removeItem">, user: string): Place {
  return {
    load: () => {
      try {
        const saved: unknown = JSON.parse(storage().getItem(KEY) ?? "null");
        if (typeof saved !== "object" || saved === null) return null;
        const { user: who, team, conversation } = saved as Record<string, unknown>;
        if (who !== user || typeof team !== "string" || typeof conversation !== "string") return null;
        return { team, conversation };
      } catch {
        return null; // storage refused (privacy settings), or not ours: start at the first team
      }
    },
    save: (team, conversation) => {
      try {
        storage().setItem(KEY, JSON.stringify({ user, team, conversation }));
      } catch {
        // as above
      }
    },
    forget: () => {
      try {
        storage().removeItem(KEY);
      } catch {
        // as above
      }
    },
  };
}

/** The unsent texts of `user` in this tab, by message box; nothing where storage is refused. */
export function tabUnsentOf(storage: () => PlaceStorage & Pick<Storage, "removeItem">, user: string): UnsentKeeper {
  return {
    load: () => {
      const texts = new Map<string, string>();
      try {
        const saved: unknown = JSON.parse(storage().getItem(UNSENT_KEY) ?? "null");
        if (typeof saved !== "object" || saved === null) return texts;
        const { user: who, texts: kept } = saved as Record<string, unknown>;
        if (who !== user) {
          // Someone else's, left by a session that ended without signing out (it expired): gone
          // now that another account is in the tab.
          storage().removeItem(UNSENT_KEY);
          return texts;
        }
        if (typeof kept !== "object" || kept === null) return texts;
        for (const [box, text] of Object.entries(kept)) if (typeof text === "string") texts.set(box, text);
      } catch {
        // refused, or not ours: nothing was kept
      }
      return texts;
    },
    save: (texts) => {
      try {
        if (texts.size === 0) storage().removeItem(UNSENT_KEY);
        else storage().setItem(UNSENT_KEY, JSON.stringify({ user, texts: Object.fromEntries(texts) }));
      } catch {
        // refused, or full: the texts live as long as the page, as without storage
      }
    },
  };
}
