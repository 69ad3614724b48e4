// The one way views learn that state changed: a version number and listeners, notified once per
// microtask however many changes a frame or an answer made.

export class Observable {
  version = 0;
  private listeners = new Set<() => void>();
  private scheduled = false;

  subscribe(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  protected changed(): void {
    this.version += 1;
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      for (const fn of [...this.listeners]) fn();
    });
  }
}
