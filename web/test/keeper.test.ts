import { describe, expect, it } from "vitest";
import { type KeeperEvent, refreshDelayMs, TokenKeeper } from "../src/auth/keeper";
import { FakeClock, flush, json, ME } from "./fixtures";

const user = { id: ME, email: "ada@example.com", name: "Ada" };

function pair(n: number, expiresIn = 900) {
  return { data: { access_token: `at${n}`, token_type: "Bearer", expires_in: expiresIn, refresh_token: `rt${n}`, user } };
}

/** An auth server: login gives pair 1; each refresh of the latest token gives the next pair. */
function server() {
  const calls: { path: string; body: Record<string, unknown> }[] = [];
  let latest = 0;
  const used = new Set<string>();
  let down = false;
  const fetchImpl = async (url: string, init?: RequestInit) => {
    const path = new URL(url).pathname;
    const body = JSON.parse(String(init?.body ?? "{}")) as Record<string, unknown>;
    calls.push({ path, body });
    if (down) throw new TypeError("network");
    if (path === "/v1/auth/login") return json(200, pair((latest = 1)));
    if (path === "/v1/auth/logout") return json(204, null);
    if (path === "/v1/auth/refresh") {
      const token = String(body.refresh_token);
      if (used.has(token) || token !== `rt${latest}`) return json(401, { error: { code: "unauthorized", message: "refresh token reused" } });
      used.add(token);
      return json(200, pair(++latest));
    }
    return json(404, { error: { code: "not_found", message: "no" } });
  };
  return { calls, fetchImpl, setDown: (d: boolean) => (down = d) };
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
    const presented = s.calls.filter((c) => c.path === "/v1/auth/refresh").map((c) => c.body.refresh_token);
    expect(presented).toEqual(["rt1", "rt2"]);
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
    expect(events.at(-1)?.kind).toBe("logged_out");
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
    expect(s.calls.at(-1)).toEqual({ path: "/v1/auth/logout", body: { refresh_token: "rt1" } });
    expect(clock.pending()).toEqual([]);
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
});
