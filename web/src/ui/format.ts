// Small presentation helpers shared by the views.

const time = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const day = new Intl.DateTimeFormat(undefined, { weekday: "short", day: "numeric", month: "short" });

const full = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "medium" });
const dayThisYear = new Intl.DateTimeFormat(undefined, { weekday: "long", day: "numeric", month: "long" });
const dayOtherYear = new Intl.DateTimeFormat(undefined, { weekday: "long", day: "numeric", month: "long", year: "numeric" });

/** A timestamp as a date, or null for one that does not parse (then nothing is shown). */
function parsed(ts: string): Date | null {
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? null : d;
}

function localDay(d: Date): string {
  return `${d.getFullYear()}-${d.getMonth() + 1}-${d.getDate()}`;
}

/** The time of day alone (a grouped message's gutter: its day is the group's). */
export function shortTime(ts: string): string {
  const d = parsed(ts);
  return d ? time.format(d) : "";
}

/** Day and time in full, for a tooltip. */
export function fullDate(ts: string): string {
  const d = parsed(ts);
  return d ? full.format(d) : "";
}

/** The local calendar day of a timestamp ("2026-12-6"), or "" for one that does not parse. */
export function dayKey(ts: string): string {
  const d = parsed(ts);
  return d ? localDay(d) : "";
}

/** A day separator's words: "Today", "Yesterday", else the day (with its year if not this one). */
export function dayLabel(ts: string, now: Date = new Date()): string {
  const d = parsed(ts);
  if (!d) return "";
  const its = localDay(d);
  if (its === localDay(now)) return "Today";
  if (its === localDay(new Date(now.getFullYear(), now.getMonth(), now.getDate() - 1))) return "Yesterday";
  return (d.getFullYear() === now.getFullYear() ? dayThisYear : dayOtherYear).format(d);
}

export function clock(ts: string): string {
  const d = parsed(ts);
  if (!d) return "";
  const today = new Date().toDateString() === d.toDateString();
  return today ? time.format(d) : `${day.format(d)} ${time.format(d)}`;
}

/** A byte count: 295 B, 1.5 KB, 5 MB (one decimal, none when it is .0). */
export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${Number((n / 1024).toFixed(1))} KB`;
  return `${Number((n / 1024 / 1024).toFixed(1))} MB`;
}

export function initials(name: string): string {
  // By user-perceived characters, never half of an emoji's surrogate pair or of a flag.
  const first = (text: string, n: number) => graphemes(text).slice(0, n).join("");
  const parts = name.trim().split(/\s+/).filter(Boolean);
  return (parts.length > 1 ? first(parts[0] ?? "", 1) + first(parts[1] ?? "", 1) : first(name.trim(), 2)).toUpperCase() || "?";
}

// One segmenter for every call: initials are worked out for each message rendered.
let segmenter: Intl.Segmenter | null = null;

function graphemes(text: string): string[] {
  segmenter ??= new Intl.Segmenter(undefined, { granularity: "grapheme" });
  return Array.from(segmenter.segment(text), (s) => s.segment);
}
