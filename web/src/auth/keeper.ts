// Keeps a fresh access token for a session whose refresh token the browser holds in an HttpOnly
// cookie (login with refresh_in "cookie"): login, resuming after a reload, rotation ahead of expiry,
// reuse or revocation handled as a logout. It runs inside a dedicated worker (worker.ts); neither
// it nor the page ever sees the refresh token (docs/decisions.md, "Where the refresh token lives").
import { ApiError, type Fetch, postJson } from "../api/client";
import type { User } from "../api/types";

/** What login and refresh answer for a cookie session: no refresh token in the body. */
export interface SessionBody {
  access_token: string;
  token_type: "Bearer";
  expires_in: number;
  user: User;
}

/** What the page may know: the access token and who it belongs to. */
export interface AccessGrant {
  accessToken: string;
  expiresAt: number;
  user: User;
}

/**
 * Runs a rotation alone among every tab of this browser: they share one cookie, and two uses of
 * one refresh token would look like theft and end the session everywhere.
 */
export type Lock = <T>(run: () => Promise<T>) => Promise<T>;
const alone: Lock = (run) => run();

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** Resolves after `ms` on `clock` (a fake one in tests moves only when told). */
export function pause(clock: Clock, ms: number): Promise<void> {
  return new Promise<void>((resolve) => clock.setTimeout(resolve, ms));
}

export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/** `keep`: what the user was writing stays in the tab for their next login. So it does when the
 * server ended the session (a password changed or "log out everywhere" elsewhere, an expiry), not
 * when they logged out (here or in another tab) nor when someone else logged in on this browser. */
export type KeeperEvent = { kind: "grant"; grant: AccessGrant } | { kind: "logged_out"; reason: string; keep: boolean };

/** When to rotate: a fifth of the lifetime early, at most a minute, at least 5 s before expiry. */
export function refreshDelayMs(expiresInS: number): number {
  const lead = Math.min(60, Math.max(5, expiresInS / 5));
  return Math.max(1, (expiresInS - lead) * 1000);
}

// Why a tab's session ends when the browser's cookie turned out to be another account's.
const SOMEONE_ELSE = "Someone else logged in on this browser. Log in again.";
export const LOGOUT_UNCONFIRMED =
  "You are logged out on this page, but the server could not be reached to end the login. It will be ended the next time this app is opened online; until then, do not leave this browser to someone else.";

export const LOGOUT_EVERYWHERE_UNCONFIRMED =
  "You are logged out on this page, but the server could not be reached, so your other devices are still logged in. Their logout will be finished the next time this app is opened or logged into online.";

export const EVERYWHERE_REFUSED =
  "You logged out here, but this login had already ended when it asked for your other devices, so they may still be logged in. Log in and choose “Log out everywhere” again.";

// A rotation answered 409 (another tab's rotation of the same cookie won) is asked again this often.
const CONCURRENT_RETRIES = 4;

// A refresh that fails for want of a network is retried this often until the token expires.
const RETRY_MS = [1000, 2000, 5000, 10000];

export class TokenKeeper {
  /** A session exists: its refresh token is in the browser's cookie. */
  private active = false;
  /** Bumped by every login, resume and logout: a rotation that returns into another is dropped. */
  private session = 0;
  private grant: AccessGrant | null = null;
  private timer: unknown = null;
  private inFlight: Promise<AccessGrant> | null = null;
  private failures = 0;

  constructor(
    private readonly base: string,
    private readonly fetchImpl: Fetch,
    private readonly emit: (event: KeeperEvent) => void,
    private readonly clock: Clock = realClock,
    private readonly lock: Lock = alone,
  ) {}

  async register(email: string, password: string, name: string): Promise<AccessGrant> {
    await postJson<User>(this.fetchImpl, `${this.base}/v1/auth/register`, { email, password, name });
    return this.login(email, password);
  }

  async login(email: string, password: string): Promise<AccessGrant> {
    const body = { email, password, refresh_in: "cookie" };
    // In turn with other tabs' rotations: one answered after this login would clear its cookie.
    const pair = await this.lock(() => postJson<SessionBody>(this.fetchImpl, `${this.base}/v1/auth/login`, body));
    this.begin();
    return this.accept(pair);
  }

  /**
   * The session this browser already has (after a reload, or in another tab), from its cookie and
   * without the password; null when there is none or it cannot be reached now (then the login
   * screen shows, and the cookie is still there for the next try).
   */
  async resume(): Promise<AccessGrant | null> {
    const session = ++this.session;
    try {
      const pair = await this.presentCookie();
      if (session !== this.session) return null; // a login or logout meanwhile decided
      this.active = true;
      return this.accept(pair);
    } catch {
      return null;
    }
  }

  /** Another tab of this browser logged out: the login is revoked, so this tab's session ends. */
  endedElsewhere(): void {
    if (this.active) this.end("You logged out in another tab.");
  }

  /** Another tab logged in: if as someone else, the cookie is theirs now and this session ends. */
  signedInElsewhere(userId: string): void {
    if (this.active && this.grant && this.grant.user.id !== userId) this.end(SOMEONE_ELSE);
  }

  /** The current grant, refreshed first when it is about to expire. */
  async current(): Promise<AccessGrant> {
    if (this.grant && this.grant.expiresAt - this.clock.now() > 5000) return this.grant;
    return this.refresh();
  }

  /** Rotate now. One rotation at a time: concurrent callers share it (a second would be reuse). */
  refresh(): Promise<AccessGrant> {
    if (!this.active) return Promise.reject(new ApiError(401, "unauthorized", "not logged in"));
    if (!this.inFlight) {
      this.inFlight = this.rotate().finally(() => {
        this.inFlight = null;
      });
    }
    return this.inFlight;
  }

  /**
   * Ends the session here and asks the server to end the login. Returns whether the server
   * confirmed (or there was nothing to end): false when it could not be reached, and then the
   * browser's cookie still holds a live login, which the page must not resume (session.ts keeps
   * that in mind and asks again). `force` asks even with no session open here (that retry).
   * `everywhere` ends every login of the user, on every device, not only this one.
   */
  async logout(force = false, everywhere = false): Promise<boolean> {
    const was = this.active || force;
    this.clear();
    let confirmed = true;
    let reason = everywhere ? "You logged out on every device." : "You logged out.";
    if (was) {
      try {
        const body = everywhere ? { everywhere: true } : {};
        await this.lock(() => postJson<void>(this.fetchImpl, `${this.base}/v1/auth/logout`, body));
      } catch (err) {
        // 401 means there is no login left to end (revoked, expired, never there). Anything
        // else (429 from the edge, a 5xx, no answer) left the cookie's login as it was.
        confirmed = err instanceof ApiError && err.status === 401;
        // This login had ended already, so it could not speak for the others.
        if (confirmed && everywhere) reason = EVERYWHERE_REFUSED;
      }
    }
    const unconfirmed = everywhere ? LOGOUT_EVERYWHERE_UNCONFIRMED : LOGOUT_UNCONFIRMED;
    this.emit({ kind: "logged_out", reason: confirmed ? reason : unconfirmed, keep: false });
    return confirmed;
  }

  private async rotate(): Promise<AccessGrant> {
    const session = this.session;
    try {
      const pair = await this.presentCookie();
      // A logout while the rotation was out: the new pair must not log the user back in.
      if (session !== this.session) throw new ApiError(401, "unauthorized", "logged out");
      if (this.grant && pair.user.id !== this.grant.user.id) {
        // Another tab logged out and someone else logged in: the cookie is theirs now. This
        // page holds the first user's teams and messages; it must not go on as the second.
        this.end(SOMEONE_ELSE);
        throw new ApiError(401, "unauthorized", "another account's session");
      }
      this.failures = 0;
      return this.accept(pair);
    } catch (err) {
      if (session !== this.session) throw err; // that session is over already
      if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
        // Reused (someone else rotated it first: the server revoked the family), expired, revoked,
        // logged out in another tab, or the account is disabled: this session is over.
        this.end("Your session ended (signed out elsewhere or expired). Log in again.", true);
        throw err;
      }
      // A network hiccup or a 503: keep the session and try again soon, while the access token lasts.
      const wait = RETRY_MS[Math.min(this.failures, RETRY_MS.length - 1)] ?? 10000;
      this.failures += 1;
      this.schedule(wait);
      throw err;
    }
  }

  /**
   * POST /refresh with the cookie, in turn with other tabs. A 409 means another request (a tab
   * without Web Locks, on plain http) rotated this cookie a moment ago: the browser holds the new
   * one once that answer lands, so ask again shortly.
   */
  private async presentCookie(): Promise<SessionBody> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.lock(() => postJson<SessionBody>(this.fetchImpl, `${this.base}/v1/auth/refresh`, {}));
      } catch (err) {
        if (!(err instanceof ApiError && err.status === 409) || attempt >= CONCURRENT_RETRIES) throw err;
        await pause(this.clock, 250 * attempt);
      }
    }
  }

  private begin(): void {
    this.session += 1;
    this.active = true;
    this.failures = 0;
  }

  private accept(pair: SessionBody): AccessGrant {
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

  /** The session is over for a reason the page shows on its login screen. */
  private end(reason: string, keep = false): void {
    this.clear();
    this.emit({ kind: "logged_out", reason, keep });
  }

  private clear(): void {
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
    this.session += 1;
    this.active = false;
    this.grant = null;
  }
}
