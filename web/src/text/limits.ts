// The server's rules for a text message (docs/api.md, text frames and edits), checked before
// sending: a text the server would refuse is kept in the composer with the reason, instead of
// becoming a failed message whose retry can never succeed.

export const MAX_TEXT_CHARS = 4000;
/** From here on the composer shows how much room is left. */
export const COUNTER_FROM = 3500;

// Unicode category Cc but newline and tab, as the server's check.
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
// chatcore.schema's character classes, as the bodies of regular expression classes: whitespace
// (what Python's str.strip() removes), characters that show nothing, and variation selectors and
// direction marks (which show nothing alone, and may end a name).
export const SPACE = "\\t-\\r\\u001c- \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
export const SHOWS_NOTHING =
  "\\u00ad\\u200b-\\u200d\\u202a-\\u202e\\u2060-\\u2064\\ufeff\\u2066-\\u2069\\u034f\\u115f\\u1160\\u17b4\\u17b5\\u180e\\u180f\\u206a-\\u206f\\u2800\\u3164\\ufff9-\\ufffb\\uffa0";
/** Variation selectors and direction marks. */
export const SELECTORS = "\\u180b-\\u180d\\ufe00-\\ufe0f\\u061c\\u200e\\u200f";
// A text of only whitespace and characters that show nothing is empty.
const ONLY_SPACE = new RegExp(`^[${SPACE}${SHOWS_NOTHING}${SELECTORS}]*$`);

/** Characters as the server counts them (code points, not UTF-16 units: an emoji is one). */
export function textLength(text: string): number {
  let n = 0;
  for (const _ of text) n += 1;
  return n;
}

/** Why the server would refuse this text, in plain words; null when it would take it. */
export function textProblem(text: string): string | null {
  if (ONLY_SPACE.test(text)) return "Write something first.";
  const n = textLength(text);
  if (n > MAX_TEXT_CHARS) {
    return `Too long: ${n.toLocaleString("en")} of at most ${MAX_TEXT_CHARS.toLocaleString("en")} characters. Shorten it or split it into several messages.`;
  }
  const control = CONTROL.exec(text);
  if (control) {
    const code = control[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, "0");
    return `Contains an invisible control character (U+${code}) that cannot be sent; remove it.`;
  }
  if (LONE_SURROGATE.test(text)) return "Contains a broken character that cannot be sent; remove it.";
  return null;
}

/** "3,612 / 4,000" once the text is near the limit, else null. */
export function textCounter(text: string): string | null {
  const n = textLength(text);
  return n >= COUNTER_FROM ? `${n.toLocaleString("en")} / ${MAX_TEXT_CHARS.toLocaleString("en")}` : null;
}

/** Whether sending the same frame again may succeed (the server was busy), or never will. */
export function retryable(code: string): boolean {
  return code === "rate_limited" || code === "unavailable";
}
