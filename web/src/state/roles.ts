// Seed 002's roles as the client shows them: which buttons a user gets. The server decides
// anyway; a refusal (403) is shown as it comes.
import type { Team } from "../api/types";

export type Role = "super_admin" | "admin" | "user";

export function roleOf(team: Team, user: string): Role {
  if (team.super_admin === user) return "super_admin";
  if (team.admins.includes(user)) return "admin";
  return "user";
}

export interface Allowed {
  editTeam: boolean;
  addMembers: boolean;
  /** May remove this member (never oneself: that is "leave"). */
  remove(target: string): boolean;
  electDismiss: boolean;
  transfer: boolean;
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
  };
}

/** Editing is for the author within the window (or an admin on their own); deleting, also admins. */
export function mayDelete(team: Team, me: string, author: string): boolean {
  return author === me || roleOf(team, me) !== "user";
}
