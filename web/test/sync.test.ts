import { describe, expect, it } from "vitest";
import { ApiError, type Page } from "../src/api/client";
import type { Change, Message } from "../src/api/types";
import { loadOlder, nextFrom, SyncQueue, type SyncApi, syncChannel } from "../src/state/sync";
import { ChannelTimeline } from "../src/state/timeline";
import { created, flush, msg, TEAM } from "./fixtures";

/** A server holding `log` (changes in seq order) that answers pages of `limit`. */
class FakeServer implements SyncApi {
  calls: string[] = [];
  /** Runs while a request is "on the wire": the test injects live frames there. */
  during: (() => void) | null = null;
  changesExist = true;

  constructor(public log: Change[]) {}

  async history(_team: string, q: { before?: number; after?: number; limit?: number }): Promise<Page<Message>> {
    this.calls.push(`history ${JSON.stringify(q)}`);
    this.during?.();
    const all = this.log.filter((c) => c.change === "created").map((c) => c.message);
    const limit = q.limit ?? 50;
    let page: Message[];
    let hasMore: boolean;
    if (q.after !== undefined) {
      const rest = all.filter((m) => m.seq > (q.after as number));
      page = rest.slice(0, limit);
      hasMore = rest.length > limit;
    } else {
      const below = q.before === undefined ? all : all.filter((m) => m.seq < (q.before as number));
      page = below.slice(-limit);
      hasMore = below.length > limit;
    }
    return { data: page, meta: { has_more: hasMore } };
  }

  async changes(_team: string, after: number, limit = 200): Promise<Page<Change>> {
    this.calls.push(`changes after=${after}`);
    if (!this.changesExist) throw new ApiError(404, "not_found", "no such route");
    this.during?.();
    const rest = this.log.filter((c) => c.seq > after);
    return { data: rest.slice(0, limit), meta: { has_more: rest.length > limit, next_cursor: null } };
  }
}

describe("syncChannel", () => {
  it("loads the latest page first, then resumes from its end with changes?after=", async () => {
    const server = new FakeServer([1, 2, 3].map((s) => created(msg(s))));
    const t = new ChannelTimeline();
    await syncChannel(server, TEAM, t);
    expect(t.cursor).toBe(3);
    server.log.push(created(msg(4)), { seq: 5, change: "edited", message: msg(2, { data: "new" }) });
    const fresh = await syncChannel(server, TEAM, t);
    // From just below the cursor (a reply and its root's thread change share a seq).
    expect(server.calls).toEqual(['history {"limit":50}', "changes after=2"]);
    expect(fresh.map((m) => m.id)).toEqual(["m4"]);
    expect(t.get("m2")?.data).toBe("new");
    expect(t.cursor).toBe(5);
  });

  it("pages changes until has_more is false", async () => {
    const server = new FakeServer(Array.from({ length: 450 }, (_, i) => created(msg(i + 1))));
    const t = new ChannelTimeline();
    t.beginResume();
    t.applyLatest([msg(1)], false);
    t.endResume();
    await syncChannel(server, TEAM, t);
    expect(server.calls).toEqual(["changes after=0", "changes after=200", "changes after=400"]);
    expect(t.size).toBe(450);
    expect(t.cursor).toBe(450);
  });

  it("merges live frames that arrive while pages load: every message once, nothing missing", async () => {
    const server = new FakeServer([1, 2].map((s) => created(msg(s))));
    const t = new ChannelTimeline();
    await syncChannel(server, TEAM, t);
    // Reconnect: 3 and 4 were stored while the socket was down; 4 and 5 also arrive live
    // on the new socket while the resume page is in flight.
    server.log.push(created(msg(3)), created(msg(4)));
    server.during = () => {
      t.live(msg(4));
      t.live(msg(5));
      server.during = null;
    };
    await syncChannel(server, TEAM, t);
    expect(t.messages().map((m) => m.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(t.cursor).toBe(5);
  });

  it("falls back to history after= on a backend without the changes route", async () => {
    const server = new FakeServer([1, 2].map((s) => created(msg(s))));
    const t = new ChannelTimeline();
    await syncChannel(server, TEAM, t);
    server.changesExist = false;
    server.log.push(created(msg(3)));
    await syncChannel(server, TEAM, t);
    expect(server.calls.slice(1)).toEqual(["changes after=1", 'history {"after":1,"limit":200}']);
    expect(t.cursor).toBe(3);
  });

  it("leaves the timeline buffering when a page fails, and the retry loses nothing", async () => {
    const server = new FakeServer([created(msg(1))]);
    const t = new ChannelTimeline();
    await syncChannel(server, TEAM, t);
    server.log.push(created(msg(2)));
    const broken: SyncApi = {
      history: server.history.bind(server),
      changes: async () => {
        t.live(msg(3));
        throw new ApiError(503, "unavailable", "busy");
      },
    };
    await expect(syncChannel(broken, TEAM, t)).rejects.toThrow("busy");
    expect(t.isResuming).toBe(true);
    server.log.push(created(msg(3)));
    await syncChannel(server, TEAM, t);
    expect(t.messages().map((m) => m.seq)).toEqual([1, 2, 3]);
    expect(t.isResuming).toBe(false);
  });

  it("loads older pages below the oldest message until there are none", async () => {
    const server = new FakeServer(Array.from({ length: 120 }, (_, i) => created(msg(i))));
    const t = new ChannelTimeline();
    await syncChannel(server, TEAM, t);
    expect(t.oldestSeq()).toBe(70);
    expect(await loadOlder(server, TEAM, t)).toBe(50);
    expect(t.hasOlder).toBe(true);
    expect(await loadOlder(server, TEAM, t)).toBe(20);
    expect(t.hasOlder).toBe(false);
    expect(await loadOlder(server, TEAM, t)).toBe(0);
    expect(t.cursor).toBe(119);
  });
});

describe("SyncQueue", () => {
  it("runs one sync per channel at a time and once more for requests that came meanwhile", async () => {
    const runs: string[] = [];
    let release: () => void = () => undefined;
    const q = new SyncQueue(async (team) => {
      runs.push(team);
      await new Promise<void>((r) => (release = r));
    });
    const first = q.request("t1");
    q.request("t1");
    q.request("t1");
    await flush();
    expect(runs).toEqual(["t1"]);
    release();
    await flush();
    expect(runs).toEqual(["t1", "t1"]);
    release();
    await first;
    expect(runs).toEqual(["t1", "t1"]);
  });

  it("runs at most its concurrency of channels at once, the rest in request order", async () => {
    const started: string[] = [];
    const release = new Map<string, () => void>();
    const q = new SyncQueue(
      async (team) => {
        started.push(team);
        await new Promise<void>((r) => release.set(team, r));
      },
      () => undefined,
      2,
    );
    const all = ["t1", "t2", "t3", "t4"].map((t) => q.request(t));
    q.request("t1"); // once more after its run: keeps its slot, the others wait
    await flush();
    expect(started).toEqual(["t1", "t2"]);
    release.get("t2")?.();
    await flush();
    expect(started).toEqual(["t1", "t2", "t3"]);
    release.get("t1")?.();
    await flush();
    expect(started).toEqual(["t1", "t2", "t3", "t1"]);
    release.get("t1")?.();
    await flush();
    expect(started).toEqual(["t1", "t2", "t3", "t1", "t4"]);
    release.get("t3")?.();
    release.get("t4")?.();
    await Promise.all(all);
    // Every slot was given back: a new request runs at once.
    q.request("t5");
    q.request("t6");
    await flush();
    expect(started.slice(-2)).toEqual(["t5", "t6"]);
  });

  it("keeps the buffer when a resume is asked for during another: the gap it announces is fetched", async () => {
    const server = new FakeServer([1, 2].map((s) => created(msg(s))));
    const t = new ChannelTimeline();
    await syncChannel(server, TEAM, t);
    server.log.push(created(msg(3)));
    let gate: () => void = () => undefined;
    const slow: SyncApi = {
      history: server.history.bind(server),
      changes: async (team, after, limit) => {
        const page = await server.changes(team, after, limit);
        await new Promise<void>((r) => (gate = r));
        return page;
      },
    };
    const q = new SyncQueue(
      (team, last) => syncChannel(slow, team, t, last).then(() => undefined),
      () => t.beginResume(),
    );
    const first = q.request(TEAM);
    await flush();
    // While the first page (up to 3) is on the wire, 4 is stored but missed live (a controller
    // stream broke), a resync asks again, and 5 arrives live after it.
    server.log.push(created(msg(4)), created(msg(5)));
    q.request(TEAM);
    t.live(msg(5));
    gate();
    await flush();
    expect(t.isResuming).toBe(true);
    expect(t.cursor).toBe(3);
    gate();
    await first;
    expect(t.messages().map((m) => m.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(t.isResuming).toBe(false);
  });

  it("recovers a root's thread change cut off from its reply, which shares the reply's seq", async () => {
    const root = msg(1);
    const reply = msg(2, { thread_id: "m1" });
    const rootAfter = { ...root, thread: { replies: 1, last_reply_ts: reply.ts } };
    const server = new FakeServer([created(root), created(reply), { seq: 2, change: "thread", message: rootAfter }]);
    const t = new ChannelTimeline();
    t.beginResume();
    t.applyLatest([root], true);
    t.endResume();
    t.live(reply); // the connection broke before the root's thread update arrived
    await syncChannel(server, TEAM, t);
    expect(t.get("m1")?.thread?.replies).toBe(1);
    expect(t.messages().map((m) => m.id)).toEqual(["m1", "m2"]);
    expect(t.cursor).toBe(2);
  });
});

/** A server whose pages read at most `span` records of the channel, as the real one reads a few
 * buckets: records the reader may not see (others' DMs, `hidden`) take up that share too. */
class BoundedServer implements SyncApi {
  calls: string[] = [];

  constructor(
    public log: Change[],
    private readonly hidden: Set<number>,
    private readonly span: number,
  ) {}

  private walk<T extends { seq: number }>(records: T[], limit: number, forward: boolean): Page<T> {
    const found: T[] = [];
    for (const [read, r] of records.entries()) {
      if (read >= this.span && found.length < limit) {
        const stopped = records[read - 1]!.seq;
        return { data: forward ? found : found.reverse(), meta: { has_more: true, next_cursor: stopped } };
      }
      if (!this.hidden.has(r.seq)) found.push(r);
      if (found.length === limit) break;
    }
    const rest = forward ? records.filter((r) => r.seq > (found.at(-1)?.seq ?? Infinity)) : [];
    const more = forward ? rest.some((r) => !this.hidden.has(r.seq)) : records.slice(records.indexOf(found.at(-1)!) + 1).some((r) => !this.hidden.has(r.seq));
    const page = forward ? found : found.reverse();
    const edge = forward ? page.at(-1)?.seq : page[0]?.seq;
    return { data: page, meta: { has_more: found.length > 0 && more, next_cursor: edge ?? null } };
  }

  async history(_team: string, q: { before?: number; after?: number; limit?: number }): Promise<Page<Message>> {
    this.calls.push(`history ${JSON.stringify(q)}`);
    const all = this.log.filter((c) => c.change === "created").map((c) => c.message);
    const below = all.filter((m) => q.before === undefined || m.seq < q.before).reverse();
    return this.walk(below, q.limit ?? 50, false);
  }

  async changes(_team: string, after: number, limit = 200): Promise<Page<Change>> {
    this.calls.push(`changes after=${after}`);
    return this.walk(
      this.log.filter((c) => c.seq > after),
      limit,
      true,
    );
  }
}

describe("pages the server stopped short", () => {
  // 1..120, of which the reader sees 1, 2, 60 and 120: long runs of others' DMs between.
  const seen = new Set([1, 2, 60, 120]);
  const hidden = new Set([...Array(120).keys()].map((i) => i + 1).filter((s) => !seen.has(s)));
  const log = () => [...Array(120).keys()].map((i) => created(msg(i + 1)));

  it("resumes through empty pages that say there is more, from the cursor the server gives", async () => {
    const server = new BoundedServer(log(), hidden, 10);
    const t = new ChannelTimeline();
    t.cursor = 0;
    t.loaded = true;
    const fresh = await syncChannel(server, TEAM, t);
    expect(fresh.map((m) => m.seq)).toEqual([1, 2, 60, 120]);
    expect(t.cursor).toBe(120);
    // Twelve requests of ten records each: none asked twice, none skipped.
    expect(server.calls.length).toBe(12);
    expect(new Set(server.calls).size).toBe(12);
  });

  it("scrolls back through empty older pages below where the server stopped reading", async () => {
    const server = new BoundedServer(log(), hidden, 25);
    const t = new ChannelTimeline();
    await syncChannel(server, TEAM, t);
    expect(t.messages().map((m) => m.seq)).toEqual([120]);
    expect(t.olderFrom()).toBe(96); // below the 25 records the first page read
    // The next older page is asked below 96, and empty ones are gone through (up to five).
    expect(await loadOlder(server, TEAM, t)).toBe(1);
    expect(t.messages().map((m) => m.seq)).toEqual([60, 120]);
    expect(await loadOlder(server, TEAM, t)).toBe(2);
    expect(t.messages().map((m) => m.seq)).toEqual([1, 2, 60, 120]);
    expect(t.hasOlder).toBe(false);
    expect(await loadOlder(server, TEAM, t)).toBe(0);
  });
});

describe("a latest page read again with no cursor yet", () => {
  it("reads below the new latest page, not below the old one: nothing between is skipped", async () => {
    // 1..120 at first, the reader sees only 10: the first latest page is empty, no cursor.
    const seen = new Set([10]);
    const hiddenOf = (n: number) => new Set([...Array(n).keys()].map((i) => i + 1).filter((s) => !seen.has(s)));
    const logOf = (n: number) => [...Array(n).keys()].map((i) => created(msg(i + 1)));
    const t = new ChannelTimeline();
    await syncChannel(new BoundedServer(logOf(120), hiddenOf(120), 25), TEAM, t);
    expect(t.cursor).toBeNull();
    expect(t.olderFrom()).toBe(96);
    // Offline, 121..200 are written, 130 among them for the reader; then a hello loads again.
    seen.add(130);
    const later = new BoundedServer(logOf(200), hiddenOf(200), 25);
    await syncChannel(later, TEAM, t);
    expect(t.olderFrom()).toBe(176);
    for (let i = 0; i < 10 && t.hasOlder; i++) await loadOlder(later, TEAM, t);
    expect(t.messages().map((m) => m.seq)).toEqual([10, 130]);
  });
});

describe("nextFrom", () => {
  it("takes the server's cursor, else the page's edge, and nothing that does not move on", () => {
    const page = (seqs: number[], next_cursor?: number | null) => ({ data: seqs.map((seq) => ({ seq })), meta: { has_more: true, next_cursor } });
    expect(nextFrom(page([4, 5], 9), 3, true)).toBe(9);
    expect(nextFrom(page([4, 5]), 3, true)).toBe(5);
    expect(nextFrom(page([], 3), 3, true)).toBeNull();
    expect(nextFrom(page([7, 8], 2), 9, false)).toBe(2);
    expect(nextFrom(page([7, 8], null), 9, false)).toBe(7);
    expect(nextFrom(page([], null), 9, false)).toBeNull();
  });
});
