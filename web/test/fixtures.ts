// Builders and fakes shared by the unit tests.
import type { Change, Message, UpdateFrame } from "../src/api/types";
import type { Clock } from "../src/auth/keeper";

export const ME = "a".repeat(32);
export const BOB = "b".repeat(32);
export const TEAM = "t".repeat(31) + "1";

export function msg(seq: number, over: Partial<Message> = {}): Message {
  return { id: `m${seq}`, seq, channel_id: TEAM, to: "*", type: "text", data: `text ${seq}`, from: BOB, ts: new Date(1_700_000_000_000 + seq * 1000).toISOString(), ...over };
}

export function update(seq: number, message: Message, change: UpdateFrame["change"] = "edited"): UpdateFrame {
  return { type: "update", seq, channel_id: message.channel_id, change, message };
}

export function created(m: Message): Change {
  return { seq: m.seq, change: "created", message: m };
}

/** A clock whose time only moves when the test says so. */
export class FakeClock implements Clock {
  t = 0;
  private timers: { at: number; fn: () => void; id: number }[] = [];
  private next = 1;

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.next++;
    this.timers.push({ at: this.t + ms, fn, id });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.timers = this.timers.filter((t) => t.id !== handle);
  }

  /** Moves time forward, running every timer that falls due, in order. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      const due = this.timers.filter((t) => t.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.timers = this.timers.filter((t) => t !== due);
      this.t = due.at;
      due.fn();
    }
    this.t = end;
  }

  pending(): number[] {
    return this.timers.map((t) => t.at - this.t).sort((a, b) => a - b);
  }
}

export function json(status: number, body: unknown): Response {
  return new Response(status === 204 ? null : JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

/** Lets pending promise callbacks run. */
export const flush = () => new Promise((r) => setTimeout(r, 0));
