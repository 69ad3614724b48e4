// The page's side of authentication: asks the token worker for access tokens and hears when the
// session ends. It implements the API client's TokenSource; it never holds a refresh token.
import { ApiError, type TokenSource } from "../api/client";
import type { User } from "../api/types";
import type { AccessGrant } from "./keeper";
import type { AuthReply, AuthRequest } from "./protocol";

/** The part of a Worker this uses (a fake in tests). */
export interface Port {
  postMessage(message: AuthRequest): void;
  onmessage: ((ev: MessageEvent<AuthReply>) => void) | null;
}

type Body<R> = R extends unknown ? Omit<R, "id"> : never;

/** localStorage key: a logout the server has not confirmed yet. */
const LOGOUT_PENDING = "chatstack-logout-pending";
/** Its value when the logout was for every device ("1" otherwise). */
const EVERYWHERE = "everywhere";

/** The page's localStorage, or null where there is none (tests) or it is refused (privacy modes). */
function pageStorage(): Storage | null {
  try {
    return globalThis.localStorage ?? null;
  } catch {
    return null;
  }
}

export class AuthSession implements TokenSource {
  private nextId = 1;
  private waiting = new Map<number, { resolve: (g: AccessGrant | null) => void; reject: (e: ApiError) => void }>();
  /** Logouts waiting for whether the server confirmed them. */
  private confirming = new Map<number, (confirmed: boolean) => void>();
  private grant: AccessGrant | null = null;
  private readonly endListeners = new Set<(reason: string, keep: boolean) => void>();
  private readonly grantListeners = new Set<(grant: AccessGrant) => void>();

  constructor(
    private readonly port: Port,
    private readonly now: () => number = () => Date.now(),
    /** Where a logout the server never confirmed is remembered across reloads (localStorage). */
    private readonly storage: Pick<Storage, "getItem" | "setItem" | "removeItem"> | null = pageStorage(),
  ) {
    port.onmessage = (ev) => this.receive(ev.data);
  }

  get user(): User | null {
    return this.grant?.user ?? null;
  }

  // A logout the server never confirmed is finished first, with the cookie it was for: the new
  // login replaces that cookie, and a logout everywhere left behind would leave the user's other
  // devices signed in for good.
  login = async (email: string, password: string) => {
    await this.finishPendingLogout();
    return this.fresh(await this.ask({ op: "login", email, password }));
  };
  register = async (email: string, password: string, name: string) => {
    await this.finishPendingLogout();
    return this.fresh(await this.ask({ op: "register", email, password, name }));
  };
  /**
   * Ends the session (`everywhere`: every login of the user, on every device); when the server
   * cannot be reached, remembers to end it later.
   */
  logout = async (everywhere = false): Promise<void> => {
    this.remember(await this.endLogin(false, everywhere), everywhere);
  };

  /**
   * The session the browser already has (a reload, another tab); null when it has none. A logout
   * the server never confirmed is finished first, and then there is nothing to resume: the cookie
   * still holds that login, and whoever opens the page next must not walk into it.
   */
  resume = async (): Promise<AccessGrant | null> => {
    if (await this.finishPendingLogout()) return null;
    return this.askMaybe({ op: "resume" });
  };

  /** Asks again for a logout the server never confirmed; whether there was one. */
  private async finishPendingLogout(): Promise<boolean> {
    const pending = this.storage?.getItem(LOGOUT_PENDING) ?? null;
    if (pending === null) return false;
    const everywhere = pending === EVERYWHERE;
    this.remember(await this.endLogin(true, everywhere), everywhere);
    return true;
  }

  async token(): Promise<string> {
    if (this.grant && this.grant.expiresAt - this.now() > 5000) return this.grant.accessToken;
    return (await this.ask({ op: "current" })).accessToken;
  }

  async renew(): Promise<string> {
    return (await this.ask({ op: "refresh" })).accessToken;
  }

  /** The session ended: why, in words for the login screen, and whether what the user was
   * writing stays for their next login (see KeeperEvent). */
  onEnd(fn: (reason: string, keep: boolean) => void): () => void {
    this.endListeners.add(fn);
    return () => this.endListeners.delete(fn);
  }

  onGrant(fn: (grant: AccessGrant) => void): () => void {
    this.grantListeners.add(fn);
    return () => this.grantListeners.delete(fn);
  }

  private async endLogin(force: boolean, everywhere: boolean): Promise<boolean> {
    const id = this.nextId++;
    return new Promise<boolean>((resolve, reject) => {
      this.confirming.set(id, resolve);
      this.waiting.set(id, { resolve: () => undefined, reject });
      this.port.postMessage({ op: "logout", ...(force ? { force } : {}), ...(everywhere ? { everywhere } : {}), id });
    });
  }

  private fresh(grant: AccessGrant): AccessGrant {
    this.storage?.removeItem(LOGOUT_PENDING);
    return grant;
  }

  private remember(confirmed: boolean, everywhere: boolean): void {
    if (confirmed) this.storage?.removeItem(LOGOUT_PENDING);
    else this.storage?.setItem(LOGOUT_PENDING, everywhere ? EVERYWHERE : "1");
  }

  private ask(req: Body<AuthRequest>): Promise<AccessGrant> {
    return this.askMaybe(req).then((grant) => grant as AccessGrant);
  }

  private askMaybe(req: Body<AuthRequest>): Promise<AccessGrant | null> {
    const id = this.nextId++;
    return new Promise<AccessGrant | null>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.port.postMessage({ ...req, id } as AuthRequest);
    });
  }

  private receive(reply: AuthReply): void {
    if (reply.id === null) {
      if (reply.event === "grant") {
        this.grant = reply.grant;
        for (const fn of this.grantListeners) fn(reply.grant);
      } else {
        this.grant = null;
        for (const fn of this.endListeners) fn(reply.reason, reply.keep);
      }
      return;
    }
    const waiter = this.waiting.get(reply.id);
    if (!waiter) return;
    this.waiting.delete(reply.id);
    const confirming = this.confirming.get(reply.id);
    this.confirming.delete(reply.id);
    if (reply.ok && confirming) confirming(reply.confirmed !== false);
    if (reply.ok) waiter.resolve(reply.grant);
    else waiter.reject(new ApiError(reply.error.status, reply.error.code, reply.error.message, null, reply.error.details));
  }
}
