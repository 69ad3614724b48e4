// People whose names look alike, told apart where the page lists them (the DM list, a DM's
// header): two members called "Sam", or "Zoë" typed two ways, are otherwise one name twice.

export interface Named {
  id: string;
  name: string;
  /** Null when the server does not show it (not a teammate now). */
  email: string | null;
}

/** The form two names are compared in: Unicode-normalized (NFC), case folded. */
function key(name: string): string {
  return name.normalize("NFC").trim().toLocaleLowerCase();
}

/**
 * Per person, how to show them: their name, or, when someone else in `people` has a name that
 * looks the same, their name followed by their email (the start of their id when the email is
 * not known).
 */
export function distinctLabels(people: readonly Named[]): Map<string, string> {
  const byKey = new Map<string, number>();
  for (const p of people) byKey.set(key(p.name), (byKey.get(key(p.name)) ?? 0) + 1);
  const labels = new Map<string, string>();
  for (const p of people) {
    const shared = (byKey.get(key(p.name)) ?? 0) > 1;
    labels.set(p.id, shared ? `${p.name} (${p.email ?? `#${p.id.slice(0, 6)}`})` : p.name);
  }
  return labels;
}
