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

export class AuthSession implements TokenSource {
  private nextId = 1;
  private waiting = new Map<number, { resolve: (g: AccessGrant | null) => void; reject: (e: ApiError) => void }>();
  private grant: AccessGrant | null = null;
  private readonly endListeners = new Set<(reason: string) => void>();
  private readonly grantListeners = new Set<(grant: AccessGrant) => void>();

  constructor(
    private readonly port: Port,
    private readonly now: () => number = () => Date.now(),
  ) {
    port.onmessage = (ev) => this.receive(ev.data);
  }

  get user(): User | null {
    return this.grant?.user ?? null;
  }

  login = (email: string, password: string) => this.ask({ op: "login", email, password });
  register = (email: string, password: string, name: string) => this.ask({ op: "register", email, password, name });
  logout = () => this.ask({ op: "logout" }).then(() => undefined);
  /** The session the browser already has (a reload, another tab); null when it has none. */
  resume = (): Promise<AccessGrant | null> => this.askMaybe({ op: "resume" });

  async token(): Promise<string> {
    if (this.grant && this.grant.expiresAt - this.now() > 5000) return this.grant.accessToken;
    return (await this.ask({ op: "current" })).accessToken;
  }

  async renew(): Promise<string> {
    return (await this.ask({ op: "refresh" })).accessToken;
  }

  onEnd(fn: (reason: string) => void): () => void {
    this.endListeners.add(fn);
    return () => this.endListeners.delete(fn);
  }

  onGrant(fn: (grant: AccessGrant) => void): () => void {
    this.grantListeners.add(fn);
    return () => this.grantListeners.delete(fn);
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
        for (const fn of this.endListeners) fn(reply.reason);
      }
      return;
    }
    const waiter = this.waiting.get(reply.id);
    if (!waiter) return;
    this.waiting.delete(reply.id);
    if (reply.ok) waiter.resolve(reply.grant);
    else waiter.reject(new ApiError(reply.error.status, reply.error.code, reply.error.message, null, reply.error.details));
  }
}
