// A scrolling list of messages: loads older pages at the top, follows new ones at the bottom,
// shows the "new messages" divider, and reports what came into view so it can be marked read.
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import type { Message, Team } from "../api/types";
import type { ChatModel } from "../app/chat";
import type { Pending } from "../app/outbox";
import { InView, SEEN_THRESHOLDS } from "../app/inview";
import { dayKey, dayLabel } from "./format";
import { MessageItem } from "./MessageItem";
import { withoutBidiControls } from "../text/bidi";

interface Props {
  model: ChatModel;
  team: Team;
  messages: Message[];
  pending: Pending[];
  dividerBefore: string | null;
  /** Where the list starts (ChatModel.listStart): a list opened with more new messages than fit
   * starts at the divider once it is where the first unread message is; until then ("wait") it
   * waits at the bottom; "bottom" (or none) never moves it. Decided once. */
  start?: "divider" | "wait" | "bottom";
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

/** Messages from others wholly below the list's visible part: walked from the end, where they
 * are, so a long list costs only what is below. */
function othersBelow(list: HTMLElement): number {
  const bottom = list.getBoundingClientRect().bottom;
  const items = list.querySelectorAll<HTMLElement>("article.message[data-seq]");
  let count = 0;
  for (let i = items.length - 1; i >= 0; i--) {
    const item = items[i];
    if (!item || item.getBoundingClientRect().top < bottom) break;
    if (!item.classList.contains("own")) count += 1;
  }
  return count;
}

export function MessageList(props: Props) {
  const box = useRef<HTMLDivElement>(null);
  const atBottom = useRef(true);
  const loading = useRef(false);
  const autoPages = useRef(0);
  const tracker = useRef<InView | null>(null);
  // The message the reader was looking at when an older page was asked for, and where it was.
  const anchor = useRef<{ seq: number; offset: number; oldest: number } | null>(null);
  // Images and videos grow after they load: a reader at the bottom stays there.
  const resizes = useRef<ResizeObserver | null>(null);
  const sending = useRef(0);
  const lastTop = useRef(0);
  const seen = useRef(props.seen);
  seen.current = props.seen;
  // Messages from others that came in while the reader was scrolled up: the "new below" button.
  const [below, setBelow] = useState(0);
  const [fetching, setFetching] = useState(false);
  const lastSeq = useRef<number | null>(null);
  const opened = useRef(false);

  // Made on first use, which is the first layout effect: effects run in an order that a plain
  // useEffect would lose (the list registers its messages before a useEffect runs).
  const inView = (root: HTMLElement): InView | null => {
    if (!props.seen) return null;
    tracker.current ??= new InView(
      (callback) => new IntersectionObserver(callback, { root, threshold: SEEN_THRESHOLDS }),
      (el) => Number((el as HTMLElement).dataset.seq),
      () => document.visibilityState === "visible",
      (seq) => seen.current?.(seq),
    );
    return tracker.current;
  };

  useEffect(() => {
    // Reported again when the page becomes visible: what was on screen while hidden is unseen.
    // The "new below" count is taken again from what is below the view then: arrivals counted
    // while the page was hidden may have been laid out above it.
    const report = () => {
      tracker.current?.reportNow();
      const el = box.current;
      if (el && document.visibilityState === "visible") setBelow((n) => (n > 0 ? othersBelow(el) : 0));
    };
    document.addEventListener("visibilitychange", report);
    return () => {
      tracker.current?.stop();
      tracker.current = null;
      resizes.current?.disconnect();
      resizes.current = null;
      document.removeEventListener("visibilitychange", report);
    };
  }, []);

  const older = async () => {
    const el = box.current;
    if (!el || !props.hasOlder || !props.loadOlder || loading.current) return;
    loading.current = true;
    setFetching(true);
    const top = el.getBoundingClientRect().top;
    const first = [...el.querySelectorAll<HTMLElement>("article.message[data-seq]")].find((a) => a.getBoundingClientRect().bottom > top);
    const oldest = props.messages[0]?.seq;
    anchor.current = first && oldest !== undefined ? { seq: Number(first.dataset.seq), offset: first.getBoundingClientRect().top - top, oldest } : null;
    const added = await props.loadOlder().finally(() => {
      loading.current = false;
      setFetching(false);
    });
    // Put back by the layout effect of the render that shows the page (this closure's props are
    // the old ones); nothing to put back when nothing came.
    if (added === 0) anchor.current = null;
  };

  /**
   * Once the older page is on screen, puts the message the reader was looking at back where it
   * was. The browser's own scroll anchoring does not help here: at the very top of the list
   * (scrollTop 0, where the reader is when a page is asked for) it keeps the top, so the view
   * jumped to the new page's first message and, stuck at 0, a further scroll up asked for nothing.
   */
  const keepAnchor = () => {
    const el = box.current;
    const a = anchor.current;
    if (!el || !a || atBottom.current) return;
    if ((props.messages[0]?.seq ?? a.oldest) >= a.oldest) return; // not rendered yet
    anchor.current = null;
    const node = el.querySelector<HTMLElement>(`article.message[data-seq="${a.seq}"]`);
    if (node) el.scrollTop += node.getBoundingClientRect().top - el.getBoundingClientRect().top - a.offset;
  };

  // New messages: stay at the bottom if the reader was there. A list too short to scroll
  // (a DM among many team messages) fetches older pages by itself, a few at most.
  useLayoutEffect(() => {
    const el = box.current;
    if (!el) return;
    // The reader's own new message brings them to the bottom, wherever they were.
    if (props.pending.length > sending.current) {
      atBottom.current = true;
      opened.current = true; // the reader is writing at the bottom: no jump to the divider now
    }
    sending.current = props.pending.length;
    // Opened with more new messages than fit: at the first of them, the divider near the top,
    // not at the bottom past them all (which would mark them read unseen); "N new messages
    // below" takes the reader to the latest.
    let jumped = false;
    if (!opened.current && props.start !== "wait" && props.messages.length > 0) {
      opened.current = true;
      const divider = props.start === "divider" ? el.querySelector<HTMLElement>(".divider") : null;
      const top = divider ? divider.getBoundingClientRect().top - el.getBoundingClientRect().top + el.scrollTop : null;
      if (top !== null && el.scrollHeight - top > el.clientHeight) {
        atBottom.current = false;
        el.scrollTop = Math.max(0, top - 8);
        jumped = true;
        // A page the list asked for while it waited (a short list pages back by itself) must
        // not put its old first message back at the top over the divider.
        anchor.current = null;
        // What was on screen at the bottom (while the history was read back) is not any more:
        // a fresh observer reports what is on screen now, not the messages it had seen there.
        tracker.current?.stop();
        tracker.current = null;
        setBelow(othersBelow(el));
      }
    }
    // Messages from others arriving while the page is hidden are not followed: coming back at
    // the bottom would show, and mark read, the latest only. The view stays on what was read,
    // with "N new messages below".
    const seenUpTo = lastSeq.current;
    if (document.visibilityState !== "visible" && seenUpTo !== null && props.messages.some((m) => m.seq > seenUpTo && m.from !== props.model.me.id)) {
      atBottom.current = false;
    }
    if (atBottom.current) el.scrollTop = el.scrollHeight;
    else if (!jumped) keepAnchor();
    const newest = props.messages.at(-1)?.seq ?? null;
    const before = lastSeq.current;
    lastSeq.current = newest;
    if (!atBottom.current && before !== null && newest !== null && newest > before) {
      const arrived = props.messages.filter((m) => m.seq > before && m.from !== props.model.me.id).length;
      if (arrived > 0) setBelow((n) => n + arrived);
    }
    lastTop.current = el.scrollTop;
    // Sizes change after layout: an image or video loading, the window or the composer area
    // resizing. Observed, the reader at the bottom is kept there before the browser's own scroll
    // anchoring moves the view (and its scroll event would take them for someone who scrolled up).
    resizes.current ??= new ResizeObserver(() => {
      if (atBottom.current && box.current) box.current.scrollTop = box.current.scrollHeight;
    });
    resizes.current.observe(el);
    for (const item of el.querySelectorAll("article.message")) resizes.current.observe(item);
    const watch = inView(el);
    if (watch) {
      watch.track(el.querySelectorAll("article.message[data-seq]"));
      // A change that adds no element (a thread reply under a root in view) is seen as well.
      if (!jumped) watch.reportNow();
    }
    if (el.scrollHeight <= el.clientHeight && autoPages.current < 10 && props.hasOlder && props.loadOlder && !loading.current) {
      autoPages.current += 1;
      void older();
    }
  });

  const onScroll = () => {
    const el = box.current;
    if (!el) return;
    const distance = el.scrollHeight - el.scrollTop - el.clientHeight;
    const movedUp = el.scrollTop < lastTop.current - 1;
    // The reader scrolled while the history was read back: where they went wins over the divider.
    if (movedUp) opened.current = true;
    if (atBottom.current && !movedUp && distance >= 40) {
      // Not the reader scrolling up: the content grew under them (an image loaded, and the
      // browser's scroll anchoring reported it as a scroll). They stay at the bottom.
      el.scrollTop = el.scrollHeight;
    } else {
      atBottom.current = distance < 40;
    }
    if (atBottom.current && below > 0) setBelow(0);
    else if (below > 0) {
      // Counts down as the reader scrolls through them (arrivals count it up).
      const left = othersBelow(el);
      if (left < below) setBelow(left);
    }
    lastTop.current = el.scrollTop;
    if (el.scrollTop < 80) void older();
  };

  /** Up and Down move between messages (focus shows a message's actions); from the list itself,
   * Up goes to the last one. Keys inside a message's own controls are left to them. */
  const onKeyDown = (e: KeyboardEvent) => {
    if (e.key !== "ArrowUp" && e.key !== "ArrowDown") return;
    const target = e.target as HTMLElement;
    const el = box.current;
    if (!el || (target !== el && !target.matches("article.message[data-id]"))) return;
    const items = [...el.querySelectorAll<HTMLElement>("article.message[data-id]")];
    if (items.length === 0) return;
    const at = items.indexOf(target);
    const next = at < 0 ? (e.key === "ArrowUp" ? items.length - 1 : -1) : at + (e.key === "ArrowUp" ? -1 : 1);
    const item = items[next];
    if (!item) return;
    e.preventDefault();
    item.focus();
    item.scrollIntoView({ block: "nearest" });
  };

  const toLatest = () => {
    const el = box.current;
    if (!el) return;
    atBottom.current = true;
    el.scrollTop = el.scrollHeight;
    setBelow(0);
  };

  const { model, team, messages } = props;
  const fresh = props.inThread ? null : model.newReplies(team.id);
  return (
    // A log, but silent: new messages are said once, in a few words ("Ada: hello"), by the page's
    // own announcer (ChatModel.announceMessage); the log would read the whole entry again.
    <div class="message-list" ref={box} onScroll={onScroll} onKeyDown={onKeyDown} role="log" aria-live="off" aria-label={props.label} tabIndex={0}>
      {props.loadOlder &&
        (props.hasOlder ? (
          // A button as well as the scroll: a list too short to scroll (a DM whose messages lie
          // below hundreds of team messages, past the pages fetched by themselves) has no
          // scroll to make, and a keyboard reaches it. A click fetches up to that many again.
          <p class="history-edge">
            <button
              type="button"
              class="link"
              disabled={fetching}
              onClick={() => {
                autoPages.current = 0;
                void older();
              }}
            >
              {fetching ? "Loading older messages…" : "Load older messages"}
            </button>
          </p>
        ) : (
          <p class="history-edge muted">This is the beginning of the conversation.</p>
        ))}
      {messages.map((m, i) => {
        const prev = messages[i - 1];
        const newDay = !prev || dayKey(prev.ts) !== dayKey(m.ts);
        const day = newDay ? dayLabel(m.ts) : "";
        const compact =
          !newDay && Boolean(prev && prev.from === m.from && !prev.deleted && Date.parse(m.ts) - Date.parse(prev.ts) < GROUP_MS) && props.dividerBefore !== m.id;
        return (
          <div key={m.id}>
            {newDay && (
              <div class="day" role="separator" aria-label={day}>
                <span>{day}</span>
              </div>
            )}
            {props.dividerBefore === m.id && (
              <div class="divider" role="separator" aria-label="New messages">
                <span>New messages</span>
              </div>
            )}
            <MessageItem
              model={model}
              team={team}
              message={m}
              compact={compact}
              dayShown={true}
              inThread={props.inThread}
              newReplies={fresh?.get(m.id)}
              onEdit={props.onEdit}
              onReply={props.onReply}
            />
          </div>
        );
      })}
      {props.pending.map((p) => (
        <article key={p.clientMsgId} class={`message own pending ${p.status}`}>
          <p class="text" dir="auto">{p.type === "text" ? withoutBidiControls(p.data) : `(${p.type})`}</p>
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
      {below > 0 && (
        <button type="button" class="new-below" onClick={toLatest}>
          {below} new {below === 1 ? "message" : "messages"} below ↓
        </button>
      )}
    </div>
  );
}
