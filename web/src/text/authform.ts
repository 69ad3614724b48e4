// The login and registration form's problems, per field, in plain words: the server's 422
// `details` name the field ("email: not a valid email address") in its own terms, which a person
// should read under the field they are about, not as one sentence at the top.

import { ApiError } from "../api/client";
import { describeDetails, nameProblem } from "./teamform";

export type AuthField = "email" | "password" | "name" | "current_password" | "new_password";
export type AuthErrors = Partial<Record<AuthField, string>>;

export const PASSWORD_MAX = 256;

/** What the registration form can refuse before sending (the browser checks the rest). */
export function checkRegistration(name: string): AuthErrors {
  const problem = nameProblem(name);
  return problem ? { name: problem } : {};
}

function sentence(text: string): string {
  const t = text.trim().replace(/\.$/, "");
  return t ? `${t.charAt(0).toUpperCase()}${t.slice(1)}.` : "";
}

function passwordWords(why: string): string {
  const most = /at most (\d+)/i.exec(why);
  if (most) return `At most ${most[1]} characters.`;
  const least = /at least (\d+)/i.exec(why);
  if (least) return `Use at least ${least[1]} characters.`;
  if (/unicode/i.test(why)) return "Remove the character that is not valid text.";
  if (/required/i.test(why)) return "Enter a password.";
  if (/same as/i.test(why)) return "Choose a password other than your current one.";
  return sentence(why);
}

/** A field's server reason in the words shown under it. */
function fieldWords(field: AuthField, why: string): string {
  switch (field) {
    case "email":
      return "Enter a valid email address, like name@example.com.";
    case "name":
      return /required/i.test(why)
        ? "Enter your name."
        : "Use 1 to 100 characters, beginning and ending with one that shows; no invisible control or text-direction characters.";
    case "password":
    case "new_password":
      return passwordWords(why);
    case "current_password":
      return /required/i.test(why) ? "Enter your current password." : passwordWords(why);
  }
}

/**
 * A failed login or registration as per-field messages (for the fields the form shows) and a
 * general one for the rest: a refusal about no field (wrong password, too many attempts), or
 * about a field the form does not have.
 */
export function authProblems(err: unknown, shown: readonly AuthField[]): { fields: AuthErrors; general: string | null } {
  if (!(err instanceof ApiError)) return { fields: {}, general: err instanceof Error ? err.message : String(err) };
  const details = err.details ?? {};
  if (Object.keys(details).length === 0) return { fields: {}, general: sentence(err.message) };
  const fields: AuthErrors = {};
  const rest: Record<string, string> = {};
  for (const [key, why] of Object.entries(details)) {
    const field = shown.find((f) => f === key);
    if (field) fields[field] = fieldWords(field, why);
    else rest[key] = why;
  }
  return { fields, general: Object.keys(rest).length > 0 ? describeDetails(rest) : null };
}
