// Message text split into plain text, links and mentions. Views build elements from these
// segments (text nodes and <a> elements whose href is checked here): message data never becomes
// markup. Only http and https links are made clickable. Text-direction controls are left out
// (text/bidi.ts): an override would make a text or a link read as something else.

import { withoutBidiControls } from "./bidi";

export type Segment =
  | { kind: "text"; text: string }
  | { kind: "link"; text: string; href: string }
  | { kind: "mention"; userId: string };

// A link starts with http(s):// or, after no letter, digit, "@" or dot, with "www." (an address
// typed as people type it, taken as https).
const TOKEN = /(https?:\/\/[^\s<>"']+|(?<![\w@.])www\.[^\s<>"']+)|<@([0-9a-f]{32})>/gi;
// Trailing punctuation usually ends the sentence, not the URL.
const TRAILING = ".,;:!?)]}";
const OPENING: Record<string, string> = { ")": "(", "]": "[", "}": "{" };

/** The URL without the punctuation that ends the sentence around it. A closing bracket stays
 * when it closes one opened inside the URL: `…/Rust_(programming_language)`. */
function withoutTrailing(raw: string): string {
  let end = raw.length;
  while (end > 0 && TRAILING.includes(raw.charAt(end - 1))) {
    const last = raw.charAt(end - 1);
    const opening = OPENING[last];
    if (opening) {
      const inside = raw.slice(0, end - 1);
      if (inside.split(opening).length > inside.split(last).length) break;
    }
    end -= 1;
  }
  return raw.slice(0, end);
}

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
    const url = withoutTrailing(raw);
    // "www." must be followed by a host ("see www.." is no address).
    const www = /^www\./i.test(url);
    const href = www && !/^www\.[^./]/i.test(url) ? null : safeHref(www ? `https://${url}` : url);
    if (href) out.push({ kind: "link", text: url, href });
    else push(url);
    push(raw.slice(url.length));
    last = start + raw.length;
  }
  push(text.slice(last));
  return out;
}
