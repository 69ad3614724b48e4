// `team` frames (a rename, a role change, someone else joining or leaving): the team is read
// again, once for a burst of them, at a moment of this page's own within a second (every member's
// page hears the frame at once). What the read changes is the model's to show. No DOM.
import type { Team, TeamFrame } from "../api/types";
import type { Clock } from "../auth/keeper";

/** A frame's read waits this long, plus up to SPREAD_MS drawn at random, or up to SPREAD_PER_MEMBER_MS
 * per member in a big team: its thousand pages then ask over 5 s, about what two cores answer in
 * that time (docs/benchmarks.md, "What a team frame costs"). */
const WAIT_MS = 200;
const SPREAD_MS = 800;
const SPREAD_PER_MEMBER_MS = 5;
/** And comes at least this long after the team's last such read: a script adding members one
 * after another to a big team makes every member's page read it every few seconds, not at the
 * pace of the frames. */
const GAP_MS = 3000;

export interface TeamNewsDeps {
  clock: Clock;
  /** How many members the team has, if it is one of the user's teams here. */
  members(team: string): number | undefined;
  /** The team read again and put in place of the held one; null when that did not happen. */
  reread(team: string): Promise<Team | null>;
  /** Its members changed: their names are looked up. */
  membersChanged(team: string, members: readonly string[]): Promise<void>;
  /** Randomness for the spread (tests pass a fixed one). */
  random?: () => number;
}

export class TeamNews {
  /** Teams with a read planned, and what their frames said changed. */
  private readonly planned = new Map<string, Set<TeamFrame["change"]>>();
  /** When each team's last read started (clock ms). */
  private readonly lastRead = new Map<string, number>();

  constructor(private readonly deps: TeamNewsDeps) {}

  heard(frame: TeamFrame): void {
    const team = frame.channel_id;
    const members = this.deps.members(team);
    if (members === undefined) return;
    const changes = this.planned.get(team);
    if (changes) {
      changes.add(frame.change);
      return;
    }
    this.planned.set(team, new Set([frame.change]));
    const random = this.deps.random ?? Math.random;
    const now = this.deps.clock.now();
    const spread = Math.max(SPREAD_MS, members * SPREAD_PER_MEMBER_MS);
    const due = Math.max(now + WAIT_MS + random() * spread, (this.lastRead.get(team) ?? -Infinity) + GAP_MS);
    this.deps.clock.setTimeout(() => void this.read(team), due - now);
  }

  private async read(team: string): Promise<void> {
    const changes = this.planned.get(team) ?? new Set();
    this.planned.delete(team);
    this.lastRead.set(team, this.deps.clock.now());
    const fresh = await this.deps.reread(team);
    if (fresh && changes.has("members")) await this.deps.membersChanged(team, fresh.members);
  }
}
