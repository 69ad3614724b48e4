// The dedicated worker that owns the refresh token: the page sends commands, gets access tokens.
/// <reference lib="webworker" />
import { ApiError } from "../api/client";
import { TokenKeeper } from "./keeper";
import type { AuthReply, AuthRequest } from "./protocol";

const scope = self as unknown as DedicatedWorkerGlobalScope;
const post = (reply: AuthReply) => scope.postMessage(reply);

const keeper = new TokenKeeper(scope.location.origin, (input, init) => fetch(input, init), (event) => {
  if (event.kind === "grant") post({ id: null, event: "grant", grant: event.grant });
  else post({ id: null, event: "logged_out", reason: event.reason });
});

scope.onmessage = async (ev: MessageEvent<AuthRequest>) => {
  const req = ev.data;
  try {
    let grant = null;
    if (req.op === "login") grant = await keeper.login(req.email, req.password);
    else if (req.op === "register") grant = await keeper.register(req.email, req.password, req.name);
    else if (req.op === "current") grant = await keeper.current();
    else if (req.op === "refresh") grant = await keeper.refresh();
    else await keeper.logout();
    post({ id: req.id, ok: true, grant });
  } catch (err) {
    const e = err instanceof ApiError ? err : new ApiError(0, "internal", String(err));
    post({ id: req.id, ok: false, error: { status: e.status, code: e.code, message: e.message, details: e.details } });
  }
};
