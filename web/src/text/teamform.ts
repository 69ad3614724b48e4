// The team form's fields checked with the server's rules (docs/api.md "Validation"), so a person
// sees what to change per field before anything is sent, and the server's own per-field reasons
// in the same plain words when it still refuses.

import { BIDI_CONTROL } from "./bidi";

export const MAX_TAGS = 20;
const TAG = /^[a-z0-9]+(?:-[a-z0-9]+)*$/;
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
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

/** Per-field problems of a team's name, icon and tags; empty when the server would take them. */
export function checkTeam(name: string, icon: string, tags: string): FieldErrors {
  const errors: FieldErrors = {};
  const trimmed = name.trim();
  if (!trimmed) errors.name = "Enter a name: spaces alone are not one.";
  else if ([...trimmed].length > 100) errors.name = "A name has at most 100 characters.";
  else if (CONTROL.test(trimmed)) errors.name = "Remove the invisible control character from the name.";
  else if (BIDI_CONTROL.test(trimmed)) errors.name = "Remove the invisible text-direction character from the name.";
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
