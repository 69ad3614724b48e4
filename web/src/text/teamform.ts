// The team form's fields checked with the server's rules (docs/api.md "Validation"), so a person
// sees what to change per field before anything is sent, and the server's own per-field reasons
// in the same plain words when it still refuses.

import type { Team, User } from "../api/types";
import { BIDI_CONTROL } from "./bidi";
import { SELECTORS, SHOWS_NOTHING, SPACE } from "./limits";

export const MAX_TAGS = 20;
const TAG = /^[a-z0-9]+(?:-[a-z0-9]+)*$/;
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
// Trimmed as the server trims (JavaScript's trim() also takes a byte order mark, which the server
// keeps, and then refuses at a name's start).
const AROUND = new RegExp(`^[${SPACE}]+|[${SPACE}]+$`, "g");
const BLANK_FIRST = new RegExp(`^[${SHOWS_NOTHING}${SELECTORS}]`);
const BLANK_LAST = new RegExp(`[${SHOWS_NOTHING}]$`);
const ICON = /^https?:\/\/[A-Za-z0-9.-]+(?::[0-9]+)?(?:[/?#][\u0021-\u007e]*)?$/;

export type TeamField = "name" | "icon" | "meta_tags";
export type FieldErrors = Partial<Record<TeamField, string>>;

/** A tag as the server would take it, e.g. "Back End" → "back-end" (a suggestion, never applied silently). */
export function slugOf(raw: string): string {
  return raw
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 32)
    .replace(/-+$/, "");
}

/** Comma-separated tags: each one is one tag (spaces inside do not split it), and why any is refused. */
export function parseTags(text: string): { tags: string[]; problem: string | null } {
  const raw = text
    .split(",")
    .map((t) => t.trim())
    .filter(Boolean);
  const bad = raw.filter((t) => t.length > 32 || !TAG.test(t));
  const tags = [...new Set(raw)];
  if (bad.length > 0) {
    const hints = bad.map((t) => {
      const slug = slugOf(t);
      return slug ? `“${t}” (try “${slug}”)` : `“${t}”`;
    });
    return { tags, problem: `Tags are lower-case letters, digits and single dashes, up to 32 characters: change ${hints.join(", ")}.` };
  }
  if (tags.length > MAX_TAGS) return { tags, problem: `At most ${MAX_TAGS} tags (there are ${tags.length}).` };
  return { tags, problem: null };
}

/** Why the server would refuse a name (a team's or a person's: one rule for both), or null. */
export function nameProblem(name: string): string | null {
  const trimmed = name.replace(AROUND, "");
  if (!trimmed) return "Enter a name: spaces alone are not one.";
  if ([...trimmed].length > 100) return "A name has at most 100 characters.";
  if (CONTROL.test(trimmed)) return "Remove the invisible control character from the name.";
  if (BIDI_CONTROL.test(trimmed)) return "Remove the invisible text-direction character from the name.";
  if (BLANK_FIRST.test(trimmed) || BLANK_LAST.test(trimmed)) return "A name begins and ends with a character that shows: remove the invisible one.";
  return null;
}

/** Per-field problems of a team's name, icon and tags; empty when the server would take them. */
export function checkTeam(name: string, icon: string, tags: string): FieldErrors {
  const errors: FieldErrors = {};
  const problem = nameProblem(name);
  if (problem) errors.name = problem;
  const url = icon.trim();
  if (url && (url.length > 2048 || !ICON.test(url))) errors.icon = "Use an http:// or https:// address (like https://example.com/icon.png), or leave it empty.";
  const tagProblem = parseTags(tags).problem;
  if (tagProblem) errors.meta_tags = tagProblem;
  return errors;
}

const FIELD_NAMES: Record<string, string> = {
  name: "Name",
  icon: "Icon URL",
  meta_tags: "Tags",
  email: "Email address",
  user_id: "Member",
  seq: "Position",
  data: "Text",
};

/** The server's per-field reasons (a 422's `details`) as sentences naming the form's fields. */
export function describeDetails(details: Record<string, string>): string {
  return Object.entries(details)
    .map(([field, why]) => {
      const label = FIELD_NAMES[field] ?? field.replace(/_/g, " ");
      const text = why.trim().replace(/\.$/, "");
      return `${label}: ${text}.`;
    })
    .join(" ");
}

/** The settings form's fields as typed. */
export interface TeamSettings {
  name: string;
  icon: string;
  tags: string;
}

export type SettingsPatch = Partial<Pick<Team, "name" | "icon" | "meta_tags">>;

/** The form's starting values for a team. */
export function settingsOf(team: Pick<Team, "name" | "icon" | "meta_tags">): TeamSettings {
  return { name: team.name, icon: team.icon, tags: team.meta_tags.join(", ") };
}

/**
 * Only the fields the person changed since the form was filled, or null when none: a field sent
 * unchanged from a stale form would undo another admin's change to it made meanwhile.
 * Surrounding spaces, duplicate tags and the tags' order are not changes (the server ignores them).
 */
export function changedSettings(initial: TeamSettings, edited: TeamSettings): SettingsPatch | null {
  const patch: SettingsPatch = {};
  if (edited.name.trim() !== initial.name.trim()) patch.name = edited.name.trim();
  if (edited.icon.trim() !== initial.icon.trim()) patch.icon = edited.icon.trim();
  const before = new Set(parseTags(initial.tags).tags);
  const after = parseTags(edited.tags).tags;
  if (after.length !== before.size || after.some((t) => !before.has(t))) patch.meta_tags = after;
  return Object.keys(patch).length > 0 ? patch : null;
}

/** An address as the server stores and compares it. */
export function normalEmail(raw: string): string {
  return raw.trim().toLowerCase();
}

/**
 * Who was just added by `address`, for the success message: the member's name when the team's
 * members include someone with that address, else the address as the server stored it (never
 * the raw input, whose case and spaces the server dropped).
 */
export function addedMemberName(address: string, members: readonly string[], users: ReadonlyMap<string, Pick<User, "email" | "name">>): string {
  const email = normalEmail(address);
  for (const id of members) {
    const user = users.get(id);
    if (user?.email && normalEmail(user.email) === email && user.name) return user.name;
  }
  return email;
}

/**
 * How the person may leave: freely; only by deleting the team (the super admin as its last
 * member: the server deletes a team its last member leaves); or not until another member is
 * made super admin (the server refuses the super admin while others remain).
 */
export function leaveChoice(team: Pick<Team, "super_admin" | "members">, me: string): "leave" | "delete" | "transfer-first" {
  if (team.super_admin !== me) return "leave";
  return team.members.every((u) => u === me) ? "delete" : "transfer-first";
}
