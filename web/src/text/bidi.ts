// Text-direction embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069): a name with
// one can show as something else ("Carol\u202eevil" reads "Carol live") and reorder what follows
// it on screen. Names are refused with them (chatcore.schema); names stored before that rule are
// shown without them. Message texts are stored as sent and shown without them too: an override
// turns "invoice\u202efdp.exe" into "invoiceexe.pdf", and a link's text into another address;
// the browser orders right-to-left and mixed text by itself (the list shows each text `dir=auto`).
export const BIDI_CONTROL = /[\u202a-\u202e\u2066-\u2069]/;
const BIDI_CONTROLS = /[\u202a-\u202e\u2066-\u2069]/g;

/** The text without text-direction controls. */
export function withoutBidiControls(text: string): string {
  return text.replace(BIDI_CONTROLS, "");
}

/** The name as shown: without text-direction controls. */
export function shownName(name: string): string {
  return withoutBidiControls(name);
}
