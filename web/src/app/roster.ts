// The user's teams as this page holds them, and keeping them current: the list read at start and
// after a reconnection, single-team reads (guarded against putting an older copy over a newer
// one), `membership` and `team` frames, and the team changes the panel makes. No DOM; what a
// change means for the rest of the page (timelines, selection) is the model's, through its deps.
import { type Api, ApiError } from "../api/client";
import type { MembershipFrame, Team, TeamFrame } from "../api/types";
import type { Clock } from "../auth/keeper";
import { roleNews, roleOf } from "../state/roles";
import type { ReadState } from "../state/unread";
import { shownName } from "../text/bidi";
import { byName } from "../text/order";
import { type Notices, readable } from "./notices";
import type { Place } from "./place";
import { TeamNews } from "./teamnews";

/** How often a team read is asked again when a newer write of the team overtook its answer. */
const REREAD_TRIES = 3;
const RECOUNT_TRIES = 3;
const RECOUNT_AFTER_MS = 700;
const MEMBERS_FRESH_MS = 5000;
const LEAVING_QUIET_MS = 10_000;
/** Past the server's write-behind of read state (CHAT_CONTROLLER_STATE_FLUSH_MS, 1 s). */
const RECOUNT_BEHIND_MS = 1500;
const JOIN_TRIES = 5;

export interface RosterDeps {
  api: Api;
  clock: Clock;
  me: string;
  notices: Notices;
  place: Place | undefined;
  read(team: string): ReadState;
  changed(): void;
  stopped(): boolean;
  ensureUsers(ids: readonly string[]): Promise<void>;
  loadPresence(team: string): Promise<void>;
  /** The team open in the page, if any. */
  selected(): string | null;
  selectTeam(team: string): void;
  /** The list was read (`first`: for the first time); the page opens a team if none is open. */
  listed(all: Team[], first: boolean): void;
  /** The user was added to the team (or created it): its history is read if it is wanted. */
  joined(team: string): void;
  /** The team (of these `members`) is no longer held: whatever else the page keeps of it goes.
   * How many texts on their way there could not be sent (kept for its boxes) is returned. */
  dropped(team: string, members: readonly string[]): number;
}

export class Roster {
  readonly teams = new Map<string, Team>();
  /** The team list has been read once: until then "no teams" is not known yet. */
  loaded = false;
  /** When the list of teams was last read (clock ms). */
  readAt = 0;
  private readonly news: TeamNews;
  /** Each held team's last write, by a count of writes: a slow list read does not undo newer. */
  private writes = 0;
  private readonly writtenAt = new Map<string, number>();
  /** When each team's member list was last read, to read it at most every few seconds. */
  private readonly membersReadAt = new Map<string, number>();
  private readonly membersPlanned = new Set<string>();
  /** Super admin transfers of this page's on their way, per team. */
  private readonly transferring = new Map<string, number>();
  /** Teams the user is leaving right now. */
  private readonly leaving = new Set<string>();
  /** Teams the user was just added to whose joining position the server may not have written
   * yet: a -1 read now means "not known yet", not "read nothing". */
  readonly joining = new Set<string>();

  constructor(private readonly deps: RosterDeps) {
    this.news = new TeamNews({
      clock: deps.clock,
      members: (team) => this.teams.get(team)?.members.length,
      reread: (team) => this.reread(team),
      membersChanged: async (team, members) => {
        this.membersReadAt.set(team, deps.clock.now());
        await deps.ensureUsers(members);
      },
    });
  }

  sorted(): Team[] {
    return [...this.teams.values()].sort((a, b) => byName(a.name, b.name) || a.id.localeCompare(b.id));
  }

  /** A `team` frame: someone renamed the team, changed roles, joined or left. */
  heard(frame: TeamFrame): void {
    this.news.heard(frame);
  }

  // --- reading -----------------------------------------------------------------------------

  /** Every team of the user, page after page. */
  private async all(): Promise<Team[]> {
    const all: Team[] = [];
    let cursor: string | undefined;
    for (;;) {
      const page = await this.deps.api.teams(cursor);
      all.push(...page.data);
      const next = page.meta.next_cursor;
      if (!page.meta.has_more || next === null || next === undefined) return all;
      cursor = String(next);
    }
  }

  /** The list of teams read, held as the server has it (teams joined or left said as news). */
  async load(): Promise<void> {
    const { deps } = this;
    const asked = this.writes;
    let all: Team[];
    try {
      all = await this.all();
    } catch (err) {
      deps.notices.fail("Could not load your teams", err);
      return;
    }
    this.readAt = deps.clock.now();
    // A team written since the list was asked for (joined, created, changed or left meanwhile)
    // is held as it is now: of those the list gives only the counts.
    const since = (id: string) => this.writtenSince(id, asked);
    // After a reconnection the list brings what its `membership` frames would have said: so
    // does the page (a team the reader was in vanishing unexplained, their draft with it).
    const news = this.loaded;
    const fresh = new Set(all.map((t) => t.id));
    for (const id of [...this.teams.keys()]) {
      if (fresh.has(id) || since(id)) continue;
      if (news) this.lose(id);
      else this.drop(id);
    }
    for (const team of all) {
      const added = !this.teams.has(team.id);
      if (since(team.id)) {
        if (!added) deps.read(team.id).fromServer(team.unread, true);
        continue;
      }
      this.put(team, true);
      if (news && added) deps.notices.notify("info", `You were added to ${shownName(team.name)}.`, `membership ${team.id}`);
    }
    deps.listed(all, !this.loaded);
    this.loaded = true;
    deps.changed();
  }

  /**
   * The held teams as the server has them now; their counts stay ours (kept from live frames).
   * A team missing from the list is left to its "removed" frame: the list may predate a join.
   */
  async reload(): Promise<void> {
    const { deps } = this;
    const open = deps.selected();
    if (open) this.membersReadAt.set(open, deps.clock.now());
    const asked = this.writes;
    let all: Team[];
    try {
      all = await this.all();
    } catch {
      return; // the next round asks again
    }
    if (deps.stopped()) return;
    this.readAt = deps.clock.now();
    // A team written since the list was asked for (an event, a change made here) is newer.
    for (const team of all) if (this.teams.has(team.id) && !this.writtenSince(team.id, asked)) this.put(team);
    if (open && this.teams.has(open)) await deps.ensureUsers(this.teams.get(open)?.members ?? []);
  }

  /** The team's member list as the server has it now (at most every few seconds per team). */
  async refreshMembers(team: string): Promise<void> {
    const { clock } = this.deps;
    const now = clock.now();
    const readAt = this.membersReadAt.get(team) ?? -Infinity;
    if (readAt > now - MEMBERS_FRESH_MS) {
      // Read moments ago: once more when that read is no longer fresh, not never.
      if (!this.membersPlanned.has(team)) {
        this.membersPlanned.add(team);
        clock.setTimeout(() => {
          this.membersPlanned.delete(team);
          void this.refreshMembers(team);
        }, readAt + MEMBERS_FRESH_MS - now);
      }
      return;
    }
    this.membersReadAt.set(team, now);
    const fresh = await this.reread(team);
    if (fresh) await this.deps.ensureUsers(fresh.members);
  }

  /**
   * The team as the server has it now (members, unread counts), put in place of ours while the
   * user is still in it; null when it could not be read, and then ours stays until the next read.
   * Its counts replace ours only when `countsFrom` says they should (see put).
   */
  async reread(team: string, countsFrom: (fresh: Team) => boolean = () => false): Promise<Team | null> {
    try {
      return await this.readTeam(team, countsFrom);
    } catch {
      return null;
    }
  }

  /** `reread`, with the API's refusal thrown (a 404: the user is no longer in the team). */
  private async readTeam(team: string, countsFrom: (fresh: Team) => boolean = () => false): Promise<Team | null> {
    const { deps } = this;
    for (let attempt = 0; attempt < REREAD_TRIES; attempt += 1) {
      if (deps.stopped()) return null;
      const asked = this.writes;
      const fresh = await deps.api.team(team);
      if (deps.stopped() || !this.teams.has(team)) return null;
      // The team was written while this read was out (a change made here, another read): this
      // answer may be the older one, so it is asked for again rather than put over that.
      if (this.writtenSince(team, asked)) continue;
      this.put(fresh, countsFrom(fresh));
      return fresh;
    }
    return null;
  }

  /** The panel's opening: the team as the server has it now (its roles decide the buttons). */
  async refresh(team: string): Promise<void> {
    try {
      const fresh = await this.readTeam(team);
      if (!fresh) return;
      await this.deps.ensureUsers(fresh.members);
      void this.deps.loadPresence(team);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) this.lose(team);
      else this.deps.notices.fail("Could not load the team", err);
    }
  }

  /**
   * The server's counts after the read mark moved elsewhere. They trail the mark by up to a
   * second (the read position is stored behind the fan-out): an answer from before it is asked
   * again, a few times.
   */
  recount(team: string): Promise<void> {
    return this.rereadUntil(team, (fresh) => this.deps.read(team).current(fresh.unread), RECOUNT_TRIES, RECOUNT_AFTER_MS);
  }

  /**
   * A newcomer's counts once the server has written their joining position (the team read up to
   * that moment): until then it answers -1, everything unread. Asked until it has, a few times.
   */
  private recountJoined(team: string): Promise<void> {
    return this.rereadUntil(team, (fresh) => (fresh.unread?.last_read_seq ?? -1) >= 0, JOIN_TRIES, RECOUNT_BEHIND_MS);
  }

  /**
   * The team read again, its counts taken when `settled` says the answer has what was waited
   * for; an answer that has not yet is asked again after `pauseMs`, at most `tries` more times.
   * Not read at all: ours stay until the next hello. Resolves once the last read has ended.
   */
  private async rereadUntil(team: string, settled: (fresh: Team) => boolean, tries: number, pauseMs: number, attempt = 0): Promise<void> {
    const fresh = await this.reread(team, settled);
    if (fresh && !settled(fresh) && attempt < tries) {
      await new Promise<void>((resolve) => this.deps.clock.setTimeout(resolve, pauseMs));
      await this.rereadUntil(team, settled, tries, pauseMs, attempt + 1);
    }
  }

  // --- holding -----------------------------------------------------------------------------

  /**
   * The team as read from the server. Its unread counts replace ours only when `authoritative`
   * (the list read at start, a read asked for the counts); otherwise ours, kept from live frames,
   * stay (see ReadState.fromServer). `own`: the answer to a change made here, no news.
   */
  put(team: Team, authoritative = false, own = false): void {
    const { deps } = this;
    const held = this.teams.get(team.id);
    this.teams.set(team.id, { ...team, name: shownName(team.name) });
    // Whichever read brings it (a `team` frame's, the panel's, the one after a reconnection): the
    // reader's own role changed elsewhere, by the super admin or in another tab.
    const was = held ? roleOf(held, deps.me) : null;
    const now = roleOf(team, deps.me);
    const handedOver = was === "super_admin" && now === "admin" && this.transferring.has(team.id);
    if (was !== null && !own && !handedOver && was !== now) {
      deps.notices.notify("info", roleNews(shownName(team.name), was, now), `role ${team.id}`);
    }
    this.writtenAt.set(team.id, ++this.writes);
    deps.read(team.id).fromServer(team.unread, authoritative);
    deps.changed();
  }

  /** Whether the team was put or dropped after the moment `asked` (a count of writes). */
  private writtenSince(team: string, asked: number): boolean {
    return (this.writtenAt.get(team) ?? 0) > asked;
  }

  drop(team: string): number {
    const members = this.teams.get(team)?.members ?? [];
    this.teams.delete(team);
    if (this.deps.place?.load()?.team === team) this.deps.place.forget();
    // Kept, as a write: a list asked for before the team went must not bring it back.
    this.writtenAt.set(team, ++this.writes);
    return this.deps.dropped(team, members);
  }

  /**
   * The server says the user is not in the team any more (a `removed` frame, a list without it,
   * a 404 while reading it): dropped, and said once, with what could not be sent there; not to
   * someone who left by themselves (their own "You left" says it).
   */
  lose(team: string): void {
    const held = this.teams.get(team);
    const unsent = this.drop(team);
    if (!held || this.leaving.has(team)) return;
    const lost = unsent === 0 ? "" : ` ${unsent === 1 ? "A message" : `${unsent} messages`} you wrote there could not be sent; kept in case you are added back.`;
    this.deps.notices.notify("info", `You are no longer a member of ${held.name}.${lost}`, `membership ${team}`);
  }

  async onMembership(frame: MembershipFrame): Promise<void> {
    const { deps } = this;
    const team = frame.channel_id;
    if (frame.event === "removed") {
      this.lose(team);
      return;
    }
    try {
      // A team held already is read as any other read of it (not over a newer copy).
      const fresh = this.teams.has(team) ? ((await this.readTeam(team)) ?? this.teams.get(team)) : await deps.api.team(team);
      if (!fresh) return;
      if (!this.teams.has(team)) this.put(fresh);
      if (frame.event === "added") {
        // The creator of a team gets "added" too (often before the create call returns): a team
        // whose only member is its super_admin, me, is no news.
        const mine = fresh.super_admin === deps.me && fresh.members.length === 1;
        // One topic per team: being added back replaces "You are no longer a member".
        if (!mine) deps.notices.notify("info", `You were added to ${shownName(fresh.name)}.`, `membership ${team}`);
        // The position the server gives a newcomer (the team read up to their joining) is
        // written within a second or so of this frame: the counts read now may not have it yet.
        if ((fresh.unread?.last_read_seq ?? -1) < 0) {
          this.joining.add(team);
          deps.clock.setTimeout(() => void this.recountJoined(team).finally(() => this.joining.delete(team)), RECOUNT_BEHIND_MS);
        }
        deps.joined(team);
      } else if (fresh.super_admin !== deps.me) {
        // The super admin made the change (only they can), and the panel said so.
        // From the team as read now, not the event: two changes in quick succession may be
        // answered out of order, and the notice must not contradict what the page shows.
        const now = fresh.active ? "was reactivated: you can write to it again." : "was deactivated: it can be read, not written to.";
        deps.notices.notify("info", `${shownName(fresh.name)} ${now}`, `status ${team}`);
      }
    } catch (err) {
      deps.notices.fail("Could not load the team", err);
    }
  }

  // --- changing ----------------------------------------------------------------------------

  async create(name: string, icon: string, tags: string[]): Promise<string | null> {
    return this.call(async () => {
      const team = await this.deps.api.createTeam({ name, ...(icon ? { icon } : {}), ...(tags.length ? { meta_tags: tags } : {}) });
      this.put(team);
      this.deps.selectTeam(team.id);
    });
  }

  update(team: string, patch: { name?: string; icon?: string; meta_tags?: string[] }): Promise<string | null> {
    return this.call(async (put) => put(await this.deps.api.patchTeam(team, patch)), team);
  }

  /** The super admin makes the team read-only for everyone, or writable again. */
  setActive(team: string, active: boolean): Promise<string | null> {
    return this.call(async (put) => put(await this.deps.api.patchTeam(team, { active })), team);
  }

  addMember(team: string, email: string): Promise<string | null> {
    return this.call(async (put) => {
      let updated: Team;
      try {
        updated = await this.deps.api.addMember(team, email);
      } catch (err) {
        // Nobody to add yet: say what to do rather than the API's "no such user".
        if (err instanceof ApiError && err.status === 404 && err.message.includes("no such user")) {
          throw new Error("nobody has an account with this address yet: ask them to create one here, then add them again");
        }
        throw err;
      }
      put(updated);
      await this.deps.ensureUsers(updated.members);
      // The newcomer's presence frame may come before this answer (and be taken for a stranger's):
      // the team's snapshot says it again.
      void this.deps.loadPresence(team);
    }, team);
  }

  removeMember(team: string, user: string): Promise<string | null> {
    return this.call(async (put) => put(await this.deps.api.removeMember(team, user)), team);
  }

  setAdmin(team: string, user: string, admin: boolean): Promise<string | null> {
    const { api } = this.deps;
    return this.call(async (put) => put(await (admin ? api.electAdmin(team, user) : api.dismissAdmin(team, user))), team);
  }

  transfer(team: string, user: string): Promise<string | null> {
    // The one change of this page's that changes the user's own role: its frame may be read
    // before its answer, and is no news then.
    this.transferring.set(team, (this.transferring.get(team) ?? 0) + 1);
    return this.call(async (put) => put(await this.deps.api.transferSuperAdmin(team, user)), team).finally(() => {
      const left = (this.transferring.get(team) ?? 1) - 1;
      if (left > 0) this.transferring.set(team, left);
      else this.transferring.delete(team);
    });
  }

  leave(team: string): Promise<string | null> {
    const { deps } = this;
    return this.call(async () => {
      // The "removed" frame this causes may come before the answer: it is no news to the leaver.
      this.leaving.add(team);
      const held = this.teams.get(team);
      // The server deletes a team its last member leaves.
      const news = held?.members.length === 1 ? `You left ${held.name}, and it is deleted.` : `You left ${held?.name ?? "the team"}.`;
      try {
        await deps.api.leave(team);
        this.drop(team);
        // Said by the shell: the panel that asked goes away with the team.
        deps.notices.notify("info", news);
      } finally {
        deps.clock.setTimeout(() => this.leaving.delete(team), LEAVING_QUIET_MS);
      }
    }, team);
  }

  /**
   * A team change; its refusal as words (null when done). A refusal for role, state or a member
   * no longer there (403, 409, 404) means the page's copy of the team is stale (someone changed
   * roles or members a moment ago, its `team` frame still on its way): the team is read again so
   * the panel shows what is true now.
   */
  private async call(work: (put: (answer: Team) => void) => Promise<void>, team?: string): Promise<string | null> {
    const asked = this.writes;
    const put = (answer: Team) => {
      // Something else wrote the team while this change was out (a `team` frame's read, say):
      // which copy is newer is not known, so the team is read again after the answer is put.
      const overtaken = this.writtenSince(answer.id, asked);
      this.put(answer, false, true);
      if (overtaken) void this.reread(answer.id);
    };
    try {
      await work(put);
      return null;
    } catch (err) {
      const text = readable(err);
      if (team !== undefined && err instanceof ApiError && (err.status === 403 || err.status === 404 || err.status === 409)) {
        void this.reread(team);
      }
      this.deps.notices.announce(text);
      this.deps.changed();
      return text;
    }
  }
}
