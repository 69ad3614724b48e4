import { describe, expect, it } from "vitest";
import type { AuthReply, AuthRequest } from "../src/auth/protocol";
import { AuthSession, type Port } from "../src/auth/session";
import { flush, ME } from "./fixtures";

/** A token worker that answers at once: logouts confirmed or not as told, no session to resume. */
function worker(confirm: () => boolean) {
  const asked: AuthRequest[] = [];
  const port: Port = {
    onmessage: null,
    postMessage(req: AuthRequest) {
      asked.push(req);
      const reply: AuthReply =
        req.op === "logout"
          ? { id: req.id, ok: true, grant: null, confirmed: confirm() }
          : req.op === "login"
            ? { id: req.id, ok: true, grant: { accessToken: "at", expiresAt: 1e15, user: { id: ME, email: "a@x", name: "Ada" } } }
            : { id: req.id, ok: true, grant: null };
      queueMicrotask(() => port.onmessage?.({ data: reply } as MessageEvent<AuthReply>));
    },
  };
  return { port, asked };
}

function memoryStorage() {
  const items = new Map<string, string>();
  return {
    items,
    getItem: (k: string) => items.get(k) ?? null,
    setItem: (k: string, v: string) => void items.set(k, v),
    removeItem: (k: string) => void items.delete(k),
  };
}

describe("AuthSession", () => {
  it("never resumes a login whose logout the server did not confirm, and ends it once it can", async () => {
    let reachable = false;
    const w = worker(() => reachable);
    const storage = memoryStorage();
    const session = new AuthSession(w.port, () => 0, storage);
    await session.logout();
    expect(storage.items.size).toBe(1);
    // A reload while still offline: the logout is asked for again, and nothing is resumed.
    expect(await new AuthSession(w.port, () => 0, storage).resume()).toBeNull();
    expect(w.asked.map((r) => r.op)).toEqual(["logout", "logout"]);
    expect(storage.items.size).toBe(1);
    reachable = true;
    expect(await new AuthSession(w.port, () => 0, storage).resume()).toBeNull();
    expect(storage.items.size).toBe(0);
    // Nothing pending: a reload resumes as usual.
    await new AuthSession(w.port, () => 0, storage).resume();
    expect(w.asked.map((r) => r.op)).toEqual(["logout", "logout", "logout", "resume"]);
    expect(w.asked.filter((r) => r.op === "logout").map((r) => ("force" in r ? r.force : false))).toEqual([false, true, true]);
  });

  it("asks for a logout everywhere, and asks for it everywhere again when it was not confirmed", async () => {
    let reachable = false;
    const w = worker(() => reachable);
    const storage = memoryStorage();
    await new AuthSession(w.port, () => 0, storage).logout(true);
    reachable = true;
    expect(await new AuthSession(w.port, () => 0, storage).resume()).toBeNull();
    expect(storage.items.size).toBe(0);
    const logouts = w.asked.filter((r) => r.op === "logout");
    expect(logouts.map((r) => ("everywhere" in r ? r.everywhere : false))).toEqual([true, true]);
    // A plain logout stays plain.
    await new AuthSession(w.port, () => 0, storage).logout();
    expect(w.asked.at(-1)).not.toHaveProperty("everywhere");
  });

  it("finishes a pending logout before a login, with the cookie it was for, then forgets it", async () => {
    let reachable = false;
    const w = worker(() => reachable);
    const storage = memoryStorage();
    const session = new AuthSession(w.port, () => 0, storage);
    await session.logout(true);
    reachable = true; // back online: the user logs in again on the same page
    await session.login("a@x", "pw");
    await flush();
    // The logout everywhere went out (forced, everywhere) before the login replaced the cookie.
    expect(w.asked.map((r) => r.op)).toEqual(["logout", "logout", "login"]);
    expect(w.asked[1]).toMatchObject({ op: "logout", force: true, everywhere: true });
    expect(storage.items.size).toBe(0);
    await session.resume();
    expect(w.asked.at(-1)?.op).toBe("resume");
  });

  it("forgets a pending logout once someone logs in even while the server still cannot confirm it", async () => {
    const w = worker(() => false);
    const storage = memoryStorage();
    const session = new AuthSession(w.port, () => 0, storage);
    await session.logout();
    await session.login("a@x", "pw");
    await flush();
    // The cookie is the new login now: asking to end "the pending one" would end that.
    expect(storage.items.size).toBe(0);
    await session.resume();
    expect(w.asked.at(-1)?.op).toBe("resume");
  });
});
