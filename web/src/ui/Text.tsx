// Message text as elements: text nodes, checked links and mentions. Never markup from data.
import { segments } from "../text/segments";

export function MessageText(props: { text: string; name: (id: string) => string; me: string }) {
  return (
    <>
      {segments(props.text).map((s, i) =>
        s.kind === "text" ? (
          s.text
        ) : s.kind === "link" ? (
          <a key={i} href={s.href} target="_blank" rel="noopener noreferrer nofollow">
            {s.text}
          </a>
        ) : (
          <span key={i} class={s.userId === props.me ? "mention me" : "mention"}>
            @{props.name(s.userId)}
          </span>
        ),
      )}
    </>
  );
}
