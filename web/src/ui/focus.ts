// Where focus goes when what held it goes away (a panel closed, a dialog, the row of a cancelled
// upload): the browser drops it to the page, and a keyboard or screen-reader user starts again
// from the top. It goes back to the control the user came from instead.

/** Once the change has been drawn: focus `target`, unless the user has put it somewhere already. */
export function returnFocus(target: () => HTMLElement | null | undefined): void {
  setTimeout(() => {
    const now = document.activeElement;
    if (now === null || now === document.body) target()?.focus();
  }, 0);
}

/** The first of `candidates` still on the page; else `panel`'s message box, or its first button
 * (what is left to work with when the control, and the message that held it, went away). */
export function stillThere(candidates: readonly (HTMLElement | null | undefined)[], panel: HTMLElement | null): HTMLElement | null {
  for (const c of candidates) if (c?.isConnected) return c;
  return panel?.querySelector<HTMLElement>("textarea:not([disabled]), button") ?? null;
}
