// The message box: Enter sends, Shift+Enter is a new line, Up (in an empty box) edits the last
// own message, Esc cancels an edit. Files come from the attach button (or a drop on the view).
import { useEffect, useRef, useState } from "preact/hooks";
import type { Message } from "../api/types";
import type { ChatModel } from "../app/chat";
import { textCounter, textProblem } from "../text/limits";
import { decodeMentions, encodeMentions, insertMention, mentionQuery, type Suggestion, suggestMentions } from "../text/mentions";

/** What the box says in a deactivated team. */
export const DEACTIVATED = "This team is deactivated: read only";
/** What a thread's box says while its first message loads: closed for now, not for good. */
export const NOT_LOADED = "The thread's first message is not loaded";

interface Props {
  model: ChatModel;
  label: string;
  threadId: string | null;
  editing: Message | null;
  /** Why nothing can be written here (said in the box), or null when it is open. */
  disabled: string | null;
  onEditLast(): void;
  onEditDone(): void;
  /** This box (`boxKey`): what is typed and not sent waits under it while another is on screen. */
  unsentKey: string;
  /** Take focus on opening (a thread the user just opened), not only when focus is nowhere. */
  focusOnOpen?: boolean;
}

export function Composer(props: Props) {
  const { model } = props;
  const [text, setText] = useState(() => model.openBox(props.unsentKey));
  // The box's own text (never an edit's), kept when the box goes (another conversation opened):
  // what was sent or cleared leaves nothing behind, even if an edit was open at the time. An edit
  // started from a message's menu while something was typed gives it back when it ends.
  const own = useRef(text);
  if (!props.editing) own.current = text;
  // The message being edited as of the last render: an answer that comes back after the edit
  // ended otherwise (its message deleted meanwhile, Esc) has nothing left to do.
  const editingNow = useRef<string | null>(null);
  editingNow.current = props.editing?.id ?? null;
  // Kept when the text changes otherwise than by typing (sent, a mention picked, a refused text
  // back, discarded), and when the box goes; typing keeps it at once (onInput): a reload
  // unmounts nothing.
  useEffect(() => {
    if (!props.editing) model.keepUnsent(props.unsentKey, text);
  }, [text]);
  useEffect(() => () => model.closeBox(props.unsentKey, own.current), []);
  const [caret, setCaret] = useState(0);
  const [active, setActive] = useState(0);
  /** The "@" of a picker closed (Esc, or a member picked) and what followed it then: it stays
   * closed while typing goes on after that (names may hold spaces, so "@Ada " still matches and
   * Enter would pick again instead of sending), and opens again once that text is changed. */
  const [dismissed, setDismissed] = useState<{ start: number; query: string } | null>(null);
  const area = useRef<HTMLTextAreaElement>(null);
  const file = useRef<HTMLInputElement>(null);
  const members = () => {
    const team = model.selectedTeam ? model.teams.get(model.selectedTeam) : undefined;
    return (team?.members ?? []).map((id) => {
      const user = model.users.get(id);
      return { id, name: user?.name ?? "", email: user?.email ?? "" };
    });
  };

  // Where focus went nowhere (the login form or a closed panel went away), the conversation's box
  // takes it, so one can type at once; never on a touch screen, where it would open the keyboard.
  useEffect(() => {
    const el = area.current;
    const idle = document.activeElement === null || document.activeElement === document.body;
    const wanted = props.focusOnOpen === true || (idle && props.threadId === null);
    if (el && wanted && !el.disabled && window.matchMedia("(hover: hover)").matches) el.focus();
  }, []);

  useEffect(() => {
    if (props.editing) {
      setText(decodeMentions(props.editing.data, members()));
      area.current?.focus();
    }
  }, [props.editing?.id]);

  // An edit in progress when the box is disabled (the team was deactivated meanwhile) could be
  // neither saved nor cancelled with Esc in a disabled box: it is dropped.
  useEffect(() => {
    if (props.disabled !== null && props.editing) {
      setText(own.current);
      props.onEditDone();
    }
  }, [props.disabled, props.editing?.id]);

  // A text refused by the server comes back here to be edited.
  const draft = model.draft;
  useEffect(() => {
    if (!draft || draft.box !== props.unsentKey || props.editing) return;
    model.takeDraft(draft.key);
    setText(decodeMentions(draft.text, members()));
    area.current?.focus();
  }, [draft?.key]);

  // Checked as the server will: the limit counts the stored form, mentions as `<@user_id>`.
  const body = encodeMentions(text, members());
  const problem = text.trim() ? textProblem(body) : null;
  const counter = textCounter(body);

  const found = props.disabled !== null ? null : mentionQuery(text, caret);
  const closed = found !== null && dismissed !== null && found.start === dismissed.start && found.query.startsWith(dismissed.query);
  const suggestions = found && !closed ? suggestMentions(members(), found.query, model.me.id) : [];
  // That "@" is gone or its text changed (sent, erased, another "@" typed after it): open again.
  useEffect(() => {
    if (dismissed !== null && !closed) setDismissed(null);
  }, [closed, dismissed]);
  const current = Math.min(active, suggestions.length - 1);
  const pick = (s: Suggestion) => {
    if (!found) return;
    const next = insertMention(text, found.start, caret, s.label);
    // Into the box at once, caret included: a key typed before the next render (a fast typist
    // right after Enter) must land after the mention, not where the caret was before it.
    const el = area.current;
    if (el) {
      el.value = next.text;
      el.setSelectionRange(next.caret, next.caret);
      el.focus();
    }
    setText(next.text);
    setCaret(next.caret);
    setActive(0);
    setDismissed({ start: found.start, query: next.text.slice(found.start + 1, next.caret) });
  };
  const track = (el: HTMLTextAreaElement) => setCaret(el.selectionStart ?? el.value.length);

  // Closed while something was typed (the thread's root deleted, the team deactivated): the text
  // stays, read-only so it can still be selected and copied, and the reason shows above it.
  const closedOnText = props.disabled !== null && props.disabled !== NOT_LOADED && text !== "" && !props.editing;
  // An edit emptied: Save cannot take it (the server refuses an empty text); say what can.
  const editingEmpty = props.editing !== null && props.disabled === null && !text.trim();
  const form = useRef<HTMLFormElement>(null);

  // The message can no longer be edited: the box leaves edit mode and keeps what was typed, to
  // send as a new message or clear, after the box's own text if it had some.
  const keepEditAsText = () => {
    const kept = own.current.trim() ? `${own.current}\n${text}` : text;
    own.current = kept;
    setText(kept);
    props.onEditDone();
  };

  // Deleted while it was being edited (an admin, another tab): Enter could only fail again.
  const editedGone = props.editing !== null && model.isDeleted(props.editing.id);
  useEffect(() => {
    if (!editedGone) return;
    keepEditAsText();
    model.editGone();
  }, [editedGone]);

  const submit = async () => {
    if (props.disabled !== null) return;
    if (!text.trim() || problem) {
      area.current?.focus();
      return;
    }
    if (props.editing) {
      // Saved as it is (or with blanks added at its ends, which show nothing): nothing to send,
      // and no "(edited)" for a change that changed nothing.
      const id = props.editing.id;
      const outcome = body.trim() === props.editing.data.trim() ? "saved" : await model.edit(id, body);
      if (editingNow.current !== id) return;
      if (outcome === "saved") {
        setText(own.current);
        props.onEditDone();
      } else if (outcome === "refused") {
        keepEditAsText();
      }
      return;
    }
    if (model.sendText(body, props.threadId) === null) setText("");
  };

  const onKeyDown = (e: KeyboardEvent) => {
    const chosen = suggestions[current];
    if (chosen && !e.isComposing && ["ArrowDown", "ArrowUp", "Enter", "Tab", "Escape"].includes(e.key)) {
      e.preventDefault();
      e.stopPropagation();
      if (e.key === "ArrowDown") setActive((current + 1) % suggestions.length);
      else if (e.key === "ArrowUp") setActive((current - 1 + suggestions.length) % suggestions.length);
      else if (e.key === "Escape") setDismissed(found ? { start: found.start, query: found.query } : null);
      else pick(chosen);
      return;
    }
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      void submit();
    } else if (e.key === "ArrowUp" && text === "" && !props.editing) {
      e.preventDefault();
      props.onEditLast();
    } else if (e.key === "Escape" && props.editing) {
      e.preventDefault();
      e.stopPropagation();
      setText(own.current);
      props.onEditDone();
    }
  };

  const inputId = `composer-${props.threadId ?? "main"}`;
  return (
    <form
      ref={form}
      // Focus lands here when "Discard it" goes with the text: not on the page.
      tabIndex={-1}
      class={props.editing ? "composer editing" : "composer"}
      onSubmit={(e) => {
        e.preventDefault();
        void submit();
      }}
    >
      {props.editing && (
        <p class="editing-note">
          Editing your message — Enter saves, Esc cancels.
        </p>
      )}
      <label class="visually-hidden" for={inputId}>
        {props.editing ? "Edit message" : props.label}
      </label>
      {suggestions.length > 0 && (
        <ul class="mention-picker" role="listbox" id={`${inputId}-mentions`} aria-label="Mention a member">
          {suggestions.map((m, i) => (
            <li
              key={m.id}
              id={`${inputId}-mention-${i}`}
              role="option"
              aria-selected={i === current}
              class={i === current ? "active" : undefined}
              // mousedown, not click: the box keeps its focus and caret.
              onMouseDown={(e) => {
                e.preventDefault();
                pick(m);
              }}
            >
              <strong>{m.name}</strong>
              {m.label !== m.name && <span class="muted"> @{m.label}</span>}
              {m.email && <span class="muted small"> {m.email}</span>}
            </li>
          ))}
        </ul>
      )}
      {closedOnText ? (
        <p class="composer-status error" id={`${inputId}-status`} role="alert">
          {props.disabled}. What you typed was not sent.{" "}
          <button
            type="button"
            class="link"
            onClick={() => {
              setText("");
              form.current?.focus();
            }}
          >
            Discard it
          </button>
        </p>
      ) : problem ? (
        <p class="composer-status error" id={`${inputId}-status`} role="alert">
          {problem}
        </p>
      ) : editingEmpty && props.editing ? (
        <p class="composer-status" id={`${inputId}-status`} role="status">
          An edit cannot leave the message empty: Esc keeps it as it was, or{" "}
          <button
            type="button"
            class="link"
            onClick={() => {
              const editing = props.editing;
              if (!editing || !confirm("Delete this message for everyone?")) return;
              void model.remove(editing.id).then(() => {
                setText(own.current);
                props.onEditDone();
              });
            }}
          >
            delete it
          </button>
          .
        </p>
      ) : (
        counter && (
          <p class="composer-status muted" id={`${inputId}-status`}>
            {counter} characters
          </p>
        )
      )}
      <div class="composer-row">
        <input
          ref={file}
          id={`${inputId}-file`}
          type="file"
          multiple
          class="visually-hidden"
          // The visible button opens it: one "Attach a file" for screen readers, not two.
          aria-hidden="true"
          tabIndex={-1}
          onChange={(e) => {
            const input = e.currentTarget;
            const picked = [...(input.files ?? [])];
            if (picked.length > 0) void model.sendFiles(picked, props.threadId);
            input.value = "";
          }}
        />
        <button type="button" class="icon" aria-label="Attach a file" disabled={props.disabled !== null} onClick={() => file.current?.click()}>
          📎
        </button>
        <textarea
          ref={area}
          id={inputId}
          rows={1}
          dir="auto"
          value={text}
          disabled={props.disabled !== null && !closedOnText}
          readOnly={closedOnText}
          placeholder={props.disabled ?? props.label}
          aria-invalid={problem ? true : undefined}
          aria-describedby={closedOnText || problem || editingEmpty || counter ? `${inputId}-status` : undefined}
          aria-autocomplete="list"
          aria-controls={suggestions.length > 0 ? `${inputId}-mentions` : undefined}
          aria-activedescendant={suggestions.length > 0 ? `${inputId}-mention-${current}` : undefined}
          onInput={(e) => {
            setText(e.currentTarget.value);
            track(e.currentTarget);
            if (!props.editing) {
              model.typed(props.threadId);
              // Kept at once, not after the next paint: a reload right after typing keeps it too.
              model.keepUnsent(props.unsentKey, e.currentTarget.value);
            }
          }}
          onKeyUp={(e) => {
            if (e.key.startsWith("Arrow") || e.key === "Home" || e.key === "End") track(e.currentTarget);
          }}
          onClick={(e) => track(e.currentTarget)}
          onKeyDown={onKeyDown}
          onPaste={(e) => {
            // A picture (a screenshot) pasted goes as an attachment. Clipboards that carry text
            // with it (a copied document) paste the text, as any text box does.
            const data = e.clipboardData;
            const files = [...(data?.files ?? [])];
            if (files.length === 0 || props.editing || props.disabled !== null || data?.types.includes("text/plain")) return;
            e.preventDefault();
            void model.sendFiles(files, props.threadId);
          }}
        />
        <button type="submit" class="primary" disabled={props.disabled !== null || !text.trim() || problem !== null}>
          {props.editing ? "Save" : "Send"}
        </button>
      </div>
    </form>
  );
}
