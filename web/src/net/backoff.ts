// Reconnect delays: exponential, capped, with "full jitter" (a random point below the cap of the
// attempt), so that every page a relay restart disconnects does not come back in the same instant.

export interface BackoffPolicy {
  baseMs: number;
  capMs: number;
  /** Never sooner than this: a relay that refuses at once would otherwise be hammered. */
  floorMs: number;
}

// A relay restart takes a second or two (the local supervisor restarts within 0.5 s): an 8 s cap
// keeps a page from sleeping long after the relays are back, 5 attempts in.
export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 500, capMs: 8_000, floorMs: 100 };

/** The delay before reconnect attempt `attempt` (0 = the first retry after a drop). */
export function backoffDelay(attempt: number, random: () => number = Math.random, policy = DEFAULT_BACKOFF): number {
  const ceiling = Math.min(policy.capMs, policy.baseMs * 2 ** Math.max(0, attempt));
  return Math.max(policy.floorMs, Math.floor(random() * ceiling));
}
