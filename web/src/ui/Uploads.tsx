// Uploads in flight for a message box (a conversation's, or a thread's): a progress bar each with
// Cancel, or the reason it was refused.
import type { ChatModel } from "../app/chat";
import { returnFocus } from "./focus";

export function Uploads(props: { model: ChatModel; channel: string; to: string; threadId: string | null }) {
  const list = [...props.model.uploads.values()].filter((u) => u.channel === props.channel && u.to === props.to && u.threadId === props.threadId);
  if (list.length === 0) return null;
  return (
    <ul class="uploads">
      {list.map((u) => (
        <li key={u.key} class={u.error ? "upload failed" : "upload"}>
          {u.error ? (
            <p class="error" role="alert">
              {u.error}{" "}
              {u.retryable && (
                <button type="button" class="link" aria-label={`Retry uploading ${u.name}`} onClick={() => props.model.retryUpload(u.key)}>
                  Retry
                </button>
              )}{" "}
              <button type="button" class="link" onClick={() => props.model.dismissUpload(u.key)}>
                Dismiss
              </button>
            </p>
          ) : (
            <>
              <span>Uploading {u.name}</span>
              <progress max={1} value={u.progress} aria-label={`Uploading ${u.name}`} />
              <span class="muted">{Math.round(u.progress * 100)}%</span>
              <button type="button" class="link" aria-label={`Cancel uploading ${u.name}`} onClick={(e) => {
                  // The row goes with the upload: focus goes to the box the file was for.
                  const box = e.currentTarget.closest(".conversation, .thread")?.querySelector<HTMLElement>("textarea");
                  props.model.cancelUpload(u.key);
                  returnFocus(() => box);
                }}
              >
                Cancel
              </button>
            </>
          )}
        </li>
      ))}
    </ul>
  );
}
