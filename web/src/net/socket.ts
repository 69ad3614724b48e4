// One WebSocket to the relays that stays up: connects with the access token in ?token= (the only
// URL that may carry it), hands out frames after `hello`, and reconnects after a drop with backoff
// and jitter. Close codes (DESIGN section 5): 1008 token expired or session ended -> renew (which
// fails for an ended login, and the keeper signs out), then reconnect; 1008 account disabled ->
// stop for good; 1012 restart, 1013 overload, 1006 network -> back off, retry.
import type { TokenSource } from "../api/client";
import type { Hello } from "../api/types";
import type { Clock } from "../auth/keeper";
import { backoffDelay } from "./backoff";

export type SocketStatus = "connecting" | "open" | "reconnecting" | "stopped";

/** The part of the browser's WebSocket this uses (a fake in tests). */
export interface WireSocket {
  readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: Event) => void) | null;
  onmessage: ((ev: MessageEvent) => void) | null;
  onclose: ((ev: CloseEvent) => void) | null;
  onerror: ((ev: Event) => void) | null;
}

export interface SocketHandlers {
  hello(hello: Hello): void;
  frame(frame: Record<string, unknown>): void;
  status(status: SocketStatus, detail: string): void;
  /** The server ended this session for good (account disabled). */
  fatal(reason: string): void;
}

const OPEN = 1;

export class ChatSocket {
  private ws: WireSocket | null = null;
  private attempt = 0;
  private timer: unknown = null;
  private stopped = false;
  private greeted = false;
  private renewNext = false;

  constructor(
    private readonly url: string,
    private readonly tokens: TokenSource,
    private readonly handlers: SocketHandlers,
    private readonly open: (url: string) => WireSocket,
    private readonly clock: Clock,
    private readonly random: () => number = Math.random,
    /** Whether the browser believes it has a network (navigator.onLine). */
    private readonly online: () => boolean = () => true,
  ) {}

  start(): void {
    this.stopped = false;
    void this.connect();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onclose = null;
      ws.close(1000, "bye");
    }
    this.handlers.status("stopped", "");
  }

  /** The network is back (the browser's `online` event): skip the rest of the backoff. */
  nudge(): void {
    if (this.stopped || this.timer === null) return;
    this.clock.clearTimeout(this.timer);
    this.timer = null;
    void this.connect();
  }

  /**
   * The network is gone (the browser's `offline` event). A socket can stay "open" for a long
   * while on a dead link, taking frames that never leave: it is dropped now, so the page says it
   * is offline and queues what is sent until the network and the connection are back.
   */
  offline(): void {
    this.drop(OFFLINE);
  }

  /**
   * The connection looks open but answers nothing (a send went unacknowledged): drop it and make
   * a new one. Once per connection: the other sends waiting on the same dead link ask for nothing
   * more.
   */
  reconnect(detail: string): void {
    if (!this.greeted) return;
    this.drop(detail);
  }

  private drop(detail: string): void {
    if (this.stopped) return;
    const ws = this.ws;
    this.ws = null;
    this.greeted = false;
    if (ws) {
      ws.onclose = null;
      ws.close(1000, "reconnecting");
    }
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
    this.retry(detail);
  }

  /** Sends a frame if the socket is greeted; false otherwise (the caller queues and retries). */
  send(frame: object): boolean {
    if (!this.ws || !this.greeted || this.ws.readyState !== OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  get isOpen(): boolean {
    return this.greeted && this.ws?.readyState === OPEN;
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    this.handlers.status(this.attempt === 0 && !this.renewNext ? "connecting" : "reconnecting", "");
    let token: string;
    try {
      token = this.renewNext ? await this.tokens.renew() : await this.tokens.token();
      this.renewNext = false;
    } catch {
      // No token (the session is ending, or auth is unreachable): try again later; a real logout
      // stops this socket from the outside.
      this.retry("cannot renew the session");
      return;
    }
    if (this.stopped) return;
    const ws = this.open(`${this.url}?token=${encodeURIComponent(token)}`);
    this.ws = ws;
    this.greeted = false;
    ws.onmessage = (ev) => this.receive(ws, ev);
    ws.onclose = (ev) => this.closed(ws, ev.code, ev.reason);
    ws.onerror = () => undefined; // onclose follows and decides
  }

  private receive(ws: WireSocket, ev: MessageEvent): void {
    if (ws !== this.ws || typeof ev.data !== "string") return;
    let frame: Record<string, unknown>;
    try {
      frame = JSON.parse(ev.data) as Record<string, unknown>;
    } catch {
      return; // not JSON: nothing the contract sends
    }
    if (frame.type === "hello") {
      this.greeted = true;
      this.attempt = 0;
      this.handlers.status("open", "");
      this.handlers.hello(frame as unknown as Hello);
      return;
    }
    if (this.greeted) this.handlers.frame(frame);
  }

  private closed(ws: WireSocket, code: number, reason: string): void {
    if (ws !== this.ws) return;
    this.ws = null;
    const wasGreeted = this.greeted;
    this.greeted = false;
    if (this.stopped) return;
    if (code === 1008 && reason === "account disabled") {
      this.stopped = true;
      this.handlers.status("stopped", reason);
      this.handlers.fatal("This account was disabled.");
      return;
    }
    if (code === 1008 && reason === OVER_RATE) {
      // Sent past the rate limit for too long: the token is fine; coming straight back would
      // only be closed again. Back off like an overloaded server.
      this.retry("sending too fast");
      return;
    }
    if (code === 1008) {
      // Token expired or refused: a new token, then straight back.
      this.renewNext = true;
      this.attempt = 0;
      this.handlers.status("reconnecting", "renewing the session");
      void this.connect();
      return;
    }
    // A handshake refused before any hello twice in a row may be a stale token: renew next time.
    if (!wasGreeted && this.attempt >= 1) this.renewNext = true;
    this.retry(describe(code));
  }

  /** Tries again after a backoff; `detail` says why, unless the device is offline, which says more. */
  private retry(detail: string): void {
    if (this.stopped) return;
    if (!this.online()) detail = OFFLINE;
    const delay = backoffDelay(this.attempt, this.random);
    this.attempt += 1;
    this.handlers.status("reconnecting", detail);
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      void this.connect();
    }, delay);
  }
}

const OFFLINE = "this device is offline";

/** The relay's reason for closing a socket that kept sending past its rate limit. */
const OVER_RATE = "too many frames over the rate limit";

function describe(code: number): string {
  if (code === 1012) return "the server is restarting";
  if (code === 1013) return "the server is busy";
  if (code === 1009) return "a message was too big";
  return "the connection dropped";
}
