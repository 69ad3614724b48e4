// One message: author, time, body (text or attachment), edited mark, reactions and its actions.
import { useEffect, useRef, useState } from "preact/hooks";
import type { Message, Team } from "../api/types";
import type { ChatModel } from "../app/chat";
import { mayDelete, mayEdit, mayWrite } from "../state/roles";
import { AttachmentView } from "./AttachmentView";
import { clock, fullDate, initials, shortTime } from "./format";
import { stillThere } from "./focus";
import { MessageText } from "./Text";

export const EMOJI = ["👍", "❤️", "😂", "🎉", "👀", "✅"];
interface Props {
  model: ChatModel;
  team: Team;
  message: Message;
  compact: boolean;
  /** A day separator above says the day: the header gives the time alone. */
  dayShown?: boolean;
  inThread: boolean;
  /** Replies from others that came since the conversation was opened (the root's "new"). */
  newReplies?: number;
  onEdit(m: Message): void;
  onReply?(m: Message): void;
}

export function MessageItem(props: Props) {
  const { model, team, message: m, compact } = props;
  const me = model.me.id;
  const [picking, setPicking] = useState(false);
  // Where nothing hovers (a phone), a tap on the message's text shows its actions until a tap
  // elsewhere: a state of its own, not focus, which a tap on a button or link moves unreliably
  // (Chromium's touch takes it off the message before the button's click, WebKit never gives
  // it to a link), hiding the row under the finger or moving the list before the click lands.
  const [chosen, setChosen] = useState(false);
  // Focus follows the picker (its first emoji as it opens, back to its button as it closes) and
  // goes to the message when its actions go (deleted): never to the page, where Tab restarts.
  const self = useRef<HTMLElement>(null);
  const toggle = useRef<HTMLButtonElement>(null);
  const firstEmoji = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    if (!chosen) return;
    const away = (e: Event) => {
      if (!(e.target instanceof Node) || !self.current?.contains(e.target)) setChosen(false);
    };
    document.addEventListener("click", away);
    return () => document.removeEventListener("click", away);
  }, [chosen]);
  useEffect(() => {
    if (picking) firstEmoji.current?.focus();
  }, [picking]);
  const closePicker = () => {
    setPicking(false);
    toggle.current?.focus();
  };
  /** After a delete (once the list has redrawn): focus that fell to the page goes to the message,
   * or, when it left the list (a thread reply), to the panel's box or first button. Focus the
   * user has moved elsewhere meanwhile (typing in the box) stays. */
  const keepFocus = (panel: HTMLElement | null) => {
    const active = document.activeElement;
    if (active !== null && active !== document.body && !(self.current?.contains(active) ?? false)) return;
    stillThere([self.current], panel)?.focus();
  };
  const name = (id: string) => model.name(id);
  const own = m.from === me;
  // The time the actions are judged at: when the message was drawn, or later when a pointer,
  // a tap or the keyboard comes to it (the actions show then), so an edit window that ran out
  // while the page sat still no longer offers Edit.
  const [now, setNow] = useState(Date.now);
  const judgeNow = () => setNow(Date.now());
  const canEdit = mayEdit(team, me, m, now, model.editWindowMs);
  const canDelete = mayDelete(team, me, m, now, model.editWindowMs);
  const writable = mayWrite(team);
  const replies = m.thread?.replies ?? 0;

  const react = (emoji: string) => {
    if (picking) closePicker();
    // Taking back the last of a reaction takes its chip away, and the keyboard's focus with it:
    // focus moves to "Add reaction" first (the message first: its actions show while focus is
    // within it), not to the page once the chip is gone.
    const chip = m.reactions?.find((r) => r.emoji === emoji);
    const chipGoes = chip !== undefined && chip.count === 1 && chip.users.includes(me);
    if (chipGoes && self.current?.contains(document.activeElement)) {
      self.current.focus();
      toggle.current?.focus();
    }
    void model.toggleReaction(m.id, emoji);
  };

  return (
    <article
      ref={self}
      class={`message${compact ? " compact" : ""}${own ? " own" : ""}${m.deleted ? " deleted" : ""}${chosen ? " chosen" : ""}`}
      data-seq={m.seq}
      data-id={m.id}
      // Reachable with the arrow keys from the list (MessageList): focus shows its actions.
      tabIndex={-1}
      onMouseEnter={judgeNow}
      onFocusIn={judgeNow}
      onClick={(e) => {
        // A tap on a link, a button, a picture or a player is theirs: the row stays as it is.
        if (e.target instanceof Element && e.target.closest("a, button, input, textarea, select, label, video, audio, dialog")) return;
        judgeNow();
        setChosen(true);
      }}
      aria-label={`${name(m.from)} at ${clock(m.ts)}`}
      onKeyDown={(e) => {
        if (e.key === "Escape" && picking) {
          e.stopPropagation();
          closePicker();
        }
      }}
    >
      {!compact && (
        <header class="message-head">
          <span class="avatar" aria-hidden="true">
            {initials(name(m.from))}
          </span>
          <strong class="author" title={name(m.from)}>
            {name(m.from)}
          </strong>
          {m.to !== "*" && <span class="tag">direct</span>}
          <time dateTime={m.ts} title={fullDate(m.ts)}>
            {props.dayShown ? shortTime(m.ts) : clock(m.ts)}
          </time>
        </header>
      )}
      {compact && (
        // A message grouped under the one before has no header: its time shows in the gutter on
        // hover or focus, as in the header.
        <time class="gutter-time" dateTime={m.ts} title={fullDate(m.ts)}>
          {shortTime(m.ts)}
        </time>
      )}
      <div class="message-body">
        {m.deleted ? (
          <p class="tombstone">This message was deleted.</p>
        ) : m.type === "text" ? (
          <p class="text" dir="auto">
            <MessageText text={m.data} name={name} me={me} />
            {m.edited_ts && <span class="edited"> (edited)</span>}
          </p>
        ) : (
          <AttachmentView model={model} message={m} />
        )}
      </div>
      {!m.deleted && (m.reactions?.length ?? 0) > 0 && (
        <ul class="reactions" aria-label="Reactions">
          {m.reactions?.map((r) => {
            const mine = r.users.includes(me);
            return (
              <li key={r.emoji}>
                <button
                  type="button"
                  class={mine ? "reaction mine" : "reaction"}
                  aria-pressed={mine}
                  aria-label={`${r.emoji} ${r.count}${mine ? ", including you" : ""}`}
                  title={r.users.map(name).join(", ")}
                  disabled={!writable}
                  onClick={() => react(r.emoji)}
                >
                  {r.emoji} {r.count}
                </button>
              </li>
            );
          })}
        </ul>
      )}
      {!props.inThread && replies > 0 && (
        <button type="button" class="link thread-link" onClick={() => props.onReply?.(m)}>
          {replies} {replies === 1 ? "reply" : "replies"}
          {(props.newReplies ?? 0) > 0 && <span class="new-replies"> · {props.newReplies} new</span>}
        </button>
      )}
      {!m.deleted && writable && (
        <div class="actions" role="group" aria-label="Message actions">
          <button type="button" ref={toggle} aria-label="Add reaction" aria-expanded={picking} onClick={() => (picking ? closePicker() : setPicking(true))}>
            ☺
          </button>
          {!props.inThread && props.onReply && (
            <button
              type="button"
              aria-label="Reply in thread"
              onClick={() => {
                setChosen(false);
                props.onReply?.(m);
              }}
            >
              ↩
            </button>
          )}
          {canEdit && (
            <button
              type="button"
              aria-label="Edit message"
              onClick={() => {
                setChosen(false);
                props.onEdit(m);
              }}
            >
              ✎
            </button>
          )}
          {canDelete && (
            <button
              type="button"
              aria-label="Delete message"
              onClick={() => {
                const panel = self.current?.closest<HTMLElement>("aside, main") ?? null;
                if (confirm("Delete this message for everyone?")) void model.remove(m.id).then(() => setTimeout(() => keepFocus(panel), 0));
              }}
            >
              🗑
            </button>
          )}
        </div>
      )}
      {picking && writable && (
        <div class="picker" role="group" aria-label="Pick a reaction">
          {EMOJI.map((e, i) => (
            <button key={e} ref={i === 0 ? firstEmoji : undefined} type="button" aria-label={`React with ${e}`} onClick={() => react(e)}>
              {e}
            </button>
          ))}
        </div>
      )}
    </article>
  );
}
