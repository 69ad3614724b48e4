// REST over the contract's envelope: `{data, meta}` on success, `{error: {code, message,
// request_id}}` on failure. Every failure becomes an ApiError whose message a person can read.
import type { Attachment, Change, Message, Presence, Team, UploadTicket, User } from "./types";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly requestId: string | null = null,
    readonly details: Record<string, string> | null = null,
  ) {
    super(message);
    this.name = "ApiError";
  }

  /** What the UI shows: the server's own words, with the per-field reasons of a 422. */
  get readable(): string {
    if (this.details && Object.keys(this.details).length > 0) {
      const reasons = Object.entries(this.details).map(([field, why]) => `${field}: ${why}`);
      return `${this.message} (${reasons.join("; ")})`;
    }
    return this.message;
  }
}

export interface Page<T> {
  data: T[];
  meta: { has_more?: boolean; next_cursor?: number | string | null; [key: string]: unknown };
}

/** Where the access token comes from; `renew` is asked once when the server says 401. */
export interface TokenSource {
  token(): Promise<string>;
  renew(): Promise<string>;
}

export type Fetch = (input: string, init?: RequestInit) => Promise<Response>;

async function envelopeError(resp: Response): Promise<ApiError> {
  const requestId = resp.headers.get("X-Request-ID");
  try {
    const body = (await resp.json()) as { error?: { code?: string; message?: string; details?: Record<string, string> } };
    if (body.error && typeof body.error.message === "string") {
      return new ApiError(resp.status, body.error.code ?? "error", body.error.message, requestId, body.error.details ?? null);
    }
  } catch {
    // Not JSON (a proxy's HTML page): fall through to a generic text.
  }
  return new ApiError(resp.status, "http_error", `the server answered ${resp.status}`, requestId);
}

export class Api {
  constructor(
    private readonly base: string,
    private readonly tokens: TokenSource,
    private readonly fetchImpl: Fetch = (input, init) => fetch(input, init),
  ) {}

  /** One authenticated call; a 401 renews the token once and retries. */
  async call<T>(method: string, path: string, body?: unknown): Promise<{ data: T; meta: Page<unknown>["meta"] }> {
    let token = await this.tokens.token();
    for (let attempt = 0; ; attempt++) {
      let resp: Response;
      try {
        resp = await this.fetchImpl(this.base + path, {
          method,
          headers: {
            Authorization: `Bearer ${token}`,
            ...(body === undefined ? {} : { "Content-Type": "application/json" }),
          },
          body: body === undefined ? null : JSON.stringify(body),
        });
      } catch {
        throw new ApiError(0, "network", "the server cannot be reached; check the connection and retry");
      }
      if (resp.status === 401 && attempt === 0) {
        token = await this.tokens.renew();
        continue;
      }
      if (!resp.ok) throw await envelopeError(resp);
      if (resp.status === 204) return { data: undefined as T, meta: {} };
      const parsed = (await resp.json()) as { data: T; meta?: Page<unknown>["meta"] };
      return { data: parsed.data, meta: parsed.meta ?? {} };
    }
  }

  private async one<T>(method: string, path: string, body?: unknown): Promise<T> {
    return (await this.call<T>(method, path, body)).data;
  }

  private async page<T>(path: string): Promise<Page<T>> {
    const { data, meta } = await this.call<T[]>("GET", path);
    return { data, meta };
  }

  me = () => this.one<User>("GET", "/v1/auth/me");
  renameMe = (name: string) => this.one<User>("PATCH", "/v1/auth/me", { name });
  /** Ends every other login of the account (this one goes on). */
  changePassword = (current: string, next: string) =>
    this.one<void>("PUT", "/v1/auth/password", { current_password: current, new_password: next });
  user = (id: string) => this.one<User>("GET", `/v1/users/${enc(id)}`);

  teams = (cursor?: string) => this.page<Team>(`/v1/teams?limit=100${cursor ? `&cursor=${enc(cursor)}` : ""}`);
  team = (id: string) => this.one<Team>("GET", `/v1/teams/${enc(id)}`);
  createTeam = (body: { name: string; icon?: string; meta_tags?: string[] }) => this.one<Team>("POST", "/v1/teams", body);
  patchTeam = (id: string, body: Partial<Pick<Team, "name" | "icon" | "meta_tags" | "active">>) =>
    this.one<Team>("PATCH", `/v1/teams/${enc(id)}`, body);
  addMember = (id: string, email: string) => this.one<Team>("POST", `/v1/teams/${enc(id)}/members`, { email });
  removeMember = (id: string, userId: string) => this.one<Team>("DELETE", `/v1/teams/${enc(id)}/members/${enc(userId)}`);
  electAdmin = (id: string, userId: string) => this.one<Team>("PUT", `/v1/teams/${enc(id)}/admins/${enc(userId)}`);
  dismissAdmin = (id: string, userId: string) => this.one<Team>("DELETE", `/v1/teams/${enc(id)}/admins/${enc(userId)}`);
  transferSuperAdmin = (id: string, userId: string) =>
    this.one<Team>("PUT", `/v1/teams/${enc(id)}/super_admin`, { user_id: userId });
  leave = (id: string) => this.one<void>("POST", `/v1/teams/${enc(id)}/leave`);

  /** History, ascending by seq: the latest page, or the page just below `before`. */
  history = (team: string, query: { before?: number; after?: number; limit?: number }) =>
    this.page<Message>(`/v1/teams/${enc(team)}/messages${qs(query)}`);
  /** The gap-free resume call of 5b: every change after the cursor, in seq order. */
  changes = (team: string, after: number, limit = 200) =>
    this.page<Change>(`/v1/teams/${enc(team)}/changes${qs({ after, limit })}`);
  thread = (team: string, root: string, after?: number) =>
    this.page<Message>(`/v1/teams/${enc(team)}/messages/${enc(root)}/thread${qs({ after, limit: 200 })}`);
  edit = (team: string, id: string, data: string) => this.one<Message>("PATCH", `/v1/teams/${enc(team)}/messages/${enc(id)}`, { data });
  remove = (team: string, id: string) => this.one<void>("DELETE", `/v1/teams/${enc(team)}/messages/${enc(id)}`);
  react = (team: string, id: string, emoji: string, on: boolean) =>
    this.one<void>(on ? "PUT" : "DELETE", `/v1/teams/${enc(team)}/messages/${enc(id)}/reactions/${enc(emoji)}`);
  markRead = (team: string, seq: number) => this.one<void>("PUT", `/v1/teams/${enc(team)}/read`, { seq });
  presence = (team: string) => this.one<Presence[]>("GET", `/v1/teams/${enc(team)}/presence`);

  requestUpload = (team: string, file: { filename: string; content_type: string; size: number }) =>
    this.one<UploadTicket>("POST", `/v1/teams/${enc(team)}/attachments`, file);
  completeUpload = (id: string) => this.one<Attachment>("POST", `/v1/attachments/${enc(id)}/complete`);
  attachment = (id: string) => this.one<Attachment>("GET", `/v1/attachments/${enc(id)}`);
}

const enc = encodeURIComponent;

function qs(query: Record<string, number | string | undefined>): string {
  const parts = Object.entries(query)
    .filter((entry): entry is [string, number | string] => entry[1] !== undefined)
    .map(([key, value]) => `${key}=${enc(String(value))}`);
  return parts.length ? `?${parts.join("&")}` : "";
}

/** The unauthenticated auth calls (register, login, refresh, logout) share the envelope. */
export async function postJson<T>(fetchImpl: Fetch, url: string, body: unknown): Promise<T> {
  let resp: Response;
  try {
    resp = await fetchImpl(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "network", "the server cannot be reached; check the connection and retry");
  }
  if (!resp.ok) throw await envelopeError(resp);
  if (resp.status === 204) return undefined as T;
  return ((await resp.json()) as { data: T }).data;
}
