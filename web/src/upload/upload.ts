// An attachment's way in (docs/api.md "Attachments"): ask the management service for a presigned
// POST, send the file straight to S3 with XMLHttpRequest (whose upload events give the progress
// bar), then have it checked and scanned. Every refusal becomes an UploadError a person can read.
import { ApiError } from "../api/client";
import { bytes } from "../ui/format";
import type { Attachment, UploadTicket } from "../api/types";
import { ACCEPTED_TYPES, declaredType, SNIFF_BYTES } from "./filetype";

export class UploadError extends Error {
  override name = "UploadError";
  /** Whether sending the same file again may work: the server or the link failed, not the file. */
  readonly retryable: boolean;

  constructor(message: string, retryable = false) {
    super(message);
    this.retryable = retryable;
  }
}

/** A failure no fault of the file's: no connection, or a server busy or restarting. */
function passing(err: ApiError): boolean {
  return err.status === 0 || err.status === 429 || err.status >= 500;
}

export interface UploadApi {
  requestUpload(team: string, file: { filename: string; content_type: string; size: number }): Promise<UploadTicket>;
  completeUpload(id: string): Promise<Attachment>;
}

/** The part of XMLHttpRequest this uses (a fake in tests). */
export interface Xhr {
  open(method: string, url: string): void;
  send(body: FormData): void;
  abort(): void;
  upload: { onprogress: ((ev: ProgressEvent) => void) | null };
  onload: (() => void) | null;
  onerror: (() => void) | null;
  status: number;
  responseText: string;
}

export interface FileLike {
  name: string;
  type: string;
  size: number;
}

/** S3 answers refusals as XML; its <Message> (or <Code>) is the readable part. */
export function s3Reason(xml: string): string {
  const message = /<Message>([^<]*)<\/Message>/.exec(xml)?.[1];
  const code = /<Code>([^<]*)<\/Code>/.exec(xml)?.[1];
  if (code === "EntityTooLarge") return "the file is larger than declared";
  return message || code || "the storage refused the upload";
}

/** The user cancelled the upload: nothing to report. */
export class UploadCancelled extends Error {
  constructor() {
    super("upload cancelled");
  }
}

function postForm(makeXhr: () => Xhr, url: string, form: FormData, progress: (fraction: number) => void, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(new UploadCancelled());
      return;
    }
    const xhr = makeXhr();
    signal?.addEventListener("abort", () => {
      xhr.abort();
      reject(new UploadCancelled());
    });
    xhr.open("POST", url);
    xhr.upload.onprogress = (ev) => {
      if (ev.lengthComputable && ev.total > 0) progress(ev.loaded / ev.total);
    };
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        progress(1);
        resolve();
      } else {
        reject(new UploadError(`Upload refused: ${s3Reason(xhr.responseText)}.`));
      }
    };
    xhr.onerror = () => reject(new UploadError("Upload failed: the storage server cannot be reached.", true));
    xhr.send(form);
  });
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));


/** Why the server refused an upload, in a person's words rather than the API's field reasons. */
export function refusal(err: ApiError): string {
  const details = err.details ?? {};
  if (err.status === 413 || details.size === "too large") {
    const limit = /(\d+) bytes/.exec(err.message)?.[1];
    return limit ? `it is larger than ${bytes(Number(limit))}, the most one file may be` : "it is too large";
  }
  if (details.content_type) return "files of this type cannot be attached (pictures, video, audio, PDF, Office, OpenDocument, zip and plain text can)";
  if (details.size === "must be at least 1 byte") return "the file is empty";
  if (details.filename) return "its name cannot be used (it has nothing left once path and control characters are removed)";
  const notType = /the content is not ([a-z]+\/[a-z0-9.+-]+)/.exec(err.message);
  if (notType) return `its content is not what its type says (${notType[1]})`;
  const found = /malware found \(([^)]*)\)/.exec(err.message);
  if (found) return `the virus scanner found ${found[1]} in it`;
  return err.readable;
}

/**
 * Uploads `file` for `team` and returns the ready attachment (its `kind` is the message type
 * to send it as). `progress` gets 0..1 while the bytes travel.
 */
export async function uploadAttachment(
  api: UploadApi,
  team: string,
  file: FileLike & Blob,
  progress: (fraction: number) => void,
  makeXhr: () => Xhr = () => new XMLHttpRequest() as unknown as Xhr,
  pause: (ms: number) => Promise<void> = sleep,
  signal?: AbortSignal,
): Promise<Attachment> {
  let ticket: UploadTicket;
  const contentType = ACCEPTED_TYPES.has(file.type) ? file.type : declaredType(file.type, new Uint8Array(await file.slice(0, SNIFF_BYTES).arrayBuffer()));
  try {
    ticket = await api.requestUpload(team, { filename: file.name, content_type: contentType, size: file.size });
  } catch (err) {
    if (err instanceof ApiError && passing(err)) throw new UploadError(`“${file.name}” could not be sent: ${err.readable}.`, true);
    if (err instanceof ApiError) throw new UploadError(`“${file.name}” refused: ${refusal(err)}.`);
    throw err;
  }
  const form = new FormData();
  for (const [key, value] of Object.entries(ticket.upload.fields)) form.append(key, value);
  // The file goes last, named "file", with the declared type (the policy pins it).
  form.append("file", file, file.name);
  progress(0);
  await postForm(makeXhr, ticket.upload.url, form, progress, signal);
  // 409: the store has not shown the object yet; 503: no verdict yet (scanner busy). Both keep the
  // attachment pending: ask again a few times before giving up.
  for (let attempt = 0; ; attempt++) {
    if (signal?.aborted) throw new UploadCancelled();
    try {
      return await api.completeUpload(ticket.id);
    } catch (err) {
      if (err instanceof ApiError && (err.status === 409 || err.status === 503) && attempt < 5) {
        await pause(500 * (attempt + 1));
        continue;
      }
      if (err instanceof ApiError && err.status === 422) {
        throw new UploadError(`“${file.name}” was refused: ${refusal(err)}.`);
      }
      if (err instanceof ApiError) throw new UploadError(`“${file.name}” could not be checked: ${err.readable}.`, passing(err));
      throw err;
    }
  }
}
