// Which messages of a list are on screen, for marking them read. The observer is created with
// the tracker, so a message registered on the list's very first render is already watched: a
// list mounted with its messages loaded (reopening a conversation) must report without waiting
// for a redraw that may never come.

/** The part of IntersectionObserver this needs (a fake in tests). */
export interface ObserverLike {
  observe(target: Element): void;
  disconnect(): void;
}

export interface EntryLike {
  target: Element;
  isIntersecting: boolean;
  /** What a real IntersectionObserver adds; a stand-in may leave them out. */
  intersectionRatio?: number;
  intersectionRect?: { height: number };
  rootBounds?: { height: number } | null;
}

/** How much of a message must show for it to count as seen. */
export const SEEN_SHARE = 0.6;
/** The observer's thresholds: fine enough to hear a message taller than the list fill it. */
export const SEEN_THRESHOLDS = Array.from({ length: 21 }, (_, i) => i / 20);

/**
 * Whether a message counts as seen: most of it shows, or, for one taller than the list, it
 * fills most of the list (a 4,000-character message on a phone never shows 60 % of itself).
 */
export function seenIn(e: EntryLike): boolean {
  if (!e.isIntersecting) return false;
  if (e.intersectionRatio === undefined || e.intersectionRatio >= SEEN_SHARE) return true;
  const root = e.rootBounds?.height ?? 0;
  return root > 0 && (e.intersectionRect?.height ?? 0) >= SEEN_SHARE * root;
}

export type ObserverFactory = (callback: (entries: readonly EntryLike[]) => void) => ObserverLike;

export class InView {
  private readonly observer: ObserverLike;
  /** Weak: a message element that leaves the list must not be kept alive by this. */
  private readonly tracked = new WeakSet<Element>();
  private readonly visible = new Set<number>();
  private stopped = false;

  constructor(
    create: ObserverFactory,
    private readonly seqOf: (el: Element) => number,
    private readonly pageVisible: () => boolean,
    private readonly report: (highest: number) => void,
  ) {
    this.observer = create((entries) => {
      // Entries queued before `stop` may still be delivered: the old list's are not news.
      if (this.stopped) return;
      for (const e of entries) {
        const seq = this.seqOf(e.target);
        if (Number.isNaN(seq)) continue;
        if (seenIn(e)) this.visible.add(seq);
        else this.visible.delete(seq);
      }
      this.reportNow();
    });
  }

  /** Watches each element not watched yet (a redraw passes every message again). */
  track(elements: Iterable<Element>): void {
    for (const el of elements) {
      if (this.tracked.has(el)) continue;
      this.tracked.add(el);
      this.observer.observe(el);
    }
  }

  /** Reports the highest seq on screen, if the page is visible and anything is. */
  reportNow(): void {
    if (!this.pageVisible() || this.visible.size === 0) return;
    this.report(Math.max(...this.visible));
  }

  stop(): void {
    this.stopped = true;
    this.observer.disconnect();
    this.visible.clear();
  }
}
