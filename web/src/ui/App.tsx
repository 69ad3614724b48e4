// The whole app: the login screen until a session exists, then the chat. A reload (or another tab)
// first resumes the session the browser holds in its refresh cookie, so it asks for no password.
import { useEffect, useMemo, useState } from "preact/hooks";
import { Api } from "../api/client";
import { ChatModel } from "../app/chat";
import { tabPlaceOf, tabUnsentOf } from "../app/place";
import { type TabChannel, tabAttention } from "../app/tab";
import { realClock } from "../auth/keeper";
import { AuthSession, type Port } from "../auth/session";
import { ChatSocket, type WireSocket } from "../net/socket";
import { Login } from "./Login";
import { Shell } from "./Shell";

const UNSENT_ON_LOGOUT = "Some of your messages or files have not reached the server yet. Log out anyway and lose them?";

function wsUrl(): string {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/ws`;
}

export function App() {
  const session = useMemo(
    () => new AuthSession(new Worker(new URL("../auth/worker.ts", import.meta.url), { type: "module", name: "tokens" }) as unknown as Port),
    [],
  );
  // Made once, before any title is set: it keeps index.html's as the title with nothing waiting.
  const attention = useMemo(
    () =>
      tabAttention({
        document,
        focus: () => window.focus(),
        now: () => Date.now(),
        setInterval: (fn, ms) => window.setInterval(fn, ms),
        addEventListener: (type, fn) => window.addEventListener(type, fn),
        ...("Notification" in window ? { Notification: window.Notification } : {}),
        // Tabs tell each other what they show, so one does not notify what another shows.
        ...(typeof BroadcastChannel === "function" ? { channel: new BroadcastChannel("chatstack-attention") as unknown as TabChannel } : {}),
      }),
    [],
  );
  const [model, setModel] = useState<ChatModel | null>(null);
  const [reason, setReason] = useState<string | null>(null);
  const [resuming, setResuming] = useState(true);

  useEffect(
    () =>
      session.onEnd((why, keep) => {
        setReason(why);
        setModel((current) => {
          current?.stop(keep);
          return null;
        });
      }),
    [session],
  );

  const signedIn = () => {
    const me = session.user;
    if (!me) return;
    const api = new Api("", session);
    const chat = new ChatModel({
      api,
      me,
      clock: realClock,
      place: tabPlaceOf(() => sessionStorage, me.id),
      unsent: tabUnsentOf(() => sessionStorage, me.id),
      attention,
      openSocket: (handlers) => {
        const socket = new ChatSocket(
          wsUrl(),
          session,
          handlers,
          (url) => new WebSocket(url) as unknown as WireSocket,
          realClock,
          Math.random,
          () => navigator.onLine,
        );
        window.addEventListener("online", () => socket.nudge());
        window.addEventListener("offline", () => socket.offline());
        return socket;
      },
    });
    setReason(null);
    setModel(chat);
    void chat.start();
  };

  useEffect(() => {
    void session.resume().then((grant) => {
      setResuming(false);
      if (grant) signedIn();
    });
    // Once, for the page: signedIn reads the session, which does not change.
  }, [session]);

  if (!model && resuming) {
    return (
      <main class="login" aria-busy="true">
        <p class="info" role="status">
          Signing in…
        </p>
      </main>
    );
  }
  if (!model) return <Login session={session} reason={reason} onIn={signedIn} />;
  return (
    <Shell
      model={model}
      onLogout={(everywhere) => {
        // What was sent but not yet delivered lives in this page alone: logging out ends it, as
        // closing the tab would (which asks too).
        if (model.unsaved() && !confirm(UNSENT_ON_LOGOUT)) return;
        void session.logout(everywhere);
      }}
    />
  );
}
