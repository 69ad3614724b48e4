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
}

export type ObserverFactory = (callback: (entries: readonly EntryLike[]) => void) => ObserverLike;

export class InView {
  private readonly observer: ObserverLike;
  /** Weak: a message element that leaves the list must not be kept alive by this. */
  private readonly tracked = new WeakSet<Element>();
  private readonly visible = new Set<number>();

  constructor(
    create: ObserverFactory,
    private readonly seqOf: (el: Element) => number,
    private readonly pageVisible: () => boolean,
    private readonly report: (highest: number) => void,
  ) {
    this.observer = create((entries) => {
      for (const e of entries) {
        const seq = this.seqOf(e.target);
        if (Number.isNaN(seq)) continue;
        if (e.isIntersecting) this.visible.add(seq);
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
    this.observer.disconnect();
    this.visible.clear();
  }
}
