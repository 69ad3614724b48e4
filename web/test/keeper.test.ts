import { describe, expect, it } from "vitest";
import { EVERYWHERE_REFUSED, type KeeperEvent, LOGOUT_UNCONFIRMED, type Lock, refreshDelayMs, TokenKeeper } from "../src/auth/keeper";
import { FakeClock, flush, json, ME } from "./fixtures";

const user = { id: ME, email: "ada@example.com", name: "Ada" };

function pair(n: number, expiresIn = 900) {
  return { data: { access_token: `at${n}`, token_type: "Bearer", expires_in: expiresIn, user } };
}

/**
 * An auth server and the browser's cookie jar: login sets the refresh cookie to rt1; each refresh
 * presents the jar's cookie and, when it is the latest, sets the next. As in a browser, the cookie
 * is read when the request goes out and replaced when the answer comes back.
 */
function server() {
  const calls: { path: string; body: Record<string, unknown>; cookie: string | null }[] = [];
  let jar: string | null = null;
  let latest = 0;
  const used = new Set<string>();
  let down = false;
  const fetchImpl = async (url: string, init?: RequestInit) => {
    const path = new URL(url).pathname;
    const body = JSON.parse(String(init?.body ?? "{}")) as Record<string, unknown>;
    const cookie = jar;
    calls.push({ path, body, cookie });
    if (down) throw new TypeError("network");
    await Promise.resolve(); // on the wire
    if (path === "/v1/auth/login") {
      jar = `rt${(latest = 1)}`;
      return json(200, pair(1));
    }
    if (path === "/v1/auth/logout") {
      const spent = cookie === null || used.has(cookie);
      if (cookie) used.add(cookie);
      jar = null;
      // Everywhere needs a login that is still alive to speak for the others.
      if (body.everywhere === true && spent) return json(401, { error: { code: "unauthorized", message: "invalid refresh token" } });
      return json(204, null);
    }
    if (path === "/v1/auth/refresh") {
      // The one rotated just before: a concurrent use, told to retry (the server's grace).
      if (cookie !== null && cookie === `rt${latest - 1}` && used.has(cookie)) {
        return json(409, { error: { code: "conflict", message: "this refresh token was just rotated" } });
      }
      if (cookie === null || used.has(cookie) || cookie !== `rt${latest}`) {
        jar = null;
        return json(401, { error: { code: "unauthorized", message: "refresh token reused" } });
      }
      used.add(cookie);
      jar = `rt${++latest}`;
      return json(200, pair(latest));
    }
    return json(404, { error: { code: "not_found", message: "no" } });
  };
  return { calls, fetchImpl, setDown: (d: boolean) => (down = d), jar: () => jar };
}

/** Web Locks as the worker uses them: one holder at a time, in order. */
function mutex(): Lock {
  let tail: Promise<unknown> = Promise.resolve();
  return <T>(run: () => Promise<T>) => {
    const result = tail.then(run);
    tail = result.catch(() => undefined);
    return result;
  };
}

describe("refreshDelayMs", () => {
  it("rotates a fifth of the lifetime early, at most a minute and at least 5 s before expiry", () => {
    expect(refreshDelayMs(900)).toBe(840_000);
    expect(refreshDelayMs(100)).toBe(80_000);
    expect(refreshDelayMs(10)).toBe(5_000);
  });
});

describe("TokenKeeper", () => {
  it("rotates the refresh token before the access token expires, presenting each only once", async () => {
    const s = server();
    const clock = new FakeClock();
    const events: KeeperEvent[] = [];
    const keeper = new TokenKeeper("http://h", s.fetchImpl, (e) => events.push(e), clock);
    await keeper.login("ada@example.com", "pw");
    expect(clock.pending()).toEqual([840_000]);
    clock.advance(840_000);
    await flush();
    clock.advance(840_000);
    await flush();
    const refreshes = s.calls.filter((c) => c.path === "/v1/auth/refresh");
    expect(refreshes.map((c) => c.cookie)).toEqual(["rt1", "rt2"]);
    // The token never crosses a script: bodies are empty, the cookie carries it.
    expect(refreshes.map((c) => c.body)).toEqual([{}, {}]);
    expect(s.calls[0]?.body).toEqual({ email: "ada@example.com", password: "pw", refresh_in: "cookie" });
    expect((await keeper.current()).accessToken).toBe("at3");
    expect(events.filter((e) => e.kind === "grant")).toHaveLength(3);
  });

  it("shares one rotation between concurrent callers (a second would be a reuse)", async () => {
    const s = server();
    const keeper = new TokenKeeper("http://h", s.fetchImpl, () => undefined, new FakeClock());
    await keeper.login("a", "b");
    const [a, b] = await Promise.all([keeper.refresh(), keeper.refresh()]);
    expect(a.accessToken).toBe("at2");
    expect(b).toBe(a);
    expect(s.calls.filter((c) => c.path === "/v1/auth/refresh")).toHaveLength(1);
  });

  it("logs out when the server refuses the refresh token (reused or revoked)", async () => {
    const events: KeeperEvent[] = [];
    const fetchImpl = async (url: string) =>
      url.endsWith("/login") ? json(200, pair(1)) : json(401, { error: { code: "unauthorized", message: "refresh token reused" } });
    const clock = new FakeClock();
    const keeper = new TokenKeeper("http://h", fetchImpl, (e) => events.push(e), clock);
    await keeper.login("a", "b");
    await expect(keeper.refresh()).rejects.toThrow("refresh token reused");
    // Not the user's doing: what they were writing is kept for their next login.
    expect(events.at(-1)).toMatchObject({ kind: "logged_out", keep: true });
    expect(clock.pending()).toEqual([]);
    await expect(keeper.current()).rejects.toThrow("not logged in");
  });

  it("retries a refresh that failed for want of a network, keeping the session", async () => {
    const s = server();
    const clock = new FakeClock();
    const events: KeeperEvent[] = [];
    const keeper = new TokenKeeper("http://h", s.fetchImpl, (e) => events.push(e), clock);
    await keeper.login("a", "b");
    s.setDown(true);
    clock.advance(840_000);
    await flush();
    expect(clock.pending()).toEqual([1000]);
    s.setDown(false);
    clock.advance(1000);
    await flush();
    expect((await keeper.current()).accessToken).toBe("at2");
    expect(events.some((e) => e.kind === "logged_out")).toBe(false);
  });

  it("revokes the family on logout and forgets the tokens", async () => {
    const s = server();
    const clock = new FakeClock();
    const keeper = new TokenKeeper("http://h", s.fetchImpl, () => undefined, clock);
    await keeper.login("a", "b");
    await keeper.logout();
    expect(s.calls.at(-1)).toEqual({ path: "/v1/auth/logout", body: {}, cookie: "rt1" });
    expect(s.jar()).toBeNull();
    expect(clock.pending()).toEqual([]);
  });

  it("logs out everywhere, and says so, or says the others could not be reached from a dead login", async () => {
    const s = server();
    const events: KeeperEvent[] = [];
    const keeper = new TokenKeeper("http://h", s.fetchImpl, (e) => events.push(e), new FakeClock());
    await keeper.login("ada@example.com", "pw");
    expect(await keeper.logout(false, true)).toBe(true);
    expect(s.calls.at(-1)).toEqual({ path: "/v1/auth/logout", body: { everywhere: true }, cookie: "rt1" });
    expect(events.at(-1)).toEqual({ kind: "logged_out", reason: "You logged out on every device.", keep: false });
    // Asked again with the login gone (a retry after the first answer was lost): refused.
    expect(await keeper.logout(true, true)).toBe(true);
    expect(events.at(-1)).toEqual({ kind: "logged_out", reason: EVERYWHERE_REFUSED, keep: false });
  });

  it("does not take a busy answer (429) for a logout: the login is still there to end", async () => {
    const s = server();
    const busy = async (url: string, init?: RequestInit) =>
      new URL(url).pathname === "/v1/auth/logout" ? json(429, { error: { code: "rate_limited", message: "slow down" } }) : s.fetchImpl(url, init);
    const events: KeeperEvent[] = [];
    const keeper = new TokenKeeper("http://h", busy, (e) => events.push(e), new FakeClock());
    await keeper.login("ada@example.com", "pw");
    expect(await keeper.logout()).toBe(false);
    expect(events.at(-1)).toEqual({ kind: "logged_out", reason: LOGOUT_UNCONFIRMED, keep: false });
  });

  it("says when the server could not be reached to end the login, and asks again when forced", async () => {
    const s = server();
    const events: KeeperEvent[] = [];
    const keeper = new TokenKeeper("http://h", s.fetchImpl, (e) => events.push(e), new FakeClock());
    await keeper.login("ada@example.com", "pw");
    s.setDown(true);
    expect(await keeper.logout()).toBe(false);
    expect(events.at(-1)).toEqual({ kind: "logged_out", reason: LOGOUT_UNCONFIRMED, keep: false });
    expect(s.jar()).toBe("rt1"); // the browser still holds a live login
    s.setDown(false);
    expect(await keeper.logout(true)).toBe(true);
    expect(s.calls.at(-1)).toEqual({ path: "/v1/auth/logout", body: {}, cookie: "rt1" });
    expect(s.jar()).toBeNull();
  });

  it("stays logged out when a rotation that was out during the logout comes back", async () => {
    const s = server();
    const clock = new FakeClock();
    const events: KeeperEvent[] = [];
    const keeper = new TokenKeeper("http://h", s.fetchImpl, (e) => events.push(e), clock);
    await keeper.login("ada@example.com", "pw");
    const rotating = keeper.refresh();
    await keeper.logout();
    await expect(rotating).rejects.toThrow();
    await expect(keeper.current()).rejects.toThrow();
    expect(events.map((e) => e.kind)).toEqual(["grant", "logged_out"]);
  });

  it("resumes the browser's session after a reload without the password, and the old page keeps going", async () => {
    const s = server();
    const first = new TokenKeeper("http://h", s.fetchImpl, () => undefined, new FakeClock());
    await first.login("ada@example.com", "pw");
    const events: KeeperEvent[] = [];
    const reloaded = new TokenKeeper("http://h", s.fetchImpl, (e) => events.push(e), new FakeClock());
    const grant = await reloaded.resume();
    expect(grant?.accessToken).toBe("at2");
    expect(grant?.user).toEqual(user);
    expect(events.map((e) => e.kind)).toEqual(["grant"]);
    expect(s.calls.filter((c) => c.path === "/v1/auth/login")).toHaveLength(1);
    // The other tab rotates next from the cookie as it stands now: no reuse, nobody logged out.
    expect((await first.refresh()).accessToken).toBe("at3");
  });

  it("resumes nothing, quietly, when the browser has no session", async () => {
    const s = server();
    const events: KeeperEvent[] = [];
    const keeper = new TokenKeeper("http://h", s.fetchImpl, (e) => events.push(e), new FakeClock());
    expect(await keeper.resume()).toBeNull();
    expect(events).toEqual([]);
    await expect(keeper.current()).rejects.toThrow("not logged in");
    s.setDown(true);
    expect(await keeper.resume()).toBeNull(); // unreachable: the login screen, the cookie kept
  });

  it("takes turns with other tabs to rotate the one cookie (at once, both would present it)", async () => {
    const s = server();
    const lock = mutex();
    const tabs = [0, 1].map(() => new TokenKeeper("http://h", s.fetchImpl, () => undefined, new FakeClock(), lock));
    await tabs[0]?.login("ada@example.com", "pw");
    expect(await tabs[1]?.resume()).not.toBeNull();
    const grants = await Promise.all(tabs.map((t) => t.refresh()));
    expect(grants.map((g) => g.accessToken).sort()).toEqual(["at3", "at4"]);
    const presented = s.calls.filter((c) => c.path === "/v1/auth/refresh").map((c) => c.cookie);
    expect(presented).toEqual(["rt1", "rt2", "rt3"]);
  });

  it("without Web Locks (plain http), the tab that lost the race retries with the new cookie", async () => {
    const s = server();
    const clock = new FakeClock();
    const tabs = [0, 1].map(() => new TokenKeeper("http://h", s.fetchImpl, () => undefined, clock));
    await tabs[0]?.login("ada@example.com", "pw");
    await tabs[1]?.resume();
    const both = Promise.all(tabs.map((t) => t.refresh()));
    await flush();
    clock.advance(250);
    const grants = await both;
    expect(grants.map((g) => g.accessToken).sort()).toEqual(["at3", "at4"]);
    const presented = s.calls.filter((c) => c.path === "/v1/auth/refresh").map((c) => c.cookie);
    expect(presented).toEqual(["rt1", "rt2", "rt2", "rt3"]);
  });

  it("ends this page's session when the cookie turns out to be another account's", async () => {
    const s = server();
    const events: KeeperEvent[] = [];
    const keeper = new TokenKeeper("http://h", s.fetchImpl, (e) => events.push(e), new FakeClock());
    await keeper.login("ada@example.com", "pw");
    const other = { id: "c".repeat(32), email: "cy@example.com", name: "Cy" };
    const fetchImpl = async (url: string, init?: RequestInit) =>
      url.endsWith("/refresh") ? json(200, { data: { access_token: "cy1", token_type: "Bearer", expires_in: 900, user: other } }) : s.fetchImpl(url, init);
    const switched = new TokenKeeper("http://h", fetchImpl, (e) => events.push(e), new FakeClock());
    await switched.login("ada@example.com", "pw");
    events.length = 0;
    await expect(switched.refresh()).rejects.toThrow("another account");
    expect(events).toEqual([{ kind: "logged_out", reason: "Someone else logged in on this browser. Log in again.", keep: false }]);
    await expect(switched.current()).rejects.toThrow("not logged in");
  });

  it("ends this tab's session when another tab logs out, or logs in as someone else", async () => {
    const s = server();
    const events: KeeperEvent[] = [];
    const keeper = new TokenKeeper("http://h", s.fetchImpl, (e) => events.push(e), new FakeClock());
    await keeper.login("ada@example.com", "pw");
    keeper.signedInElsewhere(ME); // the same account in another tab: nothing changes
    expect(events.map((e) => e.kind)).toEqual(["grant"]);
    keeper.endedElsewhere();
    expect(events.at(-1)).toEqual({ kind: "logged_out", reason: "You logged out in another tab.", keep: false });
    await expect(keeper.current()).rejects.toThrow("not logged in");
    keeper.endedElsewhere(); // already over: said once
    expect(events).toHaveLength(2);
    await keeper.login("ada@example.com", "pw");
    keeper.signedInElsewhere("c".repeat(32));
    expect(events.at(-1)).toEqual({ kind: "logged_out", reason: "Someone else logged in on this browser. Log in again.", keep: false });
  });
});
