// A scrolling list of messages: loads older pages at the top, follows new ones at the bottom,
// shows the "new messages" divider, and reports what came into view so it can be marked read.
import { useEffect, useLayoutEffect, useRef } from "preact/hooks";
import type { Message, Team } from "../api/types";
import type { ChatModel, Pending } from "../app/chat";
import { InView } from "../app/inview";
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
  const tracker = useRef<InView | null>(null);
  const seen = useRef(props.seen);
  seen.current = props.seen;

  // Made on first use, which is the first layout effect: effects run in an order that a plain
  // useEffect would lose (the list registers its messages before a useEffect runs).
  const inView = (root: HTMLElement): InView | null => {
    if (!props.seen) return null;
    tracker.current ??= new InView(
      (callback) => new IntersectionObserver(callback, { root, threshold: 0.6 }),
      (el) => Number((el as HTMLElement).dataset.seq),
      () => document.visibilityState === "visible",
      (seq) => seen.current?.(seq),
    );
    return tracker.current;
  };

  useEffect(() => {
    // Reported again when the page becomes visible: what was on screen while hidden is unseen.
    const report = () => tracker.current?.reportNow();
    document.addEventListener("visibilitychange", report);
    return () => {
      tracker.current?.stop();
      tracker.current = null;
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
    const watch = inView(el);
    if (watch) {
      watch.track(el.querySelectorAll("article.message[data-seq]"));
      // A change that adds no element (a thread reply under a root in view) is seen as well.
      watch.reportNow();
    }
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
              {p.retryable ? (
                <button type="button" class="link" onClick={() => model.retry(p.clientMsgId)}>
                  Retry
                </button>
              ) : (
                p.type === "text" && (
                  // Sending it again would be refused again: it goes back to the box to be changed.
                  <button type="button" class="link" onClick={() => model.takeBack(p.clientMsgId)}>
                    Edit
                  </button>
                )
              )}{" "}
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
