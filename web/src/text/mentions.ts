// Mentions as people type them ("@Ada") and as the contract stores them (`<@user_id>`), and the
// composer's member picker. A display name is no identifier (two members may share one), so a
// shared name is written with the start of the member's id ("@Bob#3f2a") and a bare shared name
// mentions nobody rather than whichever member happens to come first.

export interface Member {
  id: string;
  name: string;
  email?: string;
}

export interface Suggestion {
  id: string;
  name: string;
  /** What follows "@" in the composer for this member: the name, or name#id-prefix when shared. */
  label: string;
  email: string;
}

const TOKEN = /<@[0-9a-f]{32}>/y;
const WORD = /[\p{L}\p{N}\p{M}_]/u;
/** Joiners inside an address or a longer word: "@Bob.example.com" and "@Bob-Smith" are not "@Bob". */
const JOINER = /[.\-@+]/;
const SHORT_ID = 4;

function isWord(ch: string | undefined): boolean {
  return ch !== undefined && WORD.test(ch);
}

/** "@" starts a mention only after the start, whitespace or punctuation (not inside an email). */
function startsMention(text: string, at: number): boolean {
  const before = text[at - 1];
  return before === undefined || (!isWord(before) && !JOINER.test(before));
}

/** A name ends at the end, or before a character that cannot continue it. */
function endsMention(text: string, end: number): boolean {
  const next = text[end];
  if (next === undefined) return true;
  if (isWord(next)) return false;
  return !(JOINER.test(next) && isWord(text[end + 1]));
}

const fold = (s: string) => s.trim().toLocaleLowerCase();
/** For searching only: accents off too, so "@zoe" finds Zoë and "@angstrom" Ångström. */
const loose = (s: string) => fold(s).normalize("NFD").replace(/\p{M}/gu, "");

/** Each member's label: the name when no other member has it, else name#shortest-unique-id-start. */
export function mentionLabels(members: readonly Member[]): Map<string, string> {
  const byName = new Map<string, Member[]>();
  for (const m of members) {
    if (!m.name.trim()) continue;
    const key = fold(m.name);
    byName.set(key, [...(byName.get(key) ?? []), m]);
  }
  const labels = new Map<string, string>();
  for (const same of byName.values()) {
    for (const m of same) {
      if (same.length === 1) {
        labels.set(m.id, m.name.trim());
        continue;
      }
      let n = SHORT_ID;
      while (n < m.id.length && same.some((o) => o.id !== m.id && o.id.startsWith(m.id.slice(0, n)))) n += 1;
      labels.set(m.id, `${m.name.trim()}#${m.id.slice(0, n)}`);
    }
  }
  return labels;
}

/**
 * "@label" of a member becomes `<@user_id>`: only at a word boundary on both sides, the longest
 * label first ("@Bobby" is not "@Bob"), case-insensitively. Stored tokens pass through.
 */
export function encodeMentions(text: string, members: readonly Member[]): string {
  // Compared lower-cased, but sliced by the label's own length: lower-casing can change a
  // string's length ("İ" becomes two code units), and the text holds the label as written.
  const labels = [...mentionLabels(members)]
    .map(([id, label]) => ({ id, length: label.length, lower: label.toLowerCase() }))
    .sort((a, b) => b.length - a.length);
  let out = "";
  let i = 0;
  while (i < text.length) {
    TOKEN.lastIndex = i;
    const token = TOKEN.exec(text);
    if (token) {
      out += token[0];
      i += token[0].length;
      continue;
    }
    if (text[i] === "@" && startsMention(text, i)) {
      const start = i + 1;
      const hit = labels.find((l) => text.slice(start, start + l.length).toLowerCase() === l.lower && endsMention(text, start + l.length));
      if (hit) {
        out += `<@${hit.id}>`;
        i += 1 + hit.length;
        continue;
      }
    }
    out += text[i];
    i += 1;
  }
  return out;
}

/** The reverse, to edit a message: members by label; anyone else keeps the stored token. */
export function decodeMentions(text: string, members: readonly Member[]): string {
  const labels = mentionLabels(members);
  return text.replace(/<@([0-9a-f]{32})>/g, (all, id: string) => {
    const label = labels.get(id);
    return label === undefined ? all : `@${label}`;
  });
}

/** The "@query" being typed just before the caret, if any: where its "@" is and what follows. */
export function mentionQuery(text: string, caret: number): { start: number; query: string } | null {
  const before = text.slice(0, caret);
  const at = before.lastIndexOf("@");
  if (at < 0 || !startsMention(text, at)) return null;
  const query = before.slice(at + 1);
  if (query.length > 64 || /[\n\r<>]/.test(query) || /^\s/.test(query)) return null;
  return { start: at, query };
}

/** Members matching what is typed (the start of the name, of a word in it, or of the label). */
export function suggestMentions(members: readonly Member[], query: string, me: string, limit = 6): Suggestion[] {
  const labels = mentionLabels(members);
  const q = loose(query);
  const scored: { s: Suggestion; rank: number }[] = [];
  for (const m of members) {
    const label = labels.get(m.id);
    if (m.id === me || label === undefined) continue;
    const name = loose(m.name);
    const rank = name.startsWith(q) ? 0 : name.split(/\s+/).some((w) => w.startsWith(q)) ? 1 : loose(label).startsWith(q) ? 2 : -1;
    if (rank >= 0) scored.push({ s: { id: m.id, name: m.name.trim(), label, email: m.email ?? "" }, rank });
  }
  return scored
    .sort((a, b) => a.rank - b.rank || a.s.label.localeCompare(b.s.label))
    .slice(0, limit)
    .map((x) => x.s);
}

/** The text with the typed "@query" replaced by the chosen member's label, and where the caret goes. */
export function insertMention(text: string, start: number, caret: number, label: string): { text: string; caret: number } {
  const after = text.slice(caret);
  const inserted = `@${label}${after.startsWith(" ") ? "" : " "}`;
  return { text: text.slice(0, start) + inserted + after, caret: start + inserted.length + (after.startsWith(" ") ? 1 : 0) };
}
