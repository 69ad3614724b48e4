// How lists of names are ordered for people: by the locale's rules, numbers by their value
// ("Member 2" before "Member 10"), case and accents as the locale weighs them.

const collator = new Intl.Collator(undefined, { numeric: true });

/** For `sort`: `a` before `b` when negative. */
export function byName(a: string, b: string): number {
  return collator.compare(a, b);
}
