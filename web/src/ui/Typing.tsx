// "Bob is typing…" under a list: the conversation's own box, or a thread's (`thread`).
import type { ChatModel } from "../app/chat";

export function Typing(props: { model: ChatModel; thread: string | null }) {
  const typing = props.model.typingNames(props.thread);
  return (
    <p class="typing" aria-hidden={typing.length === 0}>
      {typing.length === 1 ? `${typing[0]} is typing…` : typing.length > 1 ? `${typing.join(", ")} are typing…` : "\u00a0"}
    </p>
  );
}
