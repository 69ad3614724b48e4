// What the user sends and has not seen arrive yet: texts and files in flight, their retries, the
// refused ones handed back to their box, and what was typed and not sent. No DOM, no socket of
// its own: the model gives it the socket and hears back through `changed` and `announce`.
import type { AckFrame, Attachment, ErrorFrame, Message } from "../api/types";
import type { Clock } from "../auth/keeper";
import { conversationOf } from "../state/typing";
import { retryable } from "../text/limits";
import { UploadError } from "../upload/upload";

/** "*" is the team's own conversation; a user id is the DM with that member. */
export type Conversation = string;

export interface Pending {
  clientMsgId: string;
  channel: string;
  to: string;
  threadId: string | null;
  type: Message["type"];
  data: string;
  status: "sending" | "failed";
  error: string | null;
  /** False once the server refused it for good (invalid, too large, forbidden): no Retry. */
  retryable: boolean;
  id: string | null;
}

/** Two texts of one box, the second on a line of its own (either may be empty). */
function joined(first: string, second: string): string {
  return first.trim() ? (second.trim() ? `${first}\n${second}` : first) : second;
}

/** Where a message goes: its team, its conversation, and the thread it replies in. */
export type Address = Pick<Pending, "channel" | "to" | "threadId">;

/** A refused text handed back to the composer it came from, to be edited. */
export interface Draft {
  key: number;
  /** The message box it goes back to (`boxKey`). */
  box: string;
  text: string;
}

/** A message box: a conversation's, or a thread's (whatever conversation its root is in). */
export function boxKey(team: string, conversation: Conversation, threadId: string | null): string {
  return threadId ? `${team}/thread/${threadId}` : `${team}/${conversation}`;
}

/** The team a `boxKey` belongs to. */
export function teamOfBox(box: string): string {
  return box.slice(0, box.indexOf("/"));
}

export interface UploadView {
  key: number;
  channel: string;
  to: string;
  /** The thread it goes to: shown under that thread's box, not the conversation's. */
  threadId: string | null;
  name: string;
  progress: number;
  error: string | null;
  /** The failure was the connection's or the server's: Retry offered, and tried again by itself
   * after the next hello (as unsent texts are). */
  retryable: boolean;
}

/** What the outbox needs from the socket (ChatSocket, or a fake in tests). */
export interface Sender {
  send(frame: object): boolean;
  /** Drops the connection and makes a new one (it looked open but nothing came back). */
  reconnect?(detail: string): void;
}

/** Where unsent texts outlive the page (the tab's sessionStorage in the app, app/place.ts). */
export interface UnsentKeeper {
  load(): Map<string, string>;
  save(texts: ReadonlyMap<string, string>): void;
}

/** Puts a file in the team's store and returns it ready to send (upload/upload.ts in the app). */
export type Uploader = (team: string, file: File, progress: (fraction: number) => void, signal: AbortSignal) => Promise<Attachment>;

export interface OutboxDeps {
  upload: Uploader;
  socket: Sender;
  clock: Clock;
  newId: () => string;
  /** Something a view shows changed. */
  changed: () => void;
  /** Words for the screen reader's live region. */
  announce: (text: string) => void;
  /** News shown to the user for a moment (and announced); `announce` when not given. */
  tell?: (text: string) => void;
  /** Keeps unsent texts across a reload; without it they live as long as the page. */
  kept?: UnsentKeeper;
}

/**
 * The relay acks once Kafka has the message, normally within tens of milliseconds, and answers
 * `unavailable` after CHAT_KAFKA_REQUEST_TIMEOUT_MS (15 s) when Kafka is down: past this, a live
 * relay would have said something, so the link is taken for dead.
 */
const ACK_TIMEOUT_MS = 20_000;
/**
 * A send refused for a passing reason (`unavailable`: a part of the server restarting, as the
 * controller a thread reply's root is checked with; `rate_limited`) goes again by itself after
 * 1, 2, 4, 8 and 8 s, about 23 s in all, before it shows Retry.
 */
const AUTO_RESENDS = 5;
const RESEND_FIRST_MS = 1000;
const RESEND_MAX_MS = 8000;

export class Outbox {
  readonly pending = new Map<string, Pending>();
  readonly uploads = new Map<number, UploadView>();
  draft: Draft | null = null;
  private readonly unsentTexts: Map<string, string>;
  /** The session ended (signOut); per team, how many times it was dropped (dropTeam). */
  private ended = false;
  private readonly drops = new Map<string, number>();
  /** Per box, the texts handed back to it since it last opened (see closeBox). */
  private readonly handedBack = new Map<string, string>();
  private readonly cancels = new Map<number, AbortController>();
  /** The files of uploads that failed for a passing reason, for Retry. */
  private readonly failedFiles = new Map<number, File>();
  /** Signed out: boxes that close after it (the views go after the model) keep nothing. */
  private signedOut = false;
  private draftSeq = 0;
  private uploadSeq = 0;
  /** Per send: automatic resends so far, and which transmission its ack timer belongs to. */
  private readonly resends = new WeakMap<Pending, number>();
  private readonly transmissions = new WeakMap<Pending, number>();
  private transmitSeq = 0;

  constructor(private readonly deps: OutboxDeps) {
    this.unsentTexts = deps.kept?.load() ?? new Map();
  }

  /** The sends not yet seen arriving in one box: a conversation's list, or a thread's. */
  in(team: string, conversation: Conversation, threadId: string | null, me: string): Pending[] {
    return [...this.pending.values()].filter(
      (p) => p.channel === team && p.threadId === threadId && (threadId !== null || conversationOf(p.to, me, me) === conversation),
    );
  }

  /**
   * Whether something sent has not reached the server: a message not acknowledged (on its way,
   * or failed and waiting for Retry) or a file still uploading, or waiting to go again after a
   * lost connection. Closing the page would lose it.
   */
  unsaved(): boolean {
    for (const p of this.pending.values()) if (p.id === null) return true;
    for (const u of this.uploads.values()) if (u.error === null || u.retryable) return true;
    return false;
  }

  /** A new message: on the socket now, or after the next hello when not connected. */
  send(to: Address, type: Message["type"], data: string): void {
    const pending: Pending = { ...to, type, data, clientMsgId: this.deps.newId(), status: "sending", error: null, retryable: true, id: null };
    this.pending.set(pending.clientMsgId, pending);
    this.transmit(pending);
    this.deps.changed();
  }

  /** Files sent one after another, so that their messages come in the order given; the rest
   * are not sent once the session ends or the team is dropped meanwhile. */
  async sendFiles(to: Address, files: readonly File[]): Promise<void> {
    const drops = this.drops.get(to.channel) ?? 0;
    for (const file of files) {
      if (this.ended || (this.drops.get(to.channel) ?? 0) !== drops) return;
      await this.sendFile(to, file);
    }
  }

  /** Uploads the file, then sends it as a message; its progress and failure show meanwhile. */
  async sendFile(to: Address, file: File): Promise<void> {
    const key = ++this.uploadSeq;
    const view: UploadView = { key, ...to, name: file.name, progress: 0, error: null, retryable: false };
    const cancel = new AbortController();
    this.uploads.set(key, view);
    this.cancels.set(key, cancel);
    this.deps.changed();
    try {
      const attachment = await this.deps.upload(
        to.channel,
        file,
        (fraction) => {
          view.progress = fraction;
          this.deps.changed();
        },
        cancel.signal,
      );
      this.uploads.delete(key);
      // Cancelled as it completed: the file is stored, but the user said not to send it.
      if (!cancel.signal.aborted) {
        this.send(to, attachment.kind, attachment.id);
        // The server names a file by what it was checked as (`script.py` as text is
        // `script.py.txt`, so a saved download opens as text): the sender is told.
        if (attachment.filename && attachment.filename !== file.name) {
          (this.deps.tell ?? this.deps.announce)(`“${file.name}” was sent as “${attachment.filename}”, the name its file type needs.`);
        }
      }
    } catch (err) {
      if (!cancel.signal.aborted) {
        view.error = err instanceof Error ? err.message : String(err);
        view.retryable = err instanceof UploadError && err.retryable;
        if (view.retryable) this.failedFiles.set(key, file);
        this.deps.announce(view.error);
      }
    } finally {
      this.cancels.delete(key);
    }
    this.deps.changed();
  }

  /** Stops an upload in progress; nothing is sent and nothing stays on screen. */
  cancelUpload(key: number): void {
    this.cancels.get(key)?.abort();
    this.uploads.delete(key);
    this.failedFiles.delete(key);
    this.deps.changed();
  }

  dismissUpload(key: number): void {
    this.uploads.delete(key);
    this.failedFiles.delete(key);
    this.deps.changed();
  }

  /** Uploads a file that failed for a passing reason again, in a new row. */
  retryUpload(key: number): void {
    const view = this.uploads.get(key);
    const file = this.failedFiles.get(key);
    if (!view || !file) return;
    this.dismissUpload(key);
    void this.sendFile({ channel: view.channel, to: view.to, threadId: view.threadId }, file);
  }

  /** After a hello: whatever was sent but never acknowledged goes again (same client_msg_id),
   * and files that failed for want of a connection are uploaded again. */
  resend(): void {
    for (const p of this.pending.values()) if (p.status === "sending" && p.id === null) this.transmit(p);
    for (const key of [...this.failedFiles.keys()]) this.retryUpload(key);
  }

  retry(clientMsgId: string): void {
    const p = this.pending.get(clientMsgId);
    if (!p || !p.retryable) return;
    p.status = "sending";
    p.error = null;
    this.resends.delete(p); // the user asked: it gets its automatic resends again
    this.transmit(p);
    this.deps.changed();
  }

  discard(clientMsgId: string): void {
    this.pending.delete(clientMsgId);
    this.deps.changed();
  }

  /** A refused text goes back to its composer (the one for its thread, or the conversation's). */
  takeBack(clientMsgId: string): void {
    const p = this.pending.get(clientMsgId);
    if (!p) return;
    this.pending.delete(clientMsgId);
    if (p.type === "text") this.draft = { key: ++this.draftSeq, box: boxKey(p.channel, p.to, p.threadId), text: p.data };
    this.deps.changed();
  }

  /** The composer took the draft. */
  takeDraft(key: number): void {
    if (this.draft?.key === key) this.draft = null;
  }

  /** What was typed in a message box and not sent, by `boxKey`, while another is on screen. */
  unsent(key: string): string {
    return this.unsentTexts.get(key) ?? "";
  }

  /** A box opens with its unsent text: what was handed back to it is in that text from now on. */
  openBox(key: string): string {
    this.handedBack.delete(key);
    return this.unsent(key);
  }

  /** A box closes holding `text`. Texts handed back to it while it was open (its team dropped,
   * the session ended) stay after it: the box never showed them. */
  closeBox(key: string, text: string): void {
    const back = this.handedBack.get(key);
    this.handedBack.delete(key);
    this.keepUnsent(key, back === undefined ? text : joined(text, back));
  }

  keepUnsent(key: string, text: string): void {
    const kept = text.trim() ? text : ""; // a blank box keeps nothing
    if (this.signedOut || kept === this.unsent(key)) return;
    if (kept) this.unsentTexts.set(key, kept);
    else this.unsentTexts.delete(key);
    this.deps.kept?.save(this.unsentTexts);
  }

  /** Signed out: what this account was writing must not stay behind in the tab (nor what its
   * boxes hand over as they close afterwards), and its uploads stop. A session that ended
   * without the user's say (`keep`: another device changed the password, the login expired)
   * keeps it instead, texts on their way included, for their next login in this tab. */
  signOut(keep = false, readable: (p: Pending) => string = (p) => p.data): void {
    this.ended = true;
    for (const key of [...this.uploads.keys()]) this.cancelUpload(key);
    if (keep) {
      this.handBack(() => true, readable);
      return;
    }
    this.signedOut = true;
    this.unsentTexts.clear();
    this.deps.kept?.save(this.unsentTexts);
  }

  /** The relay has it; done once the message itself is held too (`held`), else at `settle`. */
  acked(ack: AckFrame, held: (channel: string, id: string) => boolean): void {
    const p = this.pending.get(ack.client_msg_id);
    if (!p) return;
    p.id = ack.id;
    if (held(p.channel, ack.id)) this.pending.delete(ack.client_msg_id);
  }

  /** Pending sends whose message has arrived are done. */
  settle(messages: readonly Message[]): void {
    if (this.pending.size === 0) return;
    const ids = new Set(messages.map((m) => m.id));
    for (const [key, p] of this.pending) if (p.id !== null && ids.has(p.id)) this.pending.delete(key);
  }

  /** The server refused a send: it stays, marked failed; returned so the model can react. */
  refused(error: ErrorFrame): Pending | undefined {
    const p = error.client_msg_id ? this.pending.get(error.client_msg_id) : undefined;
    if (!p) return undefined;
    const resends = this.resends.get(p) ?? 0;
    if (retryable(error.code) && resends < AUTO_RESENDS) {
      // Still "sending": it goes again shortly, unless it was sent again meanwhile (a hello).
      // The refusal answered the last transmission: its ack timer has nothing left to say (a
      // refusal that came late, as `unavailable` after Kafka's 15 s, is no silent link).
      this.resends.set(p, resends + 1);
      const refused = ++this.transmitSeq;
      this.transmissions.set(p, refused);
      this.deps.clock.setTimeout(() => {
        if (this.unanswered(p) && this.transmissions.get(p) === refused) this.transmit(p);
      }, Math.min(RESEND_MAX_MS, RESEND_FIRST_MS * 2 ** resends));
      return p;
    }
    p.status = "failed";
    p.error = error.message;
    p.retryable = retryable(error.code);
    this.deps.announce(`Message not sent: ${error.message}`);
    return p;
  }

  /** Forget the unsent texts of every team but those `held` says the user is in. */
  keepOnly(held: (team: string) => boolean): void {
    const boxes = [...this.unsentTexts.keys()].filter((box) => !held(teamOfBox(box)));
    for (const box of boxes) this.unsentTexts.delete(box);
    if (boxes.length > 0) this.deps.kept?.save(this.unsentTexts);
  }

  /** The user is no longer in the team: what was on its way there cannot go, files included.
   * What its boxes kept unsent stays: it is the user's own text, back in its box if they are
   * added again before the tab reloads (a reload forgets the texts of teams not held). So do
   * texts sent and never acknowledged (written offline, say): each goes back to its box, made
   * `readable` as a box shows it. The number of those is returned, for the page to say. */
  dropTeam(team: string, readable: (p: Pending) => string = (p) => p.data): number {
    this.drops.set(team, (this.drops.get(team) ?? 0) + 1);
    for (const [key, u] of this.uploads) if (u.channel === team) this.cancelUpload(key);
    return this.handBack((p) => p.channel === team, readable);
  }

  /** Drops the pending sends `which` picks; the texts among them never acknowledged go back to
   * their boxes, made `readable` as a box shows them (mentions by name). How many went back. */
  private handBack(which: (p: Pending) => boolean, readable: (p: Pending) => string): number {
    let unsent = 0;
    for (const [key, p] of this.pending) {
      if (!which(p)) continue;
      this.pending.delete(key);
      if (p.type !== "text" || p.id !== null) continue;
      unsent += 1;
      const box = boxKey(p.channel, p.to, p.threadId);
      const text = readable(p);
      this.handedBack.set(box, joined(this.handedBack.get(box) ?? "", text));
      this.keepUnsent(box, joined(this.unsent(box), text));
    }
    return unsent;
  }

  /** Still on its way, sent and not acknowledged (not discarded, taken back or given up since). */
  private unanswered(p: Pending): boolean {
    return this.pending.get(p.clientMsgId) === p && p.status === "sending" && p.id === null;
  }

  /**
   * Puts a pending send on the socket. A socket can look open on a link that died without the
   * browser noticing (no close, no offline event): a send that gets no answer in time makes it
   * reconnect, and every unanswered send goes again after the next hello (same client_msg_id,
   * so never twice).
   */
  private transmit(p: Pending): void {
    const transmission = ++this.transmitSeq;
    this.transmissions.set(p, transmission);
    if (!this.deps.socket.send(frameOf(p))) return;
    this.deps.clock.setTimeout(() => {
      // Answered meanwhile (a refusal it was sent again after counts): only silence is news.
      if (this.transmissions.get(p) !== transmission) return;
      if (this.unanswered(p)) this.deps.socket.reconnect?.("the server did not answer");
    }, ACK_TIMEOUT_MS);
  }
}

/** The message frame of the contract (DESIGN section 5), with the thread when it is a reply. */
function frameOf(p: Pending): object {
  return {
    channel_id: p.channel,
    to: p.to,
    type: p.type,
    data: p.data,
    client_msg_id: p.clientMsgId,
    ...(p.threadId ? { thread_id: p.threadId } : {}),
  };
}
