// Moving a team's read mark as the reader sees messages (DESIGN 5b: one mark per member and team):
// never past an unread message they have not viewed, never before the history above the mark is
// held (a DM older than the first page would be passed unseen), and reported to the server once
// the reader pauses. No DOM; the model says what was seen and where.
import type { Message } from "../api/types";
import type { Clock } from "../auth/keeper";
import type { ChannelTimeline } from "../state/timeline";
import { readUpTo, type ReadState } from "../state/unread";

/** Older pages of 50 read back to the read mark before it moves: up to 1,000 messages unread. */
const FILL_PAGES = 20;
const FILL_RETRY_MS = 2000;
const FILL_TRIES = 3;
const READ_DEBOUNCE_MS = 400;

export interface ReadMarksDeps {
  clock: Clock;
  me: string;
  timeline(team: string): ChannelTimeline;
  read(team: string): ReadState;
  /** The team's next older page (one request at a time); how many messages came. */
  older(team: string): Promise<number>;
  /** Whether the user was just added to the team and the server may not have written their
   * joining position yet (until then a -1 mark means "not known"). */
  joining(team: string): boolean;
  /** Reports the mark to the server (`PUT /read`). */
  markRead(team: string, seq: number): Promise<void>;
  changed(): void;
  fail(what: string, err: unknown): void;
}

interface Fill {
  pages: number;
  busy: boolean;
  failedAt: number;
  failures: number;
}

export class ReadMarks {
  private readonly filling = new Map<string, Fill>();
  private readonly timers = new Map<string, unknown>();
  private stopped = false;

  constructor(private readonly deps: ReadMarksDeps) {}

  /**
   * The reader saw the team's messages up to `target` where `here` holds (the open
   * conversation's, or a thread's): they count as viewed, and the mark moves as far as it may.
   */
  seen(team: string, target: number, here: (m: Message) => boolean): void {
    const { deps } = this;
    // The mark stops before an unseen DM only among held messages: with older ones above the
    // mark not held yet (a first page of 50 under 60 unread), one may be among them. They are
    // read back first; the view reports again once they are in.
    if (!this.heldFromReadMark(team)) return;
    const r = deps.read(team);
    const held = deps.timeline(team).messages();
    const from = r.lastRead ?? -1;
    r.view(held.filter((m) => m.seq > from && m.seq <= target && here(m)));
    const upTo = readUpTo(target, held, (m) => r.viewed(m), deps.me, r.lastRead);
    const before = [r.lastRead, r.count];
    const report = r.seen(upTo, held);
    // The list reports on every redraw: a report that changes nothing must not redraw again.
    if (r.lastRead === before[0] && r.count === before[1]) return;
    deps.changed();
    if (report !== null) this.report(team);
  }

  /**
   * Whether what the team's list shows starts at or below the read mark (or the reading back
   * stopped): the "new messages" divider is then where the first unread message really is.
   */
  holdsReadMark(team: string): boolean {
    const t = this.deps.timeline(team);
    const lastRead = this.deps.read(team).lastRead;
    if (lastRead === null || this.unmarked(team)) return true;
    // Below the oldest held message, or below where the server's last older page stopped
    // reading (it found nothing for this reader up to there).
    const from = t.olderFrom();
    if (!t.hasOlder || from === null || from <= lastRead) return true;
    return (this.filling.get(team)?.pages ?? 0) >= FILL_PAGES;
  }

  /**
   * Where the open conversation's list starts: at the "new messages" divider once the divider is
   * where the first unread message really is ("divider"), not yet ("wait": the history is being
   * read back to the mark), or at the bottom (no mark known, or a mark before everything with
   * nothing unread).
   */
  listStart(team: string): "divider" | "wait" | "bottom" {
    return this.unmarked(team) ? "bottom" : this.holdsReadMark(team) ? "divider" : "wait";
  }

  /**
   * No mark to read back to: none known, or -1 while the user has just been added (the server
   * writes their joining position, the team read up to then, within a second; everything would
   * look unread until it has), or -1 with nothing unread. Otherwise -1 is a real mark: a member
   * added before anything was posted, who has read nothing since, whose unread messages start at
   * the very beginning and are read back like any others.
   */
  unmarked(team: string): boolean {
    const r = this.deps.read(team);
    if (r.lastRead === null) return true;
    return r.lastRead < 0 && (r.count === 0 || this.deps.joining(team));
  }

  /** The user is no longer in the team: nothing more is read back or reported for it. */
  forget(team: string): void {
    this.filling.delete(team);
    const timer = this.timers.get(team);
    if (timer !== undefined) this.deps.clock.clearTimeout(timer);
    this.timers.delete(team);
  }

  /** Signed out: nothing more is read back, reported or said. */
  stop(): void {
    this.stopped = true;
    for (const team of [...this.filling.keys(), ...this.timers.keys()]) this.forget(team);
  }

  /** Tells the server the mark once the reader pauses (a scroll reports many times). */
  private report(team: string): void {
    const { deps } = this;
    const previous = this.timers.get(team);
    if (previous !== undefined) deps.clock.clearTimeout(previous);
    this.timers.set(
      team,
      deps.clock.setTimeout(() => {
        this.timers.delete(team);
        const seqNow = deps.read(team).lastRead;
        if (seqNow === null) return;
        // A backend without read state (before 5b) answers 404: the mark stays local.
        deps.markRead(team, seqNow).catch(() => undefined);
      }, READ_DEBOUNCE_MS),
    );
  }

  /**
   * Whether the team's messages above the read mark are all held: true, or false while they are
   * being read back (older pages, at most FILL_PAGES; past that, or with none left, true: the
   * mark then moves as the view says). A failed read is tried again after a pause, twice; a
   * third failure gives up (the mark then moves as before) and says so.
   */
  private heldFromReadMark(team: string): boolean {
    if (this.stopped) return false;
    if (this.holdsReadMark(team)) return true;
    const { deps } = this;
    const state = this.fillOf(team);
    if (state.busy || deps.clock.now() - state.failedAt < FILL_RETRY_MS) return false;
    state.busy = true;
    state.pages += 1;
    void deps.older(team).then(
      () => {
        state.busy = false;
        state.failures = 0; // three failures in a row give up, not three in 20 pages
        if (!this.stopped) deps.changed(); // the list redraws, and reports again
      },
      (err: unknown) => {
        state.busy = false;
        if (this.stopped) return;
        state.pages -= 1;
        state.failures += 1;
        state.failedAt = deps.clock.now();
        if (state.failures >= FILL_TRIES) {
          state.pages = FILL_PAGES;
          deps.fail("Could not load older messages", err);
        } else {
          deps.clock.setTimeout(() => deps.changed(), FILL_RETRY_MS);
        }
      },
    );
    return false;
  }

  private fillOf(team: string): Fill {
    let state = this.filling.get(team);
    if (!state) this.filling.set(team, (state = { pages: 0, busy: false, failedAt: -Infinity, failures: 0 }));
    return state;
  }
}
