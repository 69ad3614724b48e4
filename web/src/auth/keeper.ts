// Holds the refresh token and keeps a fresh access token: login, rotation ahead of expiry, reuse
// or revocation handled as a logout. It runs inside a dedicated worker (worker.ts), so the page's
// scripts never see the refresh token (docs/decisions.md, "Where the refresh token lives").
import { ApiError, type Fetch, postJson } from "../api/client";
import type { User } from "../api/types";

export interface TokenPair {
  access_token: string;
  token_type: "Bearer";
  expires_in: number;
  refresh_token: string;
  user: User;
}

/** What the page may know: the access token and who it belongs to. */
export interface AccessGrant {
  accessToken: string;
  expiresAt: number;
  user: User;
}

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

export type KeeperEvent = { kind: "grant"; grant: AccessGrant } | { kind: "logged_out"; reason: string };

/** When to rotate: a fifth of the lifetime early, at most a minute, at least 5 s before expiry. */
export function refreshDelayMs(expiresInS: number): number {
  const lead = Math.min(60, Math.max(5, expiresInS / 5));
  return Math.max(1, (expiresInS - lead) * 1000);
}

// A refresh that fails for want of a network is retried this often until the token expires.
const RETRY_MS = [1000, 2000, 5000, 10000];

export class TokenKeeper {
  private refreshToken: string | null = null;
  private grant: AccessGrant | null = null;
  private timer: unknown = null;
  private inFlight: Promise<AccessGrant> | null = null;
  private failures = 0;

  constructor(
    private readonly base: string,
    private readonly fetchImpl: Fetch,
    private readonly emit: (event: KeeperEvent) => void,
    private readonly clock: Clock = realClock,
  ) {}

  async register(email: string, password: string, name: string): Promise<AccessGrant> {
    await postJson<User>(this.fetchImpl, `${this.base}/v1/auth/register`, { email, password, name });
    return this.login(email, password);
  }

  async login(email: string, password: string): Promise<AccessGrant> {
    const pair = await postJson<TokenPair>(this.fetchImpl, `${this.base}/v1/auth/login`, { email, password });
    return this.accept(pair);
  }

  /** The current grant, refreshed first when it is about to expire. */
  async current(): Promise<AccessGrant> {
    if (this.grant && this.grant.expiresAt - this.clock.now() > 5000) return this.grant;
    return this.refresh();
  }

  /** Rotate now. One rotation at a time: concurrent callers share it (a second use would be reuse). */
  refresh(): Promise<AccessGrant> {
    if (!this.refreshToken) return Promise.reject(new ApiError(401, "unauthorized", "not logged in"));
    if (!this.inFlight) {
      this.inFlight = this.rotate().finally(() => {
        this.inFlight = null;
      });
    }
    return this.inFlight;
  }

  async logout(): Promise<void> {
    const token = this.refreshToken;
    this.clear();
    if (token) {
      try {
        await postJson<void>(this.fetchImpl, `${this.base}/v1/auth/logout`, { refresh_token: token });
      } catch {
        // The family expires on its own; the local session is gone either way.
      }
    }
    this.emit({ kind: "logged_out", reason: "You logged out." });
  }

  private async rotate(): Promise<AccessGrant> {
    const presented = this.refreshToken;
    try {
      const pair = await postJson<TokenPair>(this.fetchImpl, `${this.base}/v1/auth/refresh`, { refresh_token: presented });
      // A logout while the rotation was out: the new pair must not log the user back in.
      if (this.refreshToken !== presented) throw new ApiError(401, "unauthorized", "logged out");
      this.failures = 0;
      return this.accept(pair);
    } catch (err) {
      if (this.refreshToken !== presented) throw err; // that session is over already
      if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
        // Reused (someone else rotated it first: the server revoked the family), expired, revoked,
        // or the account is disabled: this session is over.
        this.clear();
        this.emit({ kind: "logged_out", reason: "Your session ended (signed out elsewhere or expired). Log in again." });
        throw err;
      }
      // A network hiccup or a 503: keep the token and try again soon, while the access token lasts.
      const wait = RETRY_MS[Math.min(this.failures, RETRY_MS.length - 1)] ?? 10000;
      this.failures += 1;
      this.schedule(wait);
      throw err;
    }
  }

  private accept(pair: TokenPair): AccessGrant {
    this.refreshToken = pair.refresh_token;
    this.grant = {
      accessToken: pair.access_token,
      expiresAt: this.clock.now() + pair.expires_in * 1000,
      user: pair.user,
    };
    this.schedule(refreshDelayMs(pair.expires_in));
    this.emit({ kind: "grant", grant: this.grant });
    return this.grant;
  }

  private schedule(ms: number): void {
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      this.refresh().catch(() => undefined);
    }, ms);
  }

  private clear(): void {
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
    this.refreshToken = null;
    this.grant = null;
  }
}
