// Teams with their unread and mention badges, a form to create one, the open team's
// conversations (the team itself and a DM with each member: presence dot, unseen count), and at
// its foot the offer to turn on desktop notifications and "Log out everywhere".
import { useLayoutEffect, useRef, useState } from "preact/hooks";
import type { ChatModel } from "../app/chat";
import { checkTeam, type FieldErrors, parseTags, type TeamField } from "../text/teamform";
import { FieldError, invalidProps } from "./FieldError";
import { initials } from "./format";
import { PresenceDot, presenceWords } from "./PresenceDot";
import { byName } from "../text/order";

export function Sidebar(props: { model: ChatModel; onNavigate(): void; onOpenAccount(): void; onLogoutEverywhere(): void }) {
  const { model } = props;
  const [creating, setCreating] = useState(false);
  // "Log out everywhere" ends this device's login too: asked once more before it is done.
  const [confirmEverywhere, setConfirmEverywhere] = useState(false);
  const cancelRef = useRef<HTMLButtonElement>(null);
  const askRef = useRef<HTMLButtonElement>(null);
  const asked = useRef(false);
  // Focus goes into the question when it opens (on Cancel: nothing is done by a stray Enter),
  // and back to where it was asked from when it closes.
  useLayoutEffect(() => {
    if (confirmEverywhere) cancelRef.current?.focus();
    else if (asked.current) askRef.current?.focus();
    asked.current = confirmEverywhere;
  }, [confirmEverywhere]);
  // The form's first field takes focus when it opens (an `autofocus` attribute does nothing on an
  // element added after the page loaded), so typing goes in and Esc closes it.
  const nameRef = useRef<HTMLInputElement>(null);
  // Closed by Esc or Cancel, focus goes back to "+ New team" (not to the page); a team created
  // opens, and its conversation takes focus.
  const newTeamRef = useRef<HTMLButtonElement>(null);
  const cancelled = useRef(false);
  useLayoutEffect(() => {
    if (creating) nameRef.current?.focus();
    else if (cancelled.current) newTeamRef.current?.focus();
    cancelled.current = false;
  }, [creating]);
  const cancel = () => {
    cancelled.current = true;
    setCreating(false);
  };
  // One team per click: a double click or a second Enter while the first is on its way adds none.
  const [submitting, setSubmitting] = useState(false);
  const inFlight = useRef(false);
  const [name, setName] = useState("");
  const [icon, setIcon] = useState("");
  const [tags, setTags] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [fields, setFields] = useState<FieldErrors>({});
  const invalid = (field: TeamField) => invalidProps("new-team", fields, field);
  const teams = model.sortedTeams();
  const team = model.selectedTeam ? model.teams.get(model.selectedTeam) : undefined;
  const labels = team ? model.dmLabels(team.id) : new Map<string, string>();

  return (
    <nav class="sidebar" id="sidebar" aria-label="Teams and conversations">
      <div class="sidebar-section">
        <h2 class="sidebar-title">Teams</h2>
        <ul class="team-list">
          {teams.map((t) => {
            const r = model.read(t.id);
            const current = t.id === model.selectedTeam;
            return (
              <li key={t.id}>
                <button
                  type="button"
                  class={current ? "team-button current" : "team-button"}
                  aria-current={current ? "page" : undefined}
                  onClick={() => {
                    model.selectTeam(t.id);
                    props.onNavigate();
                  }}
                >
                  <span class="team-icon" aria-hidden="true">
                    {initials(t.name)}
                  </span>
                  <span class="team-name">{t.name}</span>
                  {r.mentions > 0 && (
                    <span class="badge mention" aria-label={r.mentions === 1 ? "1 mention" : `${r.mentions} mentions`}>
                      @{r.mentions}
                    </span>
                  )}
                  {r.count > 0 && (
                    <span class="badge" aria-label={`${r.count} unread`}>
                      {r.count}
                    </span>
                  )}
                </button>
              </li>
            );
          })}
        </ul>
        {teams.length === 0 && model.teamsLoaded && <p class="muted small">No teams yet: create one, or ask an admin to add you.</p>}
        {creating ? (
          <form
            class="stack new-team"
            onSubmit={async (e) => {
              e.preventDefault();
              if (inFlight.current) return;
              setError(null);
              const problems = checkTeam(name, icon, tags);
              setFields(problems);
              if (Object.keys(problems).length > 0) return;
              inFlight.current = true;
              setSubmitting(true);
              const failed = await model.createTeam(name.trim(), icon.trim(), parseTags(tags).tags).finally(() => {
                inFlight.current = false;
                setSubmitting(false);
              });
              if (failed) setError(failed);
              else {
                setCreating(false);
                setName("");
                setIcon("");
                setTags("");
                props.onNavigate();
              }
            }}
            onKeyDown={(e) => {
              if (e.key === "Escape") {
                e.stopPropagation();
                // Not while the team is being created: the request goes on either way, and closing
                // would only hide its outcome (the new team opens when it lands).
                if (!inFlight.current) cancel();
              }
            }}
          >
            <label>
              Team name
              <input ref={nameRef} value={name} onInput={(e) => setName(e.currentTarget.value)} required maxLength={100} {...invalid("name")} />
            </label>
            <FieldError id="new-team-name" text={fields.name} />
            <label>
              Icon URL (optional)
              <input value={icon} onInput={(e) => setIcon(e.currentTarget.value)} inputMode="url" {...invalid("icon")} />
            </label>
            <FieldError id="new-team-icon" text={fields.icon} />
            <label>
              Tags (optional, comma separated)
              <input value={tags} onInput={(e) => setTags(e.currentTarget.value)} placeholder="backend, on-call" {...invalid("meta_tags")} />
            </label>
            <FieldError id="new-team-meta_tags" text={fields.meta_tags} />
            {error && (
              <p class="error small" role="alert">
                {error}
              </p>
            )}
            <div class="row">
              <button type="submit" class="primary" disabled={submitting}>
                Create team
              </button>
              <button type="button" disabled={submitting} onClick={cancel}>
                Cancel
              </button>
            </div>
          </form>
        ) : (
          <button type="button" ref={newTeamRef} class="ghost new-team-button" onClick={() => setCreating(true)}>
            + New team
          </button>
        )}
      </div>
      {team && (
        <div class="sidebar-section">
          <h2 class="sidebar-title" title={team.name}>
            In {team.name}
          </h2>
          <ul class="conversation-list">
            <li>
              <button
                type="button"
                class={model.conversation === "*" ? "conv-button current" : "conv-button"}
                aria-current={model.conversation === "*" ? "page" : undefined}
                // Not the team button's name again: a screen reader's list of buttons tells them apart.
                aria-label={`Team conversation, #${team.name}`}
                onClick={() => {
                  model.openConversation("*");
                  props.onNavigate();
                }}
              >
                <span aria-hidden="true">#</span> <span class="conv-name">{team.name}</span>
              </button>
            </li>
          </ul>
          <h3 class="sidebar-subtitle">Direct messages</h3>
          <ul class="conversation-list">
            {team.members
              .filter((u) => u !== model.me.id)
              // By name, as people look for them (the server's order is the order they joined).
              .sort((a, b) => byName(model.name(a), model.name(b)) || a.localeCompare(b))
              .map((u) => (
                <DmButton key={u} model={model} team={team.id} user={u} label={labels.get(u) ?? model.name(u)} former={false} onNavigate={props.onNavigate} />
              ))}
            {model.formerDmPartners(team.id).map((u) => (
              <DmButton key={u} model={model} team={team.id} user={u} label={labels.get(u) ?? model.name(u)} former={true} onNavigate={props.onNavigate} />
            ))}
          </ul>
          {team.members.length === 1 && <p class="muted small">Add members in “Members &amp; settings” to message them.</p>}
        </div>
      )}
      <div class="sidebar-foot">
        <button type="button" class="link small" data-opens="account-panel" onClick={props.onOpenAccount}>
          Your account…
        </button>
        {model.canAskToNotify() && (
          // The browser asks only from a click: this is the one place the app asks.
          <button type="button" class="link small" onClick={() => void model.askToNotify()}>
            Turn on notifications
          </button>
        )}
        {confirmEverywhere ? (
          <div
            class="confirm small"
            role="group"
            aria-label="Log out everywhere"
            onKeyDown={(e) => {
              if (e.key !== "Escape") return;
              e.preventDefault(); // the page's own Esc (panels, drawer) waits for the next one
              setConfirmEverywhere(false);
            }}
          >
            <p>Log out on every device and browser, this one included?</p>
            <button type="button" class="danger" onClick={props.onLogoutEverywhere}>
              Log out everywhere
            </button>{" "}
            <button type="button" class="ghost" ref={cancelRef} onClick={() => setConfirmEverywhere(false)}>
              Cancel
            </button>
          </div>
        ) : (
          <button type="button" class="link small" ref={askRef} onClick={() => setConfirmEverywhere(true)}>
            Log out everywhere…
          </button>
        )}
      </div>
    </nav>
  );
}

/** A DM conversation's entry: a member's with their presence, or a former member's, read-only
 * (listed while the page holds DMs with them), and its count of unseen DMs. */
function DmButton(props: { model: ChatModel; team: string; user: string; label: string; former: boolean; onNavigate(): void }) {
  const { model, team, user: u, former } = props;
  const unseen = model.dmUnread(team, u);
  const current = model.conversation === u;
  const status = model.presence.status(team, u);
  const state = former ? "no longer a member" : presenceWords(status);
  const shown = former ? `${props.label} (left)` : props.label;
  return (
    <li>
      <button
        type="button"
        class={`conv-button${current ? " current" : ""}${former ? " former" : ""}`}
        // The whole label on hover: a long email that tells two alike names apart may be cut.
        title={shown}
        aria-current={current ? "page" : undefined}
        // Holds what the button shows, in its order (the name, "(left)", the count): what a
        // voice-control user says to press it is in its name.
        aria-label={`Direct messages with ${shown}${unseen > 0 ? ` ${unseen} new` : ""}, ${state}`}
        onClick={() => {
          model.openConversation(u);
          props.onNavigate();
        }}
      >
        {!former && <PresenceDot status={status} />} <span class="conv-name">{shown}</span>{" "}
        {unseen > 0 && <span class="badge">{unseen}</span>}
      </button>
    </li>
  );
}
