// A team's settings and members: rename, icon, tags; add by email; elect and dismiss admins,
// transfer super_admin, remove; deactivate and reactivate; leave. Buttons follow the role; the server's refusal is shown
// as it comes, plainly, whatever the buttons said.
import { useEffect, useState } from "preact/hooks";
import type { Team } from "../api/types";
import type { ChatModel } from "../app/chat";
import { allowed, roleOf } from "../state/roles";
import { checkTeam, type FieldErrors, parseTags, type TeamField } from "../text/teamform";
import { FieldError, invalidProps } from "./FieldError";
import { PresenceDot } from "./PresenceDot";

const ROLE_NAMES = { super_admin: "super admin", admin: "admin", user: "member" } as const;

export function TeamPanel(props: { model: ChatModel; team: Team; onClose(): void }) {
  const { model, team } = props;
  const me = model.me.id;
  const may = allowed(team, me);
  const [name, setName] = useState(team.name);
  const [icon, setIcon] = useState(team.icon);
  const [tags, setTags] = useState(team.meta_tags.join(", "));
  const [email, setEmail] = useState("");
  const [result, setResult] = useState<{ ok: boolean; text: string } | null>(null);
  const [fields, setFields] = useState<FieldErrors>({});
  const invalid = (field: TeamField) => invalidProps("team-settings", fields, field);

  useEffect(() => {
    void model.refreshTeam(team.id);
  }, [team.id]);

  useEffect(() => {
    setName(team.name);
    setIcon(team.icon);
    setTags(team.meta_tags.join(", "));
    setResult(null);
    setFields({});
  }, [team.id]);

  const run = async (what: string, call: Promise<string | null>, failing = "") => {
    setResult(null);
    const error = await call;
    setResult(error ? { ok: false, text: failing + error } : { ok: true, text: what });
  };

  const members = [...team.members].sort((a, b) => {
    const rank = (u: string) => ["super_admin", "admin", "user"].indexOf(roleOf(team, u));
    return rank(a) - rank(b) || model.name(a).localeCompare(model.name(b));
  });

  return (
    <aside class="panel team" aria-label={`Team ${team.name}: members and settings`}>
      <header class="panel-head">
        <h2>{team.name}</h2>
        <button type="button" class="icon" aria-label="Close members and settings" onClick={props.onClose}>
          ✕
        </button>
      </header>
      <div class="panel-body">
        {result && (
          <p class={result.ok ? "result ok" : "result error"} role={result.ok ? "status" : "alert"}>
            {result.text}
          </p>
        )}
        {may.editTeam && (
          <form
            class="stack"
            onSubmit={(e) => {
              e.preventDefault();
              const problems = checkTeam(name, icon, tags);
              setFields(problems);
              if (Object.keys(problems).length > 0) return;
              void run("Team saved.", model.updateTeam(team.id, { name: name.trim(), icon: icon.trim(), meta_tags: parseTags(tags).tags }));
            }}
          >
            <h3>Settings</h3>
            <label>
              Name
              <input value={name} onInput={(e) => setName(e.currentTarget.value)} required maxLength={100} {...invalid("name")} />
            </label>
            <FieldError id="team-settings-name" text={fields.name} />
            <label>
              Icon URL
              <input value={icon} onInput={(e) => setIcon(e.currentTarget.value)} placeholder="https://…" inputMode="url" {...invalid("icon")} />
            </label>
            <FieldError id="team-settings-icon" text={fields.icon} />
            <label>
              Tags (comma separated)
              <input value={tags} onInput={(e) => setTags(e.currentTarget.value)} placeholder="backend, on-call" {...invalid("meta_tags")} />
            </label>
            <FieldError id="team-settings-meta_tags" text={fields.meta_tags} />
            <button type="submit">Save settings</button>
          </form>
        )}
        {may.addMembers && (
          <form
            class="stack"
            onSubmit={(e) => {
              e.preventDefault();
              const address = email.trim();
              void run(`${address} added.`, model.addMember(team.id, address), `Could not add ${address}: `).then(() => setEmail(""));
            }}
          >
            <h3>Add a member</h3>
            <label>
              Email address
              <input type="email" value={email} onInput={(e) => setEmail(e.currentTarget.value)} required autoComplete="off" />
            </label>
            <button type="submit">Add member</button>
          </form>
        )}
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
                    <button type="button" class="small" onClick={() => model.openConversation(u)}>
                      Message
                    </button>
                    {may.electDismiss && role === "user" && (
                      <button type="button" class="small" onClick={() => void run(`${who} is now an admin.`, model.setAdmin(team.id, u, true))}>
                        Make admin
                      </button>
                    )}
                    {may.electDismiss && role === "admin" && (
                      <button type="button" class="small" onClick={() => void run(`${who} is no longer an admin.`, model.setAdmin(team.id, u, false))}>
                        Dismiss admin
                      </button>
                    )}
                    {may.transfer && (
                      <button
                        type="button"
                        class="small"
                        onClick={() => {
                          if (confirm(`Make ${who} the super admin? You stay an admin.`)) void run(`${who} is now the super admin.`, model.transfer(team.id, u));
                        }}
                      >
                        Make super admin
                      </button>
                    )}
                    {may.remove(u) && (
                      <button
                        type="button"
                        class="small danger"
                        onClick={() => {
                          if (confirm(`Remove ${who} from ${team.name}?`)) void run(`${who} removed.`, model.removeMember(team.id, u));
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
                      void run(`${team.name} is deactivated.`, model.setTeamActive(team.id, false));
                    }
                  }}
                >
                  Deactivate team
                </button>
              </>
            ) : (
              <>
                <p class="muted small">This team is read-only for everyone.</p>
                <button type="button" onClick={() => void run(`${team.name} is active again.`, model.setTeamActive(team.id, true))}>
                  Reactivate team
                </button>
              </>
            )}
          </section>
        )}
        {team.super_admin === model.me.id ? (
          // The server refuses it until the role is handed on: say so instead of offering it.
          <p class="muted small">To leave this team, first make another member its super admin.</p>
        ) : (
          <button
            type="button"
            class="danger"
            onClick={() => {
              if (confirm(`Leave ${team.name}?`)) void run("You left the team.", model.leave(team.id));
            }}
          >
            Leave team
          </button>
        )}
      </div>
    </aside>
  );
}
