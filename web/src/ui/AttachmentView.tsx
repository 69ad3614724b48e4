// An attachment message: images inline (a click shows them full size), video and audio with
// controls, anything else a download link. URLs are short-lived presigned GETs, fetched when shown
// and again when they expire.
import { useEffect, useRef, useState } from "preact/hooks";
import { returnFocus, stillThere } from "./focus";
import type { Attachment, Message } from "../api/types";
import type { ChatModel } from "../app/chat";
import { bytes } from "./format";
import { safeHref } from "../text/segments";

export function AttachmentView(props: { model: ChatModel; message: Message }) {
  const { model, message } = props;
  const [info, setInfo] = useState<Attachment | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [round, setRound] = useState(0);
  const [failures, setFailures] = useState(0);
  const [viewing, setViewing] = useState(false);
  const viewer = useRef<HTMLDialogElement>(null);
  const opener = useRef<HTMLButtonElement>(null);

  // A modal <dialog>: the browser keeps focus inside it. It leaves the page with `viewing`, so
  // the browser has nothing to give focus back to: it goes back to the thumbnail. Esc is taken
  // here first so it closes only the picture, not the panel behind it.
  useEffect(() => {
    const dialog = viewer.current;
    if (!viewing || !dialog) return;
    // The message may be deleted while its picture is shown: focus then goes to the message's
    // tombstone, or to the panel's box, not to the top of the page.
    const message = opener.current?.closest<HTMLElement>("article") ?? null;
    const panel = opener.current?.closest<HTMLElement>("aside, main") ?? null;
    dialog.showModal();
    const onKey = (e: KeyboardEvent) => {
      if (e.key === "Escape") {
        e.preventDefault();
        e.stopPropagation();
        setViewing(false);
      }
    };
    window.addEventListener("keydown", onKey, true);
    return () => {
      window.removeEventListener("keydown", onKey, true);
      if (dialog.open) dialog.close();
      returnFocus(() => stillThere([opener.current, message], panel));
    };
  }, [viewing]);

  useEffect(() => {
    let live = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    model.attachment(message.data).then(
      (a) => {
        if (!live) return;
        setInfo(a);
        // Fetch a fresh URL shortly before this one expires, so a click never meets a dead link.
        const left = a.expires_at ? Date.parse(a.expires_at) - Date.now() - 20_000 : 0;
        if (left > 0) timer = setTimeout(() => setRound((r) => r + 1), left);
      },
      () => live && setError("This attachment is not available."),
    );
    return () => {
      live = false;
      if (timer) clearTimeout(timer);
    };
  }, [message.data, round]);

  if (error) return <p class="attachment-missing">{error}</p>;
  if (!info || !info.url) return <p class="attachment-loading">Loading attachment…</p>;
  // The server makes this URL, but it still goes into href and src: only http(s) gets there.
  const url = safeHref(info.url);
  if (!url) return <p class="attachment-loading">This attachment cannot be shown.</p>;
  // An expired URL fails to load: ask for a fresh one (a few times, not forever).
  const refresh = () => {
    if (failures >= 3) return;
    setFailures(failures + 1);
    setRound((r) => r + 1);
  };
  if (message.type === "image") {
    // The URL downloads when opened (the store serves attachments as downloads, never as pages),
    // so a click shows the picture here, full size, with the download beside it.
    return (
      <>
        <button ref={opener} type="button" class="attachment image" aria-label={`View ${info.filename}`} onClick={() => setViewing(true)}>
          <img src={url} alt={info.filename} loading="lazy" onError={refresh} />
        </button>
        {viewing && (
          <dialog
            ref={viewer}
            class="lightbox"
            aria-label={info.filename}
            onClose={() => setViewing(false)}
            onClick={(e) => e.target === e.currentTarget && setViewing(false)}
          >
            <img src={url} alt={info.filename} />
            <div class="lightbox-bar">
              <span class="lightbox-name">{info.filename}</span>
              <a href={url} rel="noopener noreferrer">
                Download ({bytes(info.size)})
              </a>
              <button type="button" autofocus onClick={() => setViewing(false)}>
                Close
              </button>
            </div>
          </dialog>
        )}
      </>
    );
  }
  if (message.type === "video") return <video class="attachment" src={url} controls preload="metadata" aria-label={info.filename} onError={refresh} />;
  if (message.type === "audio") return <audio class="attachment" src={url} controls preload="metadata" aria-label={info.filename} onError={refresh} />;
  return (
    <a class="attachment file" href={url} target="_blank" rel="noopener noreferrer">
      <span aria-hidden="true">📄</span> {info.filename} <span class="muted">({bytes(info.size)})</span>
    </a>
  );
}
