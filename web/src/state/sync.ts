// Bringing a channel's timeline up to date over REST: the first load (the latest page) and the
// resume after `hello`, `resync` or a reconnect (`changes?after=<cursor>` until `has_more` is
// false). Live frames that arrive meanwhile are buffered by the timeline and applied at the end.
// Pages follow the server's `next_cursor`: a page that read its share of the channel before it
// was full (another pair's DMs take up that share) is short, even empty, with more beyond.
import { ApiError, type Page } from "../api/client";
import type { Change, Message } from "../api/types";
import { Slots } from "./slots";
import type { ChannelTimeline } from "./timeline";

export interface SyncApi {
  history(team: string, query: { before?: number; after?: number; limit?: number }): Promise<Page<Message>>;
  changes(team: string, after: number, limit?: number): Promise<Page<Change>>;
}

export const PAGE_LIMIT = 50;
const CHANGES_LIMIT = 200;
/** Empty older pages (the channel holds only others' DMs there) asked through in one go. */
const OLDER_EMPTY_TRIES = 5;

/** Where the page after this one starts: the server's cursor, else the page's last seq (in its
 * direction); null when neither moves past `from` (nothing to go on from). */
export function nextFrom(page: Page<{ seq: number }>, from: number | null, forward: boolean): number | null {
  const cursor = page.meta.next_cursor;
  const edge = forward ? page.data.at(-1)?.seq : page.data[0]?.seq;
  const next = typeof cursor === "number" ? cursor : (edge ?? null);
  if (next === null || from === null) return next;
  return (forward ? next > from : next < from) ? next : null;
}

/**
 * Loads (no cursor yet) or resumes (cursor known) one channel; returns the messages it created,
 * in seq order, for unread counting. On failure the timeline keeps buffering and the caller
 * tries again later: nothing applied so far is lost and the cursor never skipped anything.
 *
 * `last()` is asked once the pages are in: when another resume was asked for meanwhile (a
 * `resync`, a new `hello`), this one may have fetched before the gap it announces, so the buffer
 * is kept and the next run pages on from the cursor the pages reached. Only the last run applies
 * the buffer; applying it earlier would move the cursor past the gap.
 */
export async function syncChannel(api: SyncApi, team: string, timeline: ChannelTimeline, last: () => boolean = () => true): Promise<Message[]> {
  const cursor = timeline.beginResume();
  const created: Message[] = [];
  if (cursor === null) {
    const page = await api.history(team, { limit: PAGE_LIMIT });
    created.push(...timeline.applyLatest(page.data, Boolean(page.meta.has_more), nextFrom(page, null, false)));
  } else {
    // From just below the cursor: a thread reply and its root's `thread` change share a seq, and
    // a connection can break between the two frames; what is fetched again is skipped (dedupe).
    let after = cursor - 1;
    for (;;) {
      const page = await changesAfter(api, team, after);
      created.push(...timeline.applyChanges(page.data));
      const next = page.meta.has_more ? nextFrom(page, after, true) : null;
      if (next === null) break;
      after = next;
    }
  }
  if (last()) created.push(...timeline.endResume());
  return created;
}

/**
 * `changes?after=` (5b). A backend from before 5b has no such route (404 for a team the caller is
 * in): DESIGN section 4 then names history `after=` as the resume call, which carries creations only.
 */
async function changesAfter(api: SyncApi, team: string, after: number): Promise<Page<Change>> {
  try {
    return await api.changes(team, after, CHANGES_LIMIT);
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 404)) throw err;
    const page = await api.history(team, { after, limit: CHANGES_LIMIT });
    return { data: page.data.map((m) => ({ seq: m.seq, change: "created", message: m })), meta: page.meta };
  }
}

/** The page above the oldest held message (infinite scroll upward); how many messages came. */
export async function loadOlder(api: SyncApi, team: string, timeline: ChannelTimeline): Promise<number> {
  for (let tries = 0; tries < OLDER_EMPTY_TRIES; tries += 1) {
    const before = timeline.olderFrom();
    if (before === null || !timeline.hasOlder) return 0;
    const askedAt = timeline.tick();
    const page = await api.history(team, { before, limit: PAGE_LIMIT });
    const more = Boolean(page.meta.has_more);
    const next = nextFrom(page, before, false);
    // A server that says "more" without a cursor that moves would be asked the same forever.
    timeline.applyOlder(page.data, more && next !== null, askedAt, next);
    if (page.data.length > 0 || !more) return page.data.length;
  }
  return 0;
}

/**
 * The most channels brought up to date at once. The server gives one user a few concurrent
 * history scans (CHAT_MANAGEMENT_SCANS_PER_USER, 4 by default) and answers 503 past them: after a
 * reconnect every held team resumes, and a scroll or a thread may need a scan meanwhile.
 */
export const SYNC_CONCURRENCY = 3;

/**
 * Runs `syncChannel` for a channel at most once at a time; a request that comes while one runs
 * (another resync, a reconnect) makes it run once more after, from the cursor reached by then.
 * At most `concurrency` channels run at once; the others wait their turn in request order.
 */
export class SyncQueue {
  private running = new Map<string, Promise<void>>();
  private again = new Set<string>();
  private readonly slots: Slots;

  /** `run` gets `last()`: false while another request for the channel is waiting. */
  constructor(
    private readonly run: (team: string, last: () => boolean) => Promise<void>,
    /** Called at once for every request, before anything is awaited (start buffering now). */
    private readonly asked: (team: string) => void = () => undefined,
    concurrency = SYNC_CONCURRENCY,
  ) {
    this.slots = new Slots(concurrency);
  }

  request(team: string): Promise<void> {
    this.asked(team);
    const current = this.running.get(team);
    if (current) {
      this.again.add(team);
      return current;
    }
    const last = () => !this.again.has(team);
    // Requests that come while this one waits for a slot are served by its first run.
    const task = this.slots.run(async () => {
      try {
        do {
          this.again.delete(team);
          await this.run(team, last);
        } while (this.again.has(team));
      } finally {
        this.running.delete(team);
      }
    });
    this.running.set(team, task);
    return task;
  }
}
