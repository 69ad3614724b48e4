// Who is online, per team (DESIGN 5b): a snapshot from GET /presence, then `presence` frames.
import type { Presence, PresenceFrame } from "../api/types";

type Status = "online" | "offline";

export class PresenceState {
  private byTeam = new Map<string, Map<string, Status>>();
  // When each user's latest frame was applied (a count of frames), per team: a snapshot asked for
  // before that frame may have been answered from an older view and must not undo it.
  private framed = new Map<string, Map<string, number>>();
  private frames = 0;

  /** Take this before asking for a snapshot, and hand it to `snapshot` with the answer. */
  mark(): number {
    return this.frames;
  }

  snapshot(team: string, list: Presence[], asOf: number = this.frames): void {
    const next = new Map<string, Status>(list.map((p) => [p.user_id, p.status]));
    const current = this.byTeam.get(team);
    for (const [user, at] of this.framed.get(team) ?? []) {
      const status = current?.get(user);
      if (at > asOf && status !== undefined) next.set(user, status);
    }
    this.byTeam.set(team, next);
  }

  apply(frame: PresenceFrame): void {
    this.frames += 1;
    let team = this.byTeam.get(frame.channel_id);
    if (!team) this.byTeam.set(frame.channel_id, (team = new Map()));
    team.set(frame.user_id, frame.status);
    let stamps = this.framed.get(frame.channel_id);
    if (!stamps) this.framed.set(frame.channel_id, (stamps = new Map()));
    stamps.set(frame.user_id, this.frames);
  }

  /** "online", "offline", or "unknown" before the team's snapshot (or on a backend without 5b). */
  status(team: string, user: string): "online" | "offline" | "unknown" {
    return this.byTeam.get(team)?.get(user) ?? "unknown";
  }

  /** Nothing is known while this device is offline: frames are being missed. */
  forgetAll(): void {
    this.byTeam.clear();
    this.framed.clear();
  }

  forget(team: string): void {
    this.byTeam.delete(team);
    this.framed.delete(team);
  }
}
