import { describe, expect, it } from "vitest";
import { ApiError } from "../src/api/client";
import type { Attachment, UploadTicket } from "../src/api/types";
import { refusal, s3Reason, type UploadApi, uploadAttachment, UploadCancelled, UploadError, type Xhr } from "../src/upload/upload";
import { TEAM } from "./fixtures";

const ticket: UploadTicket = {
  id: "att1",
  attachment_id: "att1",
  team_id: TEAM,
  kind: "image",
  status: "pending",
  filename: "cat.png",
  content_type: "image/png",
  size: 4,
  uploader: "u",
  created_at: "",
  upload: { method: "POST", url: "http://s3/bucket", fields: { key: "k", policy: "p" }, expires_at: "" },
};

class FakeXhr implements Xhr {
  static last: FakeXhr | null = null;
  upload: Xhr["upload"] = { onprogress: null };
  onload: Xhr["onload"] = null;
  onerror: Xhr["onerror"] = null;
  status = 0;
  responseText = "";
  url = "";
  body: FormData | null = null;
  constructor() {
    FakeXhr.last = this;
  }
  open(_m: string, url: string) {
    this.url = url;
  }
  send(body: FormData) {
    this.body = body;
  }
  aborted = false;
  abort() {
    this.aborted = true;
  }
}

const file = new File([new Uint8Array([1, 2, 3, 4])], "cat.png", { type: "image/png" });

function api(complete: () => Promise<Attachment>, request?: () => Promise<UploadTicket>): UploadApi {
  return { requestUpload: request ?? (async () => ticket), completeUpload: complete };
}

describe("uploadAttachment", () => {
  it("stops the transfer when cancelled, and never asks the server to complete it", async () => {
    let completed = false;
    const cancel = new AbortController();
    const done = uploadAttachment(
      api(async () => {
        completed = true;
        return { ...ticket, status: "ready" };
      }),
      TEAM,
      file,
      () => undefined,
      () => new FakeXhr(),
      async () => undefined,
      cancel.signal,
    );
    await new Promise((r) => setTimeout(r, 0));
    const xhr = FakeXhr.last as FakeXhr;
    cancel.abort();
    await expect(done).rejects.toBeInstanceOf(UploadCancelled);
    expect(xhr.aborted).toBe(true);
    expect(completed).toBe(false);
  });

  it("declares a text file the browser types as text/csv as text/plain", async () => {
    const asked: string[] = [];
    FakeXhr.last = null;
    const csv = new File(["name,count\nada,3\n"], "data.csv", { type: "text/csv" });
    const request = async (...args: unknown[]) => {
      asked.push((args[1] as { content_type: string }).content_type);
      return ticket;
    };
    const done = uploadAttachment(
      { requestUpload: request, completeUpload: async () => ({ ...ticket, status: "ready" }) },
      TEAM,
      csv,
      () => undefined,
      () => new FakeXhr(),
      async () => undefined,
    );
    const sent = (): FakeXhr | null => FakeXhr.last;
    for (let i = 0; i < 20 && !sent()?.body; i++) await new Promise((r) => setTimeout(r, 0));
    const xhr = sent() as FakeXhr;
    xhr.status = 204;
    xhr.onload?.();
    await done;
    expect(asked).toEqual(["text/plain"]);
  });

  it("posts the policy fields then the file to S3, reports progress, and completes", async () => {
    const progress: number[] = [];
    const done = uploadAttachment(api(async () => ({ ...ticket, status: "ready" })), TEAM, file, (f) => progress.push(f), () => new FakeXhr(), async () => undefined);
    await new Promise((r) => setTimeout(r, 0));
    const xhr = FakeXhr.last as FakeXhr;
    expect(xhr.url).toBe("http://s3/bucket");
    expect([...(xhr.body as FormData).keys()]).toEqual(["key", "policy", "file"]);
    xhr.upload.onprogress?.({ lengthComputable: true, loaded: 2, total: 4 } as ProgressEvent);
    xhr.status = 204;
    xhr.onload?.();
    const att = await done;
    expect(att.status).toBe("ready");
    expect(progress).toEqual([0, 0.5, 1]);
  });

  it("says a file could not be sent, and may be retried, when the server cannot be reached", async () => {
    const offline = async (): Promise<UploadTicket> => {
      throw new ApiError(0, "network", "the server cannot be reached; check the connection and retry");
    };
    const failed = await uploadAttachment(api(async () => ticket, offline), TEAM, file, () => undefined, () => new FakeXhr()).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(UploadError);
    expect((failed as UploadError).retryable).toBe(true);
    expect((failed as UploadError).message).toMatch(/^“cat.png” could not be sent: /);
  });

  it("says plainly why the server refused the request (size, type)", async () => {
    const refuse = async (): Promise<UploadTicket> => {
      throw new ApiError(413, "too_large", "attachments are limited to 5242880 bytes", null, { size: "too large" });
    };
    await expect(uploadAttachment(api(async () => ticket, refuse), TEAM, file, () => undefined, () => new FakeXhr())).rejects.toThrow(
      "“cat.png” refused: it is larger than 5 MB, the most one file may be.",
    );
    const wrongType = async (): Promise<UploadTicket> => {
      throw new ApiError(422, "invalid", "invalid attachment request", null, { content_type: "not an allowed type (see the API documentation)" });
    };
    await expect(uploadAttachment(api(async () => ticket, wrongType), TEAM, file, () => undefined, () => new FakeXhr())).rejects.toThrow(
      "“cat.png” refused: files of this type cannot be attached (pictures, video, audio, PDF, Office, OpenDocument, zip and plain text can).",
    );
  });

  it("says plainly that a file was rejected by the scan, after retrying a busy scanner", async () => {
    let calls = 0;
    const complete = async (): Promise<Attachment> => {
      calls += 1;
      if (calls === 1) throw new ApiError(503, "unavailable", "scanner busy");
      throw new ApiError(422, "rejected", "the upload was rejected: malware found (Eicar-Signature)");
    };
    const done = uploadAttachment(api(complete), TEAM, file, () => undefined, () => new FakeXhr(), async () => undefined);
    await new Promise((r) => setTimeout(r, 0));
    (FakeXhr.last as FakeXhr).status = 204;
    FakeXhr.last?.onload?.();
    await expect(done).rejects.toThrow("“cat.png” was refused: the virus scanner found Eicar-Signature in it.");
    expect(calls).toBe(2);
  });

  it("words the server's refusals for a person: an empty file, a disguised one, an odd name", () => {
    const why = (status: number, message: string, details?: Record<string, string>) => refusal(new ApiError(status, "x", message, null, details));
    expect(why(422, "invalid attachment request", { size: "must be at least 1 byte" })).toBe("the file is empty");
    // A size refused among other fields, and a limit an operator set below a megabyte.
    expect(why(422, "invalid attachment request", { size: "too large", filename: "no usable file name" })).toBe("it is too large");
    expect(why(413, "attachments are limited to 262144 bytes", { size: "too large" })).toBe("it is larger than 256 KB, the most one file may be");
    expect(why(422, "the upload was rejected: the content is not image/png")).toBe("its content is not what its type says (image/png)");
    expect(why(422, "invalid attachment request", { filename: "nothing left" })).toMatch(/^its name cannot be used/);
    expect(why(409, "this attachment was decided concurrently; ask again")).toBe("this attachment was decided concurrently; ask again");
  });

  it("reads S3's XML refusal", () => {
    expect(s3Reason("<Error><Code>AccessDenied</Code><Message>Policy expired</Message></Error>")).toBe("Policy expired");
    expect(s3Reason("<Error><Code>EntityTooLarge</Code></Error>")).toBe("the file is larger than declared");
  });
});
