// Who is online, per team (DESIGN 5b): a snapshot from GET /presence, then `presence` frames.
import type { Presence, PresenceFrame } from "../api/types";

export class PresenceState {
  private byTeam = new Map<string, Map<string, "online" | "offline">>();

  snapshot(team: string, list: Presence[]): void {
    this.byTeam.set(team, new Map(list.map((p) => [p.user_id, p.status])));
  }

  apply(frame: PresenceFrame): void {
    let team = this.byTeam.get(frame.channel_id);
    if (!team) this.byTeam.set(frame.channel_id, (team = new Map()));
    team.set(frame.user_id, frame.status);
  }

  /** "online", "offline", or "unknown" before the team's snapshot (or on a backend without 5b). */
  status(team: string, user: string): "online" | "offline" | "unknown" {
    return this.byTeam.get(team)?.get(user) ?? "unknown";
  }

  forget(team: string): void {
    this.byTeam.delete(team);
  }
}
