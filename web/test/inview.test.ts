import { describe, expect, it } from "vitest";
import { type EntryLike, InView, type ObserverLike, seenIn } from "../src/app/inview";

/** An IntersectionObserver stand-in: the test says what intersects. */
class FakeObserver implements ObserverLike {
  readonly observed: Element[] = [];
  disconnected = false;
  constructor(readonly callback: (entries: readonly EntryLike[]) => void) {}
  observe(target: Element): void {
    this.observed.push(target);
  }
  disconnect(): void {
    this.disconnected = true;
  }
  show(target: Element, isIntersecting = true): void {
    this.callback([{ target, isIntersecting }]);
  }
}

function setup(visible = { now: true }) {
  let observer: FakeObserver | null = null;
  const reports: number[] = [];
  const tracker = new InView(
    (cb) => (observer = new FakeObserver(cb)),
    (el) => Number((el as unknown as { seq: number }).seq),
    () => visible.now,
    (seq) => reports.push(seq),
  );
  const el = (seq: number) => ({ seq }) as unknown as Element;
  return { tracker, reports, el, observer: () => observer as unknown as FakeObserver, visible };
}

describe("InView", () => {
  it("watches the messages of the very first render (a list mounted with its messages loaded)", () => {
    const s = setup();
    const a = s.el(1);
    const b = s.el(2);
    s.tracker.track([a, b]);
    expect(s.observer().observed).toEqual([a, b]);
    s.observer().show(a);
    s.observer().show(b);
    expect(s.reports).toEqual([1, 2]);
  });

  it("watches each element once across redraws, and reports the highest seq still on screen", () => {
    const s = setup();
    const a = s.el(1);
    const b = s.el(2);
    s.tracker.track([a]);
    s.tracker.track([a, b]);
    expect(s.observer().observed).toEqual([a, b]);
    s.observer().show(a);
    s.observer().show(b);
    s.observer().show(b, false);
    expect(s.reports).toEqual([1, 2, 1]);
  });

  it("reports nothing while the page is hidden, and what is on screen once it is visible", () => {
    const s = setup({ now: false });
    const a = s.el(7);
    s.tracker.track([a]);
    s.observer().show(a);
    expect(s.reports).toEqual([]);
    s.visible.now = true;
    s.tracker.reportNow();
    expect(s.reports).toEqual([7]);
  });

  it("disconnects the observer when stopped", () => {
    const s = setup();
    s.tracker.stop();
    expect(s.observer().disconnected).toBe(true);
  });
});

describe("seenIn", () => {
  const target = {} as Element;
  it("counts a message as seen when most of it shows, or when it fills most of the list", () => {
    expect(seenIn({ target, isIntersecting: true })).toBe(true); // a stand-in without sizes
    expect(seenIn({ target, isIntersecting: false, intersectionRatio: 0 })).toBe(false);
    expect(seenIn({ target, isIntersecting: true, intersectionRatio: 0.7, intersectionRect: { height: 70 }, rootBounds: { height: 600 } })).toBe(true);
    expect(seenIn({ target, isIntersecting: true, intersectionRatio: 0.3, intersectionRect: { height: 30 }, rootBounds: { height: 600 } })).toBe(false);
    // 2,336 px tall in a 631 px list: at most 27 % of it shows, but it fills the list.
    expect(seenIn({ target, isIntersecting: true, intersectionRatio: 0.27, intersectionRect: { height: 631 }, rootBounds: { height: 631 } })).toBe(true);
    expect(seenIn({ target, isIntersecting: true, intersectionRatio: 0.1, intersectionRect: { height: 234 }, rootBounds: { height: 631 } })).toBe(false);
  });
});
