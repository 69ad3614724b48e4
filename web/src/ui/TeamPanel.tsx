// A team's settings and members: rename, icon, tags; add by email; elect and dismiss admins,
// transfer super_admin, remove; deactivate and reactivate; leave. Buttons follow the role; the server's refusal is shown
// as it comes, plainly, whatever the buttons said, next to the action that met it.
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import type { Team } from "../api/types";
import type { ChatModel } from "../app/chat";
import { allowed, roleOf } from "../state/roles";
import {
  addedMemberName,
  changedSettings,
  checkTeam,
  type FieldErrors,
  leaveChoice,
  settingsOf,
  type TeamField,
  type TeamSettings,
} from "../text/teamform";
import { FieldError, invalidProps } from "./FieldError";
import { PresenceDot } from "./PresenceDot";
import { byName } from "../text/order";

const ROLE_NAMES = { super_admin: "super admin", admin: "admin", user: "member" } as const;

/** Where an action is: its outcome is shown there, not at the top of a panel scrolled away from it. */
type Section = "settings" | "add" | "members" | "status" | "leave";

export function TeamPanel(props: { model: ChatModel; team: Team; takeFocus: boolean; onClose(): void }) {
  const { model, team } = props;
  const me = model.me.id;
  const may = allowed(team, me);
  const [initial, setInitial] = useState<TeamSettings>(() => settingsOf(team));
  const [name, setName] = useState(initial.name);
  const [icon, setIcon] = useState(initial.icon);
  const [tags, setTags] = useState(initial.tags);
  const [email, setEmail] = useState("");
  const [adding, setAdding] = useState(false);
  const [result, setResult] = useState<{ where: Section; ok: boolean; text: string } | null>(null);
  const [fields, setFields] = useState<FieldErrors>({});
  const resultView = useRef<HTMLParagraphElement>(null);
  // Focus goes into the panel as it opens, so the keyboard and a screen reader are where it is.
  const heading = useRef<HTMLHeadingElement>(null);
  useLayoutEffect(() => {
    // Only when the user opened it: not when it follows a team switch or a notification's click,
    // which must leave focus where it is, or to the conversation's box.
    if (props.takeFocus) heading.current?.focus();
  }, []);
  const invalid = (field: TeamField) => invalidProps("team-settings", fields, field);
  const edited: TeamSettings = { name, icon, tags };

  // Someone typed in the settings since they were last filled: a change from elsewhere then waits.
  // A ref set as the key lands, not the render's state, which an effect may see a render late.
  const touched = useRef(false);
  // The settings of the last save the server refused.
  const refused = useRef<TeamSettings | null>(null);
  const fill = (settings: TeamSettings) => {
    touched.current = false;
    setInitial(settings);
    setName(settings.name);
    setIcon(settings.icon);
    setTags(settings.tags);
  };

  useEffect(() => {
    void model.refreshTeam(team.id);
  }, [team.id]);

  // Another admin's change (or the fresher read on opening) shows in a form nobody has typed in;
  // a touched one keeps what was typed, and only its changes are sent.
  const opened = useRef(false);
  useEffect(() => {
    // On opening the form already starts from the team.
    if (!opened.current) {
      opened.current = true;
      return;
    }
    if (!touched.current) fill(settingsOf(team));
  }, [team.name, team.icon, team.meta_tags.join("\n")]);

  // Rendered where its action is, the outcome may still be below the fold of a long member list.
  useEffect(() => {
    resultView.current?.scrollIntoView({ block: "nearest" });
  }, [result]);

  /** An action's outcome beside it; `what` null when success is said elsewhere (leaving: by the shell, the panel goes). */
  const run = async (where: Section, what: string | (() => string) | null, call: Promise<string | null>, failing = ""): Promise<boolean> => {
    setResult(null);
    const error = await call;
    if (error) setResult({ where, ok: false, text: failing + error });
    else if (what !== null) setResult({ where, ok: true, text: typeof what === "string" ? what : what() });
    return !error;
  };

  // A refusal can take its own section away (it said the role was gone, and the team was read
  // again): then it shows at the top instead of vanishing with it.
  const shown: Record<Section, boolean> = {
    settings: may.editTeam,
    add: may.addMembers,
    members: true,
    status: may.deactivate,
    leave: true,
  };
  const resultLine = result && (
    <p ref={resultView} class={result.ok ? "result ok" : "result error"} role={result.ok ? "status" : "alert"}>
      {result.text}
    </p>
  );
  const outcome = (where: Section) => result?.where === where && resultLine;

  const choice = leaveChoice(team, me);

  const members = [...team.members].sort((a, b) => {
    const rank = (u: string) => ["super_admin", "admin", "user"].indexOf(roleOf(team, u));
    return rank(a) - rank(b) || byName(model.name(a), model.name(b));
  });

  return (
    <aside
      class="panel team"
      aria-label={`Team ${team.name}: members and settings`}
      onKeyDown={(e) => {
        // Esc closes the panel (Shell), but not over settings typed and not saved without asking
        // (settings the server just refused are no news: the refusal said they were not saved).
        const same = (a: TeamSettings | null) => a !== null && name === a.name && icon === a.icon && tags === a.tags;
        const unsaved = !same(initial) && !same(refused.current);
        if (e.key === "Escape" && unsaved && !confirm("Discard your changes to the team's name, icon and tags?")) e.preventDefault();
      }}
    >
      <header class="panel-head">
        <h2 ref={heading} tabIndex={-1}>
          {team.name}
        </h2>
        <button type="button" class="icon" aria-label="Close members and settings" onClick={props.onClose}>
          ✕
        </button>
      </header>
      <div class="panel-body">
        {result && !shown[result.where] && resultLine}
        {may.editTeam && (
          <form
            class="stack"
            onSubmit={(e) => {
              e.preventDefault();
              const problems = checkTeam(name, icon, tags);
              setFields(problems);
              if (Object.keys(problems).length > 0) {
                if (result?.where === "settings") setResult(null);
                return;
              }
              const patch = changedSettings(initial, edited);
              if (!patch) {
                setResult({ where: "settings", ok: true, text: "Nothing to save: no setting was changed." });
                return;
              }
              const sent = edited;
              void run("settings", "Team saved.", model.updateTeam(team.id, patch)).then((ok) => {
                // From the team as saved: it has what other admins changed meanwhile too.
                if (ok) fill(settingsOf(model.teams.get(team.id) ?? team));
                else refused.current = sent;
              });
            }}
          >
            <h3>Settings</h3>
            <label>
              Name
              <input value={name} onInput={(e) => {
                  touched.current = true;
                  setName(e.currentTarget.value);
                }} required maxLength={100} {...invalid("name")} />
            </label>
            <FieldError id="team-settings-name" text={fields.name} />
            <label>
              Icon URL
              <input value={icon} onInput={(e) => {
                  touched.current = true;
                  setIcon(e.currentTarget.value);
                }} placeholder="https://…" inputMode="url" {...invalid("icon")} />
            </label>
            <FieldError id="team-settings-icon" text={fields.icon} />
            <label>
              Tags (comma separated)
              <input value={tags} onInput={(e) => {
                  touched.current = true;
                  setTags(e.currentTarget.value);
                }} placeholder="backend, on-call" {...invalid("meta_tags")} />
            </label>
            <FieldError id="team-settings-meta_tags" text={fields.meta_tags} />
            <button type="submit">Save settings</button>
            {outcome("settings")}
          </form>
        )}
        {may.addMembers && (
          <form
            class="stack"
            onSubmit={(e) => {
              e.preventDefault();
              if (adding) return;
              const address = email.trim();
              setAdding(true);
              const added = () => `${addedMemberName(address, model.teams.get(team.id)?.members ?? [], model.users)} added.`;
              void run("add", added, model.addMember(team.id, address), `Could not add ${address}: `).then((ok) => {
                setAdding(false);
                // A failed address stays to be corrected; one typed meanwhile is not wiped either.
                if (ok) setEmail((now) => (now.trim() === address ? "" : now));
              });
            }}
          >
            <h3>Add a member</h3>
            <label>
              Email address
              <input
                type="email"
                value={email}
                onInput={(e) => {
                  setEmail(e.currentTarget.value);
                  if (result?.where === "add" && !result.ok) setResult(null);
                }}
                required
                autoComplete="off"
              />
            </label>
            <button type="submit" disabled={adding}>
              Add member
            </button>
            {outcome("add")}
          </form>
        )}
        {!may.editTeam && !may.addMembers && <p class="muted">Only the team's admins can add members or change its settings.</p>}
        <h3>Members ({team.members.length})</h3>
        <ul class="members">
          {members.map((u) => {
            const role = roleOf(team, u);
            const who = model.name(u);
            return (
              <li key={u}>
                <div class="member-line">
                  <PresenceDot status={model.presence.status(team.id, u)} />
                  <span class="member-name">
                    {who}
                    {u === me && " (you)"}
                  </span>
                  <span class="role">{ROLE_NAMES[role]}</span>
                </div>
                {u !== me && (
                  <div class="member-actions">
                    <button type="button" class="small" aria-label={`Message ${who}`} onClick={() => model.openConversation(u)}>
                      Message
                    </button>
                    {may.electDismiss && role === "user" && (
                      <button type="button" class="small" aria-label={`Make admin: ${who}`} onClick={() => void run("members", `${who} is now an admin.`, model.setAdmin(team.id, u, true))}>
                        Make admin
                      </button>
                    )}
                    {may.electDismiss && role === "admin" && (
                      <button type="button" class="small" aria-label={`Dismiss admin: ${who}`} onClick={() => void run("members", `${who} is no longer an admin.`, model.setAdmin(team.id, u, false))}>
                        Dismiss admin
                      </button>
                    )}
                    {may.transfer && (
                      <button
                        type="button"
                        class="small"
                        aria-label={`Make super admin: ${who}`}
                        onClick={() => {
                          if (confirm(`Make ${who} the super admin? You stay an admin.`)) void run("members", `${who} is now the super admin.`, model.transfer(team.id, u));
                        }}
                      >
                        Make super admin
                      </button>
                    )}
                    {may.remove(u) && (
                      <button
                        type="button"
                        class="small danger"
                        aria-label={`Remove ${who}`}
                        onClick={() => {
                          if (confirm(`Remove ${who} from ${team.name}?`)) void run("members", `${who} removed.`, model.removeMember(team.id, u));
                        }}
                      >
                        Remove
                      </button>
                    )}
                  </div>
                )}
              </li>
            );
          })}
        </ul>
        {outcome("members")}
        {may.deactivate && (
          <section class="stack" aria-labelledby="team-status">
            <h3 id="team-status">Status</h3>
            {team.active ? (
              <>
                <p class="muted small">Deactivating keeps every message readable; nobody can write until you reactivate it.</p>
                <button
                  type="button"
                  class="danger"
                  onClick={() => {
                    if (confirm(`Deactivate ${team.name}? Members keep reading it; nobody can write to it.`)) {
                      void run("status", `${team.name} is deactivated.`, model.setTeamActive(team.id, false));
                    }
                  }}
                >
                  Deactivate team
                </button>
              </>
            ) : (
              <>
                <p class="muted small">This team is read-only for everyone.</p>
                <button type="button" onClick={() => void run("status", `${team.name} is active again.`, model.setTeamActive(team.id, true))}>
                  Reactivate team
                </button>
              </>
            )}
            {outcome("status")}
          </section>
        )}
        <section class="stack" aria-label="Leave the team">
          {choice === "transfer-first" && (
            // The server refuses it until the role is handed on: say so instead of offering it.
            <p class="muted small">To leave this team, first make another member its super admin.</p>
          )}
          {choice === "delete" && (
            <>
              <p class="muted small">You are its only member: leaving deletes the team.</p>
              <button
                type="button"
                class="danger"
                onClick={() => {
                  if (confirm(`Leave ${team.name} and delete it? You are its only member, so leaving deletes the team and its message history for good.`)) {
                    void run("leave", null, model.leave(team.id));
                  }
                }}
              >
                Leave and delete team
              </button>
            </>
          )}
          {choice === "leave" && (
            <button
              type="button"
              class="danger"
              onClick={() => {
                if (confirm(`Leave ${team.name}?`)) void run("leave", null, model.leave(team.id));
              }}
            >
              Leave team
            </button>
          )}
          {outcome("leave")}
        </section>
      </div>
    </aside>
  );
}
