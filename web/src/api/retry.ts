// Asking again while the server says it is busy: a 429 from nginx's burst, a 503 from a service's
// scan slots. The pause doubles each time; any other refusal, or the last busy one, is the
// caller's.
import { type Clock, pause } from "../auth/keeper";

export interface BusyRetry {
  /** How many times the call is made at most. */
  tries: number;
  /** The first pause, doubled after each. */
  pauseMs: number;
  /** Whether a refusal means "busy, ask again". */
  busy(err: unknown): boolean;
}

export async function whileBusy<T>(clock: Clock, retry: BusyRetry, call: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      if (!retry.busy(err) || attempt >= retry.tries) throw err;
    }
    await pause(clock, retry.pauseMs * 2 ** (attempt - 1));
  }
}
