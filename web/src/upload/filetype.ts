// What type to declare for a file the user attaches. Browsers name types by extension, and
// many plain-text files get one the server does not take (`text/csv`, `application/json`,
// `text/markdown`, `video/mp2t` for a TypeScript file) or none at all (`README`): those are
// declared `text/plain` when their first bytes are text, as the server stores any text. Types
// the server refuses on purpose (HTML, XML, SVG: they would run as pages) stay as they are, so
// its refusal says why. No DOM: the caller reads the file's first bytes.

/** What the server takes: docs/openapi.json's `ContentType`, which tests keep equal to this list and to the
 * management service's `ALLOWED_TYPES` (a browser cannot import the Python one). */
export const ACCEPTED_TYPES: ReadonlySet<string> = new Set([
  "image/png",
  "image/jpeg",
  "image/gif",
  "image/webp",
  "video/mp4",
  "video/webm",
  "audio/mpeg",
  "audio/ogg",
  "audio/wav",
  "application/pdf",
  "text/plain",
  "application/zip",
  "application/msword",
  "application/vnd.ms-excel",
  "application/vnd.ms-powerpoint",
  "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
  "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
  "application/vnd.openxmlformats-officedocument.presentationml.presentation",
  "application/vnd.oasis.opendocument.text",
  "application/vnd.oasis.opendocument.spreadsheet",
  "application/vnd.oasis.opendocument.presentation",
]);

const MARKUP = /^(?:text\/html|application\/xhtml\+xml|image\/svg\+xml|text\/xml|application\/xml|application\/[\w.+-]+\+xml)$/;

/** How much of the file `declaredType` looks at. */
export const SNIFF_BYTES = 4096;

/**
 * Whether `head` (a file's first bytes, possibly cut inside a character) reads as text: UTF-8,
 * no NUL, and control characters only as whitespace (tab, newline, carriage return, form feed).
 */
export function looksLikeText(head: Uint8Array): boolean {
  if (head.length === 0) return false;
  let text: string;
  try {
    // `stream`: a character cut by the end of the sample is not an error.
    text = new TextDecoder("utf-8", { fatal: true }).decode(head, { stream: true });
  } catch {
    return false;
  }
  // eslint-disable-next-line no-control-regex
  return !/[\u0000-\u0008\u000b\u000e-\u001f\u007f]/.test(text);
}

/** The type to declare for a file the browser typed `browserType`, whose first bytes are `head`. */
export function declaredType(browserType: string, head: Uint8Array): string {
  const type = (browserType.toLowerCase().split(";")[0] ?? "").trim();
  if (ACCEPTED_TYPES.has(type)) return type;
  if (MARKUP.test(type)) return type;
  if (looksLikeText(head)) return "text/plain";
  return type || "application/octet-stream";
}
