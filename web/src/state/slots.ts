// At most n tasks at once; the rest wait their turn in order. A task given a free slot starts in
// the same turn as the call (no await first), which callers that must act before anything else
// runs rely on (SyncQueue: a resume asked for twice in one turn runs once).

export class Slots {
  private active = 0;
  private waiting: (() => void)[] = [];

  constructor(private readonly size: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active < this.size) this.active += 1;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      return await task();
    } finally {
      // Handed to the first waiter rather than given back, so a newcomer cannot take it first.
      const next = this.waiting.shift();
      if (next) next();
      else this.active -= 1;
    }
  }
}
