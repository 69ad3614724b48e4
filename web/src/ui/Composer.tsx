// The message box: Enter sends, Shift+Enter is a new line, Up (in an empty box) edits the last
// own message, Esc cancels an edit. Files come from the attach button (or a drop on the view).
import { useEffect, useRef, useState } from "preact/hooks";
import type { Message } from "../api/types";
import type { ChatModel } from "../app/chat";
import { decodeMentions, encodeMentions } from "./format";

interface Props {
  model: ChatModel;
  label: string;
  threadId: string | null;
  editing: Message | null;
  disabled: boolean;
  onEditLast(): void;
  onEditDone(): void;
}

export function Composer(props: Props) {
  const { model } = props;
  const [text, setText] = useState("");
  const area = useRef<HTMLTextAreaElement>(null);
  const file = useRef<HTMLInputElement>(null);
  const members = () => {
    const team = model.selectedTeam ? model.teams.get(model.selectedTeam) : undefined;
    return (team?.members ?? []).map((id) => ({ id, name: model.users.get(id)?.name ?? "" }));
  };

  useEffect(() => {
    if (props.editing) {
      setText(decodeMentions(props.editing.data, (id) => model.name(id)));
      area.current?.focus();
    }
  }, [props.editing?.id]);

  const submit = async () => {
    const body = encodeMentions(text, members());
    if (!body.trim()) return;
    if (props.editing) {
      if (await model.edit(props.editing.id, body)) {
        setText("");
        props.onEditDone();
      }
      return;
    }
    model.sendText(body, props.threadId);
    setText("");
  };

  const onKeyDown = (e: KeyboardEvent) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      void submit();
    } else if (e.key === "ArrowUp" && text === "" && !props.editing) {
      e.preventDefault();
      props.onEditLast();
    } else if (e.key === "Escape" && props.editing) {
      e.preventDefault();
      e.stopPropagation();
      setText("");
      props.onEditDone();
    }
  };

  const inputId = `composer-${props.threadId ?? "main"}`;
  return (
    <form
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
      <div class="composer-row">
        <input
          ref={file}
          id={`${inputId}-file`}
          type="file"
          class="visually-hidden"
          aria-label="Attach a file"
          tabIndex={-1}
          onChange={(e) => {
            const input = e.currentTarget;
            const picked = input.files?.[0];
            if (picked) void model.sendFile(picked, props.threadId);
            input.value = "";
          }}
        />
        <button type="button" class="icon" aria-label="Attach a file" disabled={props.disabled} onClick={() => file.current?.click()}>
          📎
        </button>
        <textarea
          ref={area}
          id={inputId}
          rows={1}
          value={text}
          disabled={props.disabled}
          placeholder={props.disabled ? "This team is deactivated: read only" : props.label}
          onInput={(e) => {
            setText(e.currentTarget.value);
            if (!props.editing) model.typed();
          }}
          onKeyDown={onKeyDown}
        />
        <button type="submit" class="primary" disabled={props.disabled || !text.trim()}>
          {props.editing ? "Save" : "Send"}
        </button>
      </div>
    </form>
  );
}
