// The dedicated worker that keeps the session: the page sends commands, gets access tokens. The
// refresh token itself stays in the browser's HttpOnly cookie, out of every script's reach.
/// <reference lib="webworker" />
import { ApiError } from "../api/client";
import { type Lock, realClock, TokenKeeper } from "./keeper";
import type { AuthReply, AuthRequest } from "./protocol";

const scope = self as unknown as DedicatedWorkerGlobalScope;
const post = (reply: AuthReply) => scope.postMessage(reply);

// Every tab's worker shares the one cookie: rotations take turns across them (Web Locks).
const locks = (scope.navigator as WorkerNavigator & { locks?: LockManager }).locks;
const lock: Lock = locks ? <T>(run: () => Promise<T>) => locks.request("chatstack-refresh", run) as Promise<T> : (run) => run();

const keeper = new TokenKeeper(
  scope.location.origin,
  // A request that hangs would hold the lock every tab's rotation waits for.
  (input, init) => fetch(input, { ...init, signal: AbortSignal.timeout(15_000) }),
  (event) => {
    if (event.kind === "grant") post({ id: null, event: "grant", grant: event.grant });
    else post({ id: null, event: "logged_out", reason: event.reason, keep: event.keep });
  },
  realClock,
  lock,
);

// Tabs tell each other of logins and logouts at once: a logout revokes the login every tab of
// this browser shares, and after another account's login the cookie is theirs.
type TabNews = { kind: "logged_out" } | { kind: "signed_in"; user: string };
const tabs = typeof BroadcastChannel === "function" ? new BroadcastChannel("chatstack-session") : null;
if (tabs) {
  tabs.onmessage = (ev: MessageEvent<TabNews>) => {
    if (ev.data.kind === "logged_out") keeper.endedElsewhere();
    else keeper.signedInElsewhere(ev.data.user);
  };
}

scope.onmessage = async (ev: MessageEvent<AuthRequest>) => {
  const req = ev.data;
  try {
    let grant = null;
    let confirmed: boolean | undefined;
    if (req.op === "login" || req.op === "register") {
      grant = req.op === "login" ? await keeper.login(req.email, req.password) : await keeper.register(req.email, req.password, req.name);
      tabs?.postMessage({ kind: "signed_in", user: grant.user.id } satisfies TabNews);
    } else if (req.op === "resume") grant = await keeper.resume();
    else if (req.op === "current") grant = await keeper.current();
    else if (req.op === "refresh") grant = await keeper.refresh();
    else {
      // Told before the server is: a logout request that hangs must not end, once it gives up,
      // a login another tab made meanwhile.
      const done = keeper.logout(req.force === true, req.everywhere === true);
      tabs?.postMessage({ kind: "logged_out" } satisfies TabNews);
      confirmed = await done;
    }
    post({ id: req.id, ok: true, grant, ...(confirmed === undefined ? {} : { confirmed }) });
  } catch (err) {
    const e = err instanceof ApiError ? err : new ApiError(0, "internal", String(err));
    post({ id: req.id, ok: false, error: { status: e.status, code: e.code, message: e.message, details: e.details } });
  }
};
