// The open conversation: the team's own, or a DM with one member. Messages, typing, uploads in
// flight, the composer; a file dropped anywhere on it is uploaded.
import { useState } from "preact/hooks";
import type { Message, Team } from "../api/types";
import type { ChatModel } from "../app/chat";
import { boxKey } from "../app/outbox";
import { dmClosed, lastEditable } from "../state/roles";
import { dividerBefore } from "../state/unread";
import { Composer, DEACTIVATED } from "./Composer";
import { MessageList } from "./MessageList";
import { NewReplies } from "./NewReplies";
import { PresenceDot } from "./PresenceDot";
import { Typing } from "./Typing";
import { Uploads } from "./Uploads";

interface Props {
  model: ChatModel;
  team: Team;
  onOpenTeamPanel(): void;
}

export function Conversation(props: Props) {
  const { model, team } = props;
  const [editing, setEditing] = useState<Message | null>(null);
  const [dragging, setDragging] = useState(false);
  const conv = model.conversation;
  const timeline = model.timeline(team.id);
  const messages = model.view(team.id, conv);
  const dm = conv !== "*";
  const title = dm ? (model.dmLabels(team.id).get(conv) ?? model.name(conv)) : team.name;
  const closed = dmClosed(team, conv, title);

  const editLast = () => {
    const mine = lastEditable(messages, team, model.me.id, Date.now(), model.editWindowMs);
    if (mine) setEditing(mine);
  };

  return (
    <section
      class={dragging ? "conversation dragging" : "conversation"}
      aria-label={dm ? `Direct messages with ${title}` : `Team ${title}`}
      onDragOver={(e) => {
        if (e.dataTransfer?.types.includes("Files")) {
          e.preventDefault();
          setDragging(true);
        }
      }}
      onDragLeave={() => setDragging(false)}
      onDrop={(e) => {
        e.preventDefault();
        setDragging(false);
        const files = [...(e.dataTransfer?.files ?? [])];
        if (files.length > 0) void model.sendFiles(files);
      }}
    >
      <header class="conversation-head">
        <h2>
          {dm ? (
            <>
              {/* Not for someone who left: nothing tells this team's page their presence any more. */}
              {!closed && <PresenceDot status={model.presence.status(team.id, conv)} />} <span class="title-text">{title}</span>
            </>
          ) : (
            <>
              <span aria-hidden="true">#</span> <span class="title-text">{title}</span>
            </>
          )}
        </h2>
        {!dm && team.meta_tags.length > 0 && (
          <ul class="tags" aria-label="Tags">
            {team.meta_tags.map((t) => (
              <li key={t}>{t}</li>
            ))}
          </ul>
        )}
        <button type="button" class="ghost" data-opens="team-panel" onClick={props.onOpenTeamPanel}>
          Members &amp; settings
        </button>
      </header>
      {!team.active && <p class="banner warn">This team is deactivated: you can read it, not write to it.</p>}
      {team.active && closed && <p class="banner warn">{closed}: you can read your messages, not send new ones.</p>}
      <NewReplies model={model} team={team.id} />
      {!timeline.loaded ? (
        <p class="loading muted" role="status">
          Loading messages…
        </p>
      ) : (
        <MessageList
          key={`${team.id}/${conv}`}
          model={model}
          team={team}
          messages={messages}
          pending={model.pendingIn(team.id, conv, null)}
          dividerBefore={dividerBefore(messages, model.dividerAfter, model.me.id)}
          start={model.listStart(team.id)}
          inThread={false}
          label={`Messages in ${title}`}
          onEdit={setEditing}
          onReply={(m) => model.openThread(m.id)}
          loadOlder={() => model.loadOlder()}
          hasOlder={timeline.hasOlder}
          seen={(seq) => model.markSeen(seq, true)}
        />
      )}
      <Typing model={model} thread={null} />
      <Uploads model={model} channel={team.id} to={conv} threadId={null} />
      <Composer
        model={model}
        label={dm ? `Message ${title}` : `Message #${team.name}`}
        threadId={null}
        editing={editing}
        disabled={team.active ? closed : DEACTIVATED}
        onEditLast={editLast}
        onEditDone={() => setEditing(null)}
        unsentKey={boxKey(team.id, conv, null)}
      />
    </section>
  );
}
