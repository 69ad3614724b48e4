// Threads of the open conversation with replies from others since it was opened. The list shows
// those only as "· N new" beside each root, which may be far above the view (a reply to an old
// message): this bar points to them until their thread is opened or the conversation reopened.
import type { ChatModel } from "../app/chat";

const SHOWN = 3;

export function NewReplies(props: { model: ChatModel; team: string }) {
  const { model, team } = props;
  const threads = model.threadsWithNewReplies(team);
  if (threads.length === 0) return null;
  const total = threads.reduce((n, t) => n + t.count, 0);
  return (
    <section class="new-replies-bar" aria-label="New replies in threads">
      <p>
        {total === 1 ? "1 new reply" : `${total} new replies`} in {threads.length === 1 ? "a thread" : `${threads.length} threads`}:
      </p>
      <ul>
        {threads.slice(0, SHOWN).map((t) => (
          <li key={t.root}>
            <button type="button" class="link" onClick={() => model.openThread(t.root)}>
              {t.author ? `${model.name(t.author)}: ` : ""}
              {t.excerpt || "a message"} ({t.count} new)
            </button>
          </li>
        ))}
        {threads.length > SHOWN && <li class="muted">and {threads.length - SHOWN} more</li>}
      </ul>
    </section>
  );
}
