// Seed 002's roles as the client shows them: which buttons a user gets. The server decides
// anyway; a refusal (403) is shown as it comes.
import type { Message, Team } from "../api/types";

export type Role = "super_admin" | "admin" | "user";

export function roleOf(team: Team, user: string): Role {
  if (team.super_admin === user) return "super_admin";
  if (team.admins.includes(user)) return "admin";
  return "user";
}

/** What a user is told when their role in a team changed elsewhere (by the super admin, or by
 * themselves in another tab: a super admin handing the role over stays an admin). */
export function roleNews(team: string, was: Role, now: Role): string {
  if (now === "super_admin") return `You are now the super admin of ${team}.`;
  if (now === "admin" && was === "super_admin") return `You are no longer the super admin of ${team}; you are still an admin.`;
  if (now === "admin") return `You are now an admin of ${team}.`;
  return `You are no longer an admin of ${team}.`;
}

/** Why a DM cannot be written to: the other person is no longer a member (null: they are). */
export function dmClosed(team: Team, conversation: string, name: string): string | null {
  if (conversation === "*" || team.members.includes(conversation)) return null;
  return `${name} is no longer a member of this team`;
}

/**
 * People the user has DMs with among `held` who are no longer members (left or removed),
 * most recent DM first: their conversations stay listed, read-only, or the messages would be
 * out of reach once another conversation is opened.
 */
export function formerDmPartners(held: readonly Message[], members: readonly string[], me: string): string[] {
  const latest = new Map<string, number>();
  for (const m of held) {
    if (m.to === "*" || m.deleted || (m.from !== me && m.to !== me)) continue;
    const other = m.from === me ? m.to : m.from;
    if (other === me || members.includes(other)) continue;
    latest.set(other, Math.max(latest.get(other) ?? -1, m.seq));
  }
  return [...latest].sort((a, b) => b[1] - a[1]).map(([user]) => user);
}

export interface Allowed {
  editTeam: boolean;
  addMembers: boolean;
  /** May remove this member (never oneself: that is "leave"). */
  remove(target: string): boolean;
  electDismiss: boolean;
  transfer: boolean;
  /** Deactivate the team (read-only for everyone) or reactivate it. */
  deactivate: boolean;
}

export function allowed(team: Team, me: string): Allowed {
  const role = roleOf(team, me);
  const admin = role !== "user";
  return {
    editTeam: admin,
    addMembers: admin,
    remove: (target) => target !== me && (role === "super_admin" || (role === "admin" && roleOf(team, target) === "user")),
    electDismiss: role === "super_admin",
    transfer: role === "super_admin",
    deactivate: role === "super_admin",
  };
}

/** The server's default CHAT_EDIT_WINDOW_S, until `hello` says what this server allows. */
export const DEFAULT_EDIT_WINDOW_MS = 300_000;

function within(m: Message, now: number, windowMs: number): boolean {
  return now - Date.parse(m.ts) <= windowMs;
}

/** Anything that writes (send, edit, delete, react, reply): a deactivated team is read-only. */
export function mayWrite(team: Team): boolean {
  return team.active;
}

/** Editing: the author's own text, within the window; an admin's own, any time (seed 002). */
export function mayEdit(team: Team, me: string, m: Message, now: number, windowMs: number): boolean {
  if (!mayWrite(team) || m.from !== me || m.type !== "text" || m.deleted) return false;
  return roleOf(team, me) !== "user" || within(m, now, windowMs);
}

/** The message ArrowUp in an empty composer opens for editing: the latest one `mayEdit` allows. */
export function lastEditable(messages: readonly Message[], team: Team, me: string, now: number, windowMs: number): Message | undefined {
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i];
    if (m && mayEdit(team, me, m, now, windowMs)) return m;
  }
  return undefined;
}

/** Deleting: an admin any message any time; the author within the window. */
export function mayDelete(team: Team, me: string, m: Message, now: number, windowMs: number): boolean {
  if (!mayWrite(team) || m.deleted) return false;
  if (roleOf(team, me) !== "user") return true;
  return m.from === me && within(m, now, windowMs);
}
