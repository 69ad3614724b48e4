// A scrolling list of messages: loads older pages at the top, follows new ones at the bottom,
// shows the "new messages" divider, and reports what came into view so it can be marked read.
import { useEffect, useLayoutEffect, useRef } from "preact/hooks";
import type { Message, Team } from "../api/types";
import type { ChatModel, Pending } from "../app/chat";
import { MessageItem } from "./MessageItem";

interface Props {
  model: ChatModel;
  team: Team;
  messages: Message[];
  pending: Pending[];
  dividerBefore: string | null;
  inThread: boolean;
  label: string;
  onEdit(m: Message): void;
  onReply?(m: Message): void;
  /** Infinite scroll upward: returns how many older messages arrived. */
  loadOlder?(): Promise<number>;
  hasOlder: boolean;
  /** Called with the highest seq that is in view (the page is visible). */
  seen?(seq: number): void;
}

const GROUP_MS = 5 * 60_000;

export function MessageList(props: Props) {
  const box = useRef<HTMLDivElement>(null);
  const atBottom = useRef(true);
  const loading = useRef(false);
  const autoPages = useRef(0);
  const observer = useRef<IntersectionObserver | null>(null);
  const seen = useRef(props.seen);
  seen.current = props.seen;

  useEffect(() => {
    const root = box.current;
    if (!root || !props.seen) return;
    // What is on screen now; reported while the page is visible, and again when it becomes so.
    const inView = new Set<number>();
    const report = () => {
      if (document.visibilityState === "visible" && inView.size > 0) seen.current?.(Math.max(...inView));
    };
    observer.current = new IntersectionObserver(
      (entries) => {
        for (const e of entries) {
          const seq = Number((e.target as HTMLElement).dataset.seq);
          if (e.isIntersecting) inView.add(seq);
          else inView.delete(seq);
        }
        report();
      },
      { root, threshold: 0.6 },
    );
    document.addEventListener("visibilitychange", report);
    return () => {
      observer.current?.disconnect();
      document.removeEventListener("visibilitychange", report);
    };
  }, []);

  const older = async () => {
    const el = box.current;
    if (!el || !props.hasOlder || !props.loadOlder || loading.current) return;
    loading.current = true;
    const before = el.scrollHeight;
    const added = await props.loadOlder();
    loading.current = false;
    // Keep the message under the reader's eyes where it was.
    if (added > 0 && !atBottom.current) el.scrollTop += el.scrollHeight - before;
  };

  // New messages: stay at the bottom if the reader was there. A list too short to scroll
  // (a DM among many team messages) fetches older pages by itself, a few at most.
  useLayoutEffect(() => {
    const el = box.current;
    if (!el) return;
    if (atBottom.current) el.scrollTop = el.scrollHeight;
    el.querySelectorAll("article.message[data-seq]").forEach((a) => observer.current?.observe(a));
    if (el.scrollHeight <= el.clientHeight && autoPages.current < 10 && props.hasOlder && props.loadOlder && !loading.current) {
      autoPages.current += 1;
      void older();
    }
  });

  const onScroll = () => {
    const el = box.current;
    if (!el) return;
    atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
    if (el.scrollTop < 80) void older();
  };

  const { model, team, messages } = props;
  return (
    <div class="message-list" ref={box} onScroll={onScroll} role="log" aria-label={props.label} tabIndex={0}>
      {props.loadOlder && (
        <p class="history-edge muted">{props.hasOlder ? "Scroll up for older messages" : "This is the beginning of the conversation."}</p>
      )}
      {messages.map((m, i) => {
        const prev = messages[i - 1];
        const compact = Boolean(prev && prev.from === m.from && !prev.deleted && Date.parse(m.ts) - Date.parse(prev.ts) < GROUP_MS) && props.dividerBefore !== m.id;
        return (
          <div key={m.id}>
            {props.dividerBefore === m.id && (
              <div class="divider" role="separator" aria-label="New messages">
                <span>New messages</span>
              </div>
            )}
            <MessageItem model={model} team={team} message={m} compact={compact} inThread={props.inThread} onEdit={props.onEdit} onReply={props.onReply} />
          </div>
        );
      })}
      {props.pending.map((p) => (
        <article key={p.clientMsgId} class={`message own pending ${p.status}`}>
          <p class="text">{p.type === "text" ? p.data : `(${p.type})`}</p>
          {p.status === "sending" ? (
            <p class="muted small">Sending…</p>
          ) : (
            <p class="error small" role="alert">
              Not sent: {p.error}{" "}
              <button type="button" class="link" onClick={() => model.retry(p.clientMsgId)}>
                Retry
              </button>{" "}
              <button type="button" class="link" onClick={() => model.discard(p.clientMsgId)}>
                Discard
              </button>
            </p>
          )}
        </article>
      ))}
    </div>
  );
}
