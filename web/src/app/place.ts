// Where this tab was, so that a reload opens it again: the team and the conversation, in the
// tab's sessionStorage (this tab only, gone with it). Only for the account that left it there: in
// a tab where someone else signs in next, it would say whom the previous user was messaging.
import type { Place } from "./chat";

/** The part of `Storage` this uses (a stand-in in tests). */
export type PlaceStorage = Pick<Storage, "getItem" | "setItem">;

const KEY = "chatstack.place";

/** `storage` is asked for at each use: merely reaching `sessionStorage` throws where it is refused. */
export function tabPlaceOf(storage: () => PlaceStorage, user: string): Place {
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
  };
}
