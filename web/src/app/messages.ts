// Acting on messages the page holds, over REST: edits, deletes, reactions, a thread's replies and
// attachments' download links. What the server answers goes into the timeline at once (its frame
// may come later, or to a socket that is down). No DOM.
import { type Api, ApiError } from "../api/client";
import { type BusyRetry, whileBusy } from "../api/retry";
import type { Attachment, Message } from "../api/types";
import type { Clock } from "../auth/keeper";
import { Slots } from "../state/slots";
import type { ChannelTimeline } from "../state/timeline";
import type { Notices } from "./notices";

/** A download link is asked for again this long before it expires. */
const LINK_MARGIN_MS = 30_000;
/** How long a link whose answer has no expiry (or has not come yet) is taken as good. */
const LINK_DEFAULT_MS = 60_000;
/**
 * Links asked for at once: a conversation full of pictures asks for each as it is shown, and
 * the server lets one user hold a few of its scan slots (a link to a file someone else sent
 * takes one), answering 503 past them; a busy answer is asked again after a pause.
 */
const LINKS_AT_ONCE = 2;
const LINK_RETRY: BusyRetry = {
  tries: 5,
  pauseMs: 500,
  busy: (err) => err instanceof ApiError && (err.status === 429 || err.status === 503),
};

export interface MessageActionsDeps {
  api: Api;
  clock: Clock;
  me: string;
  timeline(team: string): ChannelTimeline;
  notices: Notices;
  changed(): void;
}

export type EditOutcome = "saved" | "retry" | "refused";

const KEPT = "What you typed is still in the box: send it as a new message, or clear it.";

export class MessageActions {
  private readonly links = new Map<string, { at: Promise<Attachment>; until: number }>();
  private readonly linkSlots = new Slots(LINKS_AT_ONCE);

  constructor(private readonly deps: MessageActionsDeps) {}

  /**
   * Saves an edit: "saved"; "retry" when it may work again (the network, a busy server, a text
   * to fix); "refused" when it never will (the edit window passed, the message is gone, the
   * author no longer may). Every failure is shown as a notice.
   */
  async edit(team: string, id: string, text: string): Promise<EditOutcome> {
    const { deps } = this;
    try {
      const message = await deps.api.edit(team, id, text);
      deps.timeline(team).applyOutOfBand([message]);
      deps.changed();
      return "saved";
    } catch (err) {
      deps.notices.fail("Could not edit the message", err);
      // 409: deleted meanwhile (by an admin, or in another tab); no retry can save it.
      if (!(err instanceof ApiError && [403, 404, 409].includes(err.status))) return "retry";
      deps.notices.notify("info", KEPT, "edit-refused");
      return "refused";
    }
  }

  /** The message being edited was deleted under the edit: says so, and where the text is. */
  editGone(): void {
    this.deps.notices.notify("info", `The message you were editing was deleted. ${KEPT}`, "edit-refused");
  }

  async remove(team: string, id: string): Promise<void> {
    const { deps } = this;
    try {
      await deps.api.remove(team, id);
      const held = deps.timeline(team).get(id);
      if (held) deps.timeline(team).applyOutOfBand([{ ...held, deleted: true, data: "" }]);
      deps.changed();
    } catch (err) {
      deps.notices.fail("Could not delete the message", err);
    }
  }

  /** Adds the reader's reaction, or takes it back if they had it. */
  async toggleReaction(team: string, id: string, emoji: string): Promise<void> {
    const { deps } = this;
    const mine = deps
      .timeline(team)
      .get(id)
      ?.reactions?.some((r) => r.emoji === emoji && r.users.includes(deps.me));
    try {
      await deps.api.react(team, id, emoji, !mine);
    } catch (err) {
      deps.notices.fail("Could not react", err);
    }
  }

  /** Every reply of a thread, page after page, into the timeline. */
  async loadThread(team: string, root: string): Promise<void> {
    const { deps } = this;
    try {
      const replies: Message[] = [];
      let after: number | undefined;
      for (;;) {
        const page = await deps.api.thread(team, root, after);
        replies.push(...page.data);
        const last = page.data[page.data.length - 1];
        if (!page.meta.has_more || !last) break;
        after = last.seq;
      }
      // Replies may be newer than the cursor: they fill in, the cursor stays (DESIGN section 4).
      deps.timeline(team).applyOutOfBand(replies);
      deps.changed();
    } catch (err) {
      deps.notices.fail("Could not load the thread", err);
    }
  }

  /** The attachment's metadata and a download URL, cached until shortly before it expires. */
  attachment(id: string): Promise<Attachment> {
    const now = this.deps.clock.now();
    const held = this.links.get(id);
    if (held && held.until > now) return held.at;
    const at = this.linkSlots.run(() => whileBusy(this.deps.clock, LINK_RETRY, () => this.deps.api.attachment(id)));
    this.links.set(id, { at, until: now + LINK_DEFAULT_MS });
    at.then(
      (a) => {
        const expires = a.expires_at ? Date.parse(a.expires_at) : now + LINK_DEFAULT_MS;
        this.links.set(id, { at, until: Math.max(now, expires - LINK_MARGIN_MS) });
      },
      () => this.links.delete(id),
    );
    return at;
  }
}
