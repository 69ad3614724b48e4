// What the page says to the user besides the messages: notices above the conversation (news that
// goes by itself, errors that wait to be dismissed) and the line a screen reader announces. No DOM.
import { ApiError } from "../api/client";
import type { Clock } from "../auth/keeper";
import { describeDetails } from "../text/teamform";

const INFO_NOTICE_MS = 8000;
/** Shown at once; an older one goes when a fifth comes. */
const KEPT = 4;

export interface Notice {
  id: number;
  kind: "error" | "info";
  text: string;
  /** What it is about: a newer notice on the same topic replaces it. */
  topic?: string;
}

export class Notices {
  list: Notice[] = [];
  /** The last thing said, for the page's live region. */
  announcement = "";
  private seq = 0;

  constructor(
    private readonly clock: Clock,
    private readonly changed: () => void,
  ) {}

  /** A notice; one with a `topic` replaces the earlier one of the same topic (the latest state). */
  notify(kind: Notice["kind"], text: string, topic?: string): void {
    const id = ++this.seq;
    const others = topic === undefined ? this.list : this.list.filter((n) => n.topic !== topic);
    this.list = [...others.slice(-(KEPT - 1)), { id, kind, text, ...(topic === undefined ? {} : { topic }) }];
    this.announce(text);
    // News ("You were added to X") goes by itself; an error waits to be read and dismissed.
    if (kind === "info") this.clock.setTimeout(() => this.dismiss(id), INFO_NOTICE_MS);
    this.changed();
  }

  fail(what: string, err: unknown): void {
    this.notify("error", `${what}: ${readable(err)}`);
  }

  dismiss(id: number): void {
    this.list = this.list.filter((n) => n.id !== id);
    this.changed();
  }

  announce(text: string): void {
    this.announcement = text;
  }
}

/** An error as a person reads it; a 403 says plainly that the role does not allow it. */
export function readable(err: unknown): string {
  if (err instanceof ApiError) {
    if (err.status === 403) return `Not allowed: ${err.readable}`;
    // Per-field reasons say what to change; the general sentence around them adds nothing.
    if (err.details && Object.keys(err.details).length > 0) return describeDetails(err.details);
    return err.readable;
  }
  return err instanceof Error ? err.message : String(err);
}
