// Message text split into plain text, links and mentions. Views build elements from these
// segments (text nodes and <a> elements whose href is checked here): message data never becomes
// markup. Only http and https links are made clickable. Text-direction controls are left out
// (text/bidi.ts): an override would make a text or a link read as something else.

import { withoutBidiControls } from "./bidi";

export type Segment =
  | { kind: "text"; text: string }
  | { kind: "link"; text: string; href: string }
  | { kind: "mention"; userId: string };

const TOKEN = /(https?:\/\/[^\s<>"']+)|<@([0-9a-f]{32})>/gi;
// Trailing punctuation usually ends the sentence, not the URL.
const TRAILING = /[.,;:!?)\]}]+$/;

/** A URL that is safe as an href: parses, and is http(s). Returns the normalized href or null. */
export function safeHref(raw: string): string | null {
  try {
    const url = new URL(raw);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

export function segments(sent: string): Segment[] {
  const text = withoutBidiControls(sent);
  const out: Segment[] = [];
  let last = 0;
  const push = (s: string) => {
    if (!s) return;
    const prev = out[out.length - 1];
    if (prev && prev.kind === "text") prev.text += s;
    else out.push({ kind: "text", text: s });
  };
  for (const match of text.matchAll(TOKEN)) {
    const start = match.index ?? 0;
    push(text.slice(last, start));
    if (match[2]) {
      out.push({ kind: "mention", userId: match[2].toLowerCase() });
      last = start + match[0].length;
      continue;
    }
    const raw = match[1] ?? "";
    const trail = TRAILING.exec(raw)?.[0] ?? "";
    const url = raw.slice(0, raw.length - trail.length);
    const href = safeHref(url);
    if (href) out.push({ kind: "link", text: url, href });
    else push(url);
    push(trail);
    last = start + raw.length;
  }
  push(text.slice(last));
  return out;
}
