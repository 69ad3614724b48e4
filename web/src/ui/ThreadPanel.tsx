// A thread in the side panel: its root, the replies, and a composer that replies.
import { useState } from "preact/hooks";
import type { Message, Team } from "../api/types";
import type { ChatModel } from "../app/chat";
import { boxKey } from "../app/outbox";
import { dmClosed, lastEditable } from "../state/roles";
import { conversationOf } from "../state/typing";
import { Composer, DEACTIVATED, NOT_LOADED } from "./Composer";
import { MessageItem } from "./MessageItem";
import { MessageList } from "./MessageList";
import { Typing } from "./Typing";
import { Uploads } from "./Uploads";

export function ThreadPanel(props: { model: ChatModel; team: Team; root: string; onClose(): void }) {
  const { model, team, root } = props;
  const [editing, setEditing] = useState<Message | null>(null);
  const message = model.timeline(team.id).get(root);
  const replies = model.threadView(team.id, root);
  const to = message ? conversationOf(message.to, message.from, model.me.id) : model.conversation;
  // A thread under a DM whose other person left the team takes no more replies than the DM does.
  // ("*" is the team's own conversation: no one to look up.)
  const peer = to === "*" ? "" : model.name(to);
  const closed = dmClosed(team, to, peer);
  return (
    <aside class="panel thread" aria-label="Thread">
      <header class="panel-head">
        {/* Which conversation it is in: a panel over the list on a phone hides that. */}
        <h2>
          Thread <span class="muted small">{to === "*" ? `in #${team.name}` : `with ${peer}`}</span>
        </h2>
        <button type="button" class="icon" aria-label="Close thread" onClick={props.onClose}>
          ✕
        </button>
      </header>
      {message ? (
        <div class="thread-root">
          <MessageItem model={model} team={team} message={message} compact={false} inThread={true} onEdit={setEditing} />
        </div>
      ) : (
        <p class="muted">The first message of this thread is not loaded.</p>
      )}
      <MessageList
        key={root}
        model={model}
        team={team}
        messages={replies}
        pending={model.pendingIn(team.id, model.conversation, root)}
        dividerBefore={null}
        inThread={true}
        label="Replies"
        onEdit={setEditing}
        hasOlder={false}
        seen={(seq) => model.markSeen(seq)}
      />
      <Typing model={model} thread={root} />
      <Uploads model={model} channel={team.id} to={message ? to : "*"} threadId={root} />
      <Composer
        model={model}
        label="Reply in thread"
        threadId={root}
        editing={editing}
        disabled={
          !team.active
            ? DEACTIVATED
            : !message
              ? NOT_LOADED
              : message.deleted
                ? "The thread's first message was deleted: no more replies"
                : closed
        }
        onEditLast={() => {
          const mine = lastEditable(replies, team, model.me.id, Date.now(), model.editWindowMs);
          if (mine) setEditing(mine);
        }}
        onEditDone={() => setEditing(null)}
        unsentKey={boxKey(team.id, model.conversation, root)}
        focusOnOpen={true}
      />
    </aside>
  );
}
