// One channel's messages, kept gap-free by the contract's cursor rule (DESIGN section 4):
// - the cursor is the highest seq of the message and `update` frames applied in order; nothing
//   else (acks, reads, a thread or an older page fetched out of band) ever moves it;
// - during a resume, live frames are buffered; the cursor moves only as pages are applied; at the
//   end the buffer is applied in seq order, each message once (dedupe by id) and each change once
//   (a change applies only if its seq is above the last one applied to that message);
// - what is held is one unbroken run of the channel, from the oldest page loaded up to the cursor:
//   a change to a message below it (a reaction or a thread reply to a week-old message) is kept
//   aside, not added to the list, or the next older page would be asked for below it and
//   everything in between would never be shown.
import type { Change, Message, UpdateFrame } from "../api/types";

export type LiveFrame = Message | UpdateFrame;

interface Entry {
  message: Message;
  /** The seq of the last change applied to this message (its own seq when created). */
  changeSeq: number;
}

interface Aside extends Entry {
  /** When it came (`ChannelTimeline.tick`), to tell whether an older page can have seen it. */
  at: number;
}

/** Changes to messages outside what is held, kept until an older page brings them. */
const ASIDE_MAX = 500;

function asChange(frame: LiveFrame): Change {
  if ("change" in frame && frame.type === "update") {
    return { seq: frame.seq, change: frame.change, message: frame.message };
  }
  const message = frame as Message;
  return { seq: message.seq, change: "created", message };
}

export class ChannelTimeline {
  cursor: number | null = null;
  /** Whether the starting page is in: until then live frames are not kept (only counted). */
  loaded = false;
  /** Whether messages older than the oldest held one exist (infinite scroll upward). */
  hasOlder = true;
  /** Where the server said the next older page starts (below what it read for the last one),
   * when that is below the oldest held message: it read a stretch the reader sees nothing of. */
  private olderBefore: number | null = null;
  private resuming = false;
  private buffer: LiveFrame[] = [];
  private readonly byId = new Map<string, Entry>();
  private readonly aside = new Map<string, Aside>();
  private ticks = 0;
  private sorted: Message[] | null = null;
  /** Bumped on every visible change, for views to notice. */
  version = 0;

  get isResuming(): boolean {
    return this.resuming;
  }

  get size(): number {
    return this.byId.size;
  }

  get(id: string): Message | undefined {
    return this.byId.get(id)?.message;
  }

  /** Every held message, ascending by seq. */
  messages(): Message[] {
    if (!this.sorted) this.sorted = [...this.byId.values()].map((e) => e.message).sort((a, b) => a.seq - b.seq);
    return this.sorted;
  }

  oldestSeq(): number | null {
    return this.messages()[0]?.seq ?? null;
  }

  /** Whether every message of the channel from `seq` up is held: loaded, not resuming, and
   * nothing older to fetch or the oldest held at or below `seq` (what is held is unbroken). */
  holdsFrom(seq: number): boolean {
    if (!this.loaded || this.resuming) return false;
    const oldest = this.oldestSeq();
    return !this.hasOlder || (oldest !== null && oldest <= seq);
  }

  /** The `before` of the next older page: below the oldest held message, or below where the
   * server's last older page stopped reading, whichever is lower; null with nothing to go on. */
  olderFrom(): number | null {
    const oldest = this.oldestSeq();
    if (this.olderBefore === null) return oldest;
    return oldest === null ? this.olderBefore : Math.min(oldest, this.olderBefore);
  }

  /**
   * A message or update frame from the socket. Returns the messages it created (new ids), for
   * unread counting and announcements; a buffered or duplicate frame returns nothing.
   */
  live(frame: LiveFrame): Message[] {
    if (!this.loaded && !this.resuming) return [];
    if (this.resuming) {
      this.buffer.push(frame);
      return [];
    }
    return this.applyInOrder([asChange(frame)]);
  }

  /** Start loading or resuming: live frames are buffered from now on; returns the cursor. */
  beginResume(): number | null {
    this.resuming = true;
    return this.cursor;
  }

  /** The starting page (history with no cursor): applied in order, the cursor moves to its end. */
  applyLatest(page: Message[], hasOlder: boolean, before: number | null = null): Message[] {
    if (this.loaded) {
      // Loaded before, and still no cursor: every page so far was one the server stopped short
      // of anything for this reader. What older pages brought since is not contiguous with
      // this latest page: it goes, and is read again below it.
      this.byId.clear();
      this.loaded = false;
      this.touch();
    }
    const created = this.applyInOrder(page.map((m) => ({ seq: m.seq, change: "created" as const, message: m })));
    if (!this.loaded) {
      this.hasOlder = hasOlder;
      this.olderBefore = before;
    }
    this.loaded = true;
    return created;
  }

  /** A page of `changes?after=<cursor>`, ascending: applied in order, the cursor follows. */
  applyChanges(page: Change[]): Message[] {
    return this.applyInOrder(page);
  }

  /** The last page is in: apply what arrived live meanwhile, in seq order, each thing once. */
  endResume(): Message[] {
    this.resuming = false;
    const buffered = this.buffer.map(asChange).sort((a, b) => a.seq - b.seq);
    this.buffer = [];
    return this.applyInOrder(buffered);
  }

  /** A resume that failed: keep buffering (the cursor did not move past anything unfetched). */
  abortResume(): void {
    // The buffer stays; the next beginResume goes on from the same cursor.
  }

  /** A mark to pass to `applyOlder`, taken before its page is asked for. */
  tick(): number {
    this.ticks += 1;
    return this.ticks;
  }

  /**
   * An older page (`before=`), asked for at `askedAt` (`tick()`): fills in below, never moves the
   * cursor. A message of it that changed live meanwhile keeps the live state when the change came
   * after the page was asked for (the page may predate it), the page's otherwise.
   */
  applyOlder(page: Message[], hasMore: boolean, askedAt: number, before: number | null = null): void {
    for (const m of page) {
      const kept = this.aside.get(m.id);
      this.aside.delete(m.id);
      if (this.byId.has(m.id)) continue;
      if (kept) this.byId.set(m.id, { message: kept.at > askedAt ? kept.message : m, changeSeq: kept.changeSeq });
      else this.byId.set(m.id, { message: m, changeSeq: m.seq });
    }
    this.hasOlder = hasMore;
    if (before !== null && (this.olderBefore === null || before < this.olderBefore)) this.olderBefore = before;
    this.touch();
  }

  /** A message state from a REST answer (an edit's result, a thread page): no cursor move. */
  applyOutOfBand(messages: Message[]): void {
    for (const m of messages) this.upsert({ seq: m.seq, change: "created", message: m }, true);
    this.touch();
  }

  private applyInOrder(changes: Change[]): Message[] {
    const created: Message[] = [];
    for (const change of changes) {
      if (this.upsert(change)) created.push(change.message);
      if (this.cursor === null || change.seq > this.cursor) this.cursor = change.seq;
    }
    this.touch();
    return created;
  }

  /** Returns true when the message id was new. */
  private upsert(change: Change, outOfBand = false): boolean {
    const id = change.message.id;
    const held = this.byId.get(id);
    if (!held && change.change !== "created" && !outOfBand) {
      this.putAside(change);
      return false;
    }
    if (!held) {
      this.byId.set(id, { message: change.message, changeSeq: change.seq });
      return true;
    }
    if (outOfBand) {
      // A REST answer is the state after some change we may not have seen yet: take it, but
      // keep the change seq, so the live update that announces it still applies (idempotently).
      held.message = change.message;
    } else if (change.change !== "created" && change.seq > held.changeSeq) {
      held.message = change.message;
      held.changeSeq = change.seq;
    }
    return false;
  }

  private putAside(change: Change): void {
    const id = change.message.id;
    const kept = this.aside.get(id);
    if (kept && change.seq <= kept.changeSeq) return;
    this.aside.delete(id); // re-inserted last: the oldest is forgotten first
    this.aside.set(id, { message: change.message, changeSeq: change.seq, at: this.tick() });
    if (this.aside.size > ASIDE_MAX) {
      const oldest = this.aside.keys().next().value;
      if (oldest !== undefined) this.aside.delete(oldest);
    }
  }

  private touch(): void {
    this.sorted = null;
    this.version += 1;
  }
}
