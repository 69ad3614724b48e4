// The signed-in screen: header with the connection state, sidebar, the open conversation and a
// side panel (thread, or members and settings). Esc and the browser's Back close the panel, then
// the drawer.
import { useEffect, useRef, useState } from "preact/hooks";
import type { ChatModel } from "../app/chat";
import { Conversation } from "./Conversation";
import { useObservable } from "./hooks";
import { Sidebar } from "./Sidebar";
import { TeamPanel } from "./TeamPanel";
import { AccountPanel } from "./AccountPanel";
import { returnFocus } from "./focus";
import { ThreadPanel } from "./ThreadPanel";

/** Where the layout has one column and the sidebar is a drawer (styles.css). */
const NARROW = "(max-width: 900px)";

export function Shell(props: { model: ChatModel; onLogout(everywhere: boolean): void }) {
  const { model } = props;
  useObservable(model);
  const [teamPanel, setTeamPanel] = useState(false);
  // The members panel takes focus when the user opens it, not when it follows a team switch.
  const [panelFocus, setPanelFocus] = useState(false);
  useEffect(() => {
    if (panelFocus) setPanelFocus(false);
  }, [panelFocus]);
  const [drawer, setDrawer] = useState(false);
  const team = model.selectedTeam ? model.teams.get(model.selectedTeam) : undefined;
  // Focus would fall to the page with the panel: it goes back to the thread's root in the list.
  const closeThread = () => {
    const root = model.threadRoot;
    model.openThread(null);
    if (root) setTimeout(() => document.querySelector<HTMLElement>(`main article[data-id="${CSS.escape(root)}"]`)?.focus(), 0);
  };

  // Likewise for the members panel and the account's: back to the button that opened it.
  const closeTeamPanel = () => {
    setTeamPanel(false);
    returnFocus(() => document.querySelector<HTMLElement>("main [data-opens='team-panel']"));
  };
  const [accountPanel, setAccountPanel] = useState(false);
  // One side panel at a time: a thread opened from the list takes the account panel's place for
  // good (it must not come back, its fields reset, when the thread closes).
  useEffect(() => {
    if (model.threadRoot && accountPanel) setAccountPanel(false);
  }, [model.threadRoot, accountPanel]);
  const closeAccountPanel = () => {
    setAccountPanel(false);
    returnFocus(() => document.querySelector<HTMLElement>("[data-opens='account-panel']"));
  };

  // The drawer exists on narrow screens only: widened past them, it is closed (else the page it
  // no longer covers would stay inert).
  useEffect(() => {
    const narrow = window.matchMedia(NARROW);
    const onChange = () => {
      if (!narrow.matches) setDrawer(false);
    };
    narrow.addEventListener("change", onChange);
    return () => narrow.removeEventListener("change", onChange);
  }, []);

  // What is open over the conversation, topmost first (the drawer is drawn over a panel, a
  // thread over the members panel): what Esc and the browser's Back close, one at a time.
  const layers = [
    drawer && "drawer",
    team && model.threadRoot && "thread",
    team && teamPanel && "team",
    accountPanel && "account",
  ].filter((l): l is string => typeof l === "string");
  const closeTop = () => {
    const top = layers[0];
    if (top === "drawer") {
      // Focus inside the drawer would go with it (hidden once its slide ends): back to the
      // button that opened it.
      const inside = document.activeElement?.closest("#sidebar") != null;
      setDrawer(false);
      if (inside) setTimeout(() => document.querySelector<HTMLElement>(".drawer-toggle")?.focus(), 0);
      else returnFocus(() => document.querySelector<HTMLElement>(".drawer-toggle"));
    } else if (top === "thread") closeThread();
    else if (top === "team") closeTeamPanel();
    else if (top === "account") closeAccountPanel();
  };
  // The listeners below are added once and read what is open as of the last render.
  const latest = useRef({ layers, closeTop });
  latest.current = { layers, closeTop };
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.key !== "Escape" || e.defaultPrevented) return;
      latest.current.closeTop();
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, []);

  // Back closes a panel or the drawer (on a phone, where they cover the page, that is what Back
  // is for) instead of leaving the app: one history entry stands while any is open. Closed
  // otherwise (Esc, ✕, a link), the entry is taken back, so Back then leaves as before.
  const layerOpen = layers.length > 0;
  const pushed = useRef(false);
  const ignorePop = useRef(false);
  useEffect(() => {
    // An entry left by this page before a reload stands for nothing open now: taken back. And
    // one standing at sign-out goes with the screen.
    if ((history.state as { chatstackLayer?: boolean } | null)?.chatstackLayer) {
      ignorePop.current = true;
      history.back();
    }
    return () => {
      if (pushed.current) history.back();
    };
  }, []);
  useEffect(() => {
    if (layerOpen && !pushed.current) {
      history.pushState({ chatstackLayer: true }, "");
      pushed.current = true;
    } else if (!layerOpen && pushed.current) {
      pushed.current = false;
      ignorePop.current = true;
      history.back();
    }
  }, [layerOpen]);
  useEffect(() => {
    const onPop = () => {
      if (ignorePop.current) {
        ignorePop.current = false;
        return;
      }
      if (!pushed.current) return;
      // Back took the entry: the top layer closes, and what is still open under it stands on
      // a new one (so the next Back closes it too, not the app).
      const { layers: open, closeTop: close } = latest.current;
      close();
      if (open.length > 1) history.pushState({ chatstackLayer: true }, "");
      else pushed.current = false;
    };
    window.addEventListener("popstate", onPop);
    return () => window.removeEventListener("popstate", onPop);
  }, []);

  // Messages sent offline live in this page until the server has them: the browser asks before
  // closing or reloading it then (it shows its own words; ours are not shown).
  useEffect(() => {
    const onLeave = (e: BeforeUnloadEvent) => {
      if (!model.unsaved()) return;
      e.preventDefault();
      e.returnValue = "";
    };
    window.addEventListener("beforeunload", onLeave);
    return () => window.removeEventListener("beforeunload", onLeave);
  }, [model]);

  useEffect(() => {
    const onVisibility = () => model.setPageVisible(document.visibilityState === "visible");
    onVisibility();
    document.addEventListener("visibilitychange", onVisibility);
    return () => document.removeEventListener("visibilitychange", onVisibility);
  }, [model]);

  const panel = team && model.threadRoot ? "thread" : team && teamPanel ? "team" : accountPanel ? "account" : null;
  // On a phone the sidebar (and its badges) is behind ☰, and no tab title shows: ☰ says it.
  const waiting = model.mentionsWaiting();
  const reconnecting = model.status === "reconnecting";
  return (
    <div class={`shell${drawer ? " drawer-open" : ""}${panel ? " with-panel" : ""}`}>
      <header class="topbar">
        <button
          type="button"
          class="icon drawer-toggle"
          aria-label={waiting > 0 ? `Teams and conversations, ${waiting === 1 ? "1 mention" : `${waiting} mentions`} waiting` : "Teams and conversations"}
          aria-expanded={drawer}
          aria-controls="sidebar"
          onClick={() => {
            // The drawer takes focus as it opens, so Tab walks it, not the page it covers.
            if (!drawer) setTimeout(() => document.querySelector<HTMLElement>("#sidebar button, #sidebar a")?.focus(), 0);
            setDrawer(!drawer);
          }}
        >
          ☰{waiting > 0 && <span class="badge mention toggle-badge">{waiting}</span>}
        </button>
        <h1 class="brand">chatstack</h1>
        <span class={`conn ${model.status}`} role="status" data-relay={model.relay ?? ""}>
          {model.status === "open" ? "connected" : model.status === "connecting" ? "connecting…" : model.status === "stopped" ? "disconnected" : "reconnecting…"}
        </span>
        <span class="whoami" title={model.me.email ?? undefined}>
          {model.me.name}
        </span>
        <button type="button" class="ghost" onClick={() => props.onLogout(false)}>
          Log out
        </button>
      </header>
      {reconnecting && (
        <p class="banner reconnecting" role="status">
          Reconnecting{model.statusDetail ? ` (${model.statusDetail})` : ""}… Messages you send now go out once the connection is back.
        </p>
      )}
      {model.notices.length > 0 && (
        // Each notice its own live region (an error an alert): a list item cannot be one.
        <div class="notices">
          {model.notices.map((n) => (
            <div key={n.id} class={`notice ${n.kind}`} role={n.kind === "error" ? "alert" : "status"}>
              <span>{n.text}</span>
              <button type="button" class="icon" aria-label="Dismiss" onClick={() => model.dismissNotice(n.id)}>
                ✕
              </button>
            </div>
          ))}
        </div>
      )}
      <div class="layout">
        <Sidebar
          model={model}
          onNavigate={() => setDrawer(false)}
          onOpenAccount={() => {
            // One side panel at a time.
            setTeamPanel(false);
            model.openThread(null);
            setDrawer(false);
            setAccountPanel(true);
          }}
          onLogoutEverywhere={() => props.onLogout(true)}
        />
        {/* Covered by the drawer (a phone's): out of Tab's and a screen reader's reach meanwhile. */}
        <main class="main" inert={drawer}>
          {team ? (
            <Conversation
              key={`${team.id}/${model.conversation}`}
              model={model}
              team={team}
              onOpenTeamPanel={() => {
                setAccountPanel(false);
                setTeamPanel(true);
                setPanelFocus(true);
              }}
            />
          ) : !model.teamsLoaded ? (
            <section class="empty" aria-busy="true">
              <p class="muted">Loading your teams…</p>
            </section>
          ) : (
            <section class="empty">
              <h2>Welcome, {model.me.name}</h2>
              <p>Create a team with “+ New team” (in the ☰ menu on a phone), or ask a team admin to add you by email ({model.me.email}).</p>
            </section>
          )}
        </main>
        <div class="panels" inert={drawer}>
          {panel === "thread" && team && model.threadRoot && <ThreadPanel key={`${team.id}/${model.threadRoot}`} model={model} team={team} root={model.threadRoot} onClose={closeThread} />}
          {panel === "team" && team && <TeamPanel key={team.id} model={model} team={team} takeFocus={panelFocus} onClose={closeTeamPanel} />}
          {panel === "account" && <AccountPanel model={model} onClose={closeAccountPanel} />}
        </div>
      </div>
      <div class="visually-hidden" aria-live="polite" aria-atomic="true">
        {model.announcement}
      </div>
    </div>
  );
}
