import { describe, expect, it } from "vitest";
import type { Attachment } from "../src/api/types";
import { boxKey, Outbox, type UnsentKeeper, type Uploader } from "../src/app/outbox";
import { UploadError } from "../src/upload/upload";
import { BOB, FakeClock, ME, msg, TEAM } from "./fixtures";

const OTHER_TEAM = "o".repeat(31) + "2";

function setup(upload: Uploader = () => Promise.reject(new Error("no uploads here")), kept?: UnsentKeeper) {
  const clock = new FakeClock();
  const wire = { up: true, frames: [] as Record<string, unknown>[], reconnects: [] as string[] };
  const said: string[] = [];
  let ids = 0;
  const outbox = new Outbox({
    upload,
    socket: {
      send: (frame) => {
        if (wire.up) wire.frames.push(frame as Record<string, unknown>);
        return wire.up;
      },
      reconnect: (detail) => wire.reconnects.push(detail),
    },
    clock,
    newId: () => `c${++ids}`,
    changed: () => undefined,
    announce: (text) => said.push(text),
    ...(kept ? { kept } : {}),
  });
  return { outbox, clock, wire, said };
}

const CHANNEL = { channel: TEAM, to: "*", threadId: null };

describe("Outbox", () => {
  it("keeps a send pending through its ack until the message itself is held, in either order", () => {
    const { outbox } = setup();
    outbox.send(CHANNEL, "text", "first");
    outbox.send(CHANNEL, "text", "second");
    // The ack first, the message later: pending until the message arrives.
    outbox.acked({ type: "ack", client_msg_id: "c1", id: "m1", seq: 1, ts: "" }, () => false);
    expect([...outbox.pending.keys()]).toEqual(["c1", "c2"]);
    outbox.settle([msg(1)]);
    expect([...outbox.pending.keys()]).toEqual(["c2"]);
    // The message first (held by the timeline), then its ack: done at the ack.
    outbox.acked({ type: "ack", client_msg_id: "c2", id: "m2", seq: 2, ts: "" }, (channel, id) => channel === TEAM && id === "m2");
    expect(outbox.pending.size).toBe(0);
  });

  it("holds what was sent while the socket was down and sends it once on resend, with the same client_msg_id", () => {
    const { outbox, wire } = setup();
    wire.up = false;
    outbox.send(CHANNEL, "text", "while offline");
    expect(wire.frames).toEqual([]);
    wire.up = true;
    outbox.resend();
    outbox.acked({ type: "ack", client_msg_id: "c1", id: "m1", seq: 1, ts: "" }, () => false);
    // Acknowledged: a later resend (another hello) does not send it again.
    outbox.resend();
    expect(wire.frames).toEqual([{ channel_id: TEAM, to: "*", type: "text", data: "while offline", client_msg_id: "c1" }]);
  });

  it("gives texts never acknowledged back to their boxes when the team is dropped, and counts them", () => {
    const { outbox, wire } = setup();
    outbox.keepUnsent(boxKey(TEAM, "*", null), "typed, not sent");
    outbox.send(CHANNEL, "text", "acked already");
    outbox.acked({ type: "ack", client_msg_id: "c1", id: "m1", seq: 1, ts: "" }, () => false);
    wire.up = false;
    outbox.send(CHANNEL, "text", "written offline");
    outbox.send({ channel: TEAM, to: BOB, threadId: null }, "text", "to bob, offline");
    outbox.send(CHANNEL, "image", "a".repeat(32));
    outbox.send({ channel: OTHER_TEAM, to: "*", threadId: null }, "text", "elsewhere");
    expect(outbox.dropTeam(TEAM)).toBe(2);
    expect(outbox.unsent(boxKey(TEAM, "*", null))).toBe("typed, not sent\nwritten offline");
    expect(outbox.unsent(boxKey(TEAM, BOB, null))).toBe("to bob, offline");
    expect([...outbox.pending.values()].map((p) => p.data)).toEqual(["elsewhere"]);
  });

  it("sends several files one after another, their messages in the order given, though a later upload is faster", async () => {
    const { outbox, clock, wire } = setup((_team, file) => new Promise((resolve) => clock.setTimeout(() => resolve({ id: file.name.padEnd(32, "0"), kind: "file" } as Attachment), file.size)));
    const sending = outbox.sendFiles(CHANNEL, [new File(["x".repeat(30)], "slow"), new File(["x"], "fast")]);
    for (let i = 0; i < 40; i++) {
      clock.advance(1);
      await Promise.resolve();
    }
    await sending;
    expect(wire.frames.map((f) => String(f.data).replace(/0+$/, ""))).toEqual(["slow", "fast"]);
  });

  it("keeps a text handed back to an open box when the box closes with its own text, and once only when it opens again", () => {
    const { outbox, wire } = setup();
    const box = boxKey(TEAM, "*", null);
    expect(outbox.openBox(box)).toBe("");
    wire.up = false;
    outbox.send(CHANNEL, "text", "hi");
    outbox.keepUnsent(box, "still typing");
    expect(outbox.dropTeam(TEAM)).toBe(1);
    // The box closes with what it showed, which never had the text handed back.
    outbox.closeBox(box, "still typing");
    expect(outbox.unsent(box)).toBe("still typing\nhi");
    // Added back: the box opens with both, and closes with what the user made of them.
    expect(outbox.openBox(box)).toBe("still typing\nhi");
    outbox.closeBox(box, "still typing, hi");
    expect(outbox.unsent(box)).toBe("still typing, hi");
  });

  it("sends none of the files still waiting once their team is dropped", async () => {
    const started: string[] = [];
    const { outbox, clock, wire } = setup((_team, file) => {
      started.push(file.name);
      return new Promise((resolve) => clock.setTimeout(() => resolve({ id: file.name.padEnd(32, "0"), kind: "file" } as Attachment), 10));
    });
    const sending = outbox.sendFiles(CHANNEL, [new File(["x"], "first"), new File(["x"], "second")]);
    outbox.dropTeam(TEAM);
    clock.advance(10);
    await sending;
    expect(started).toEqual(["first"]);
    expect(wire.frames).toEqual([]);
  });

  it("reconnects when a send gets no ack within 20 s, not when the ack came", () => {
    const { outbox, clock, wire } = setup();
    outbox.send(CHANNEL, "text", "answered");
    outbox.acked({ type: "ack", client_msg_id: "c1", id: "m1", seq: 1, ts: "" }, () => false);
    clock.advance(20_000);
    expect(wire.reconnects).toEqual([]);
    outbox.send(CHANNEL, "text", "unanswered");
    clock.advance(19_999);
    expect(wire.reconnects).toEqual([]);
    clock.advance(1);
    expect(wire.reconnects).toEqual(["the server did not answer"]);
  });

  it("shows in each box only its own sends: the team's list, a DM, a thread", () => {
    const { outbox } = setup();
    outbox.send(CHANNEL, "text", "to the team");
    outbox.send({ channel: TEAM, to: BOB, threadId: null }, "text", "to bob");
    outbox.send({ channel: TEAM, to: "*", threadId: "m7" }, "text", "in a thread");
    outbox.send({ channel: OTHER_TEAM, to: "*", threadId: null }, "text", "elsewhere");
    const texts = (conversation: string, thread: string | null) => outbox.in(TEAM, conversation, thread, ME).map((p) => p.data);
    expect(texts("*", null)).toEqual(["to the team"]);
    expect(texts(BOB, null)).toEqual(["to bob"]);
    expect(texts("*", "m7")).toEqual(["in a thread"]);
  });

  it("resends a passing refusal by itself, then keeps it for Retry, and hands a final one back to its thread's box", () => {
    const { outbox, wire, said, clock } = setup();
    outbox.send(CHANNEL, "text", "too fast");
    outbox.send({ channel: TEAM, to: "*", threadId: "m7" }, "text", "not allowed");
    outbox.refused({ type: "error", code: "forbidden", message: "not a member", client_msg_id: "c2" });
    // A passing refusal (the server busy, a part of it restarting) goes again after 1, 2, 4, 8
    // and 8 s, still "sending"; the sixth refusal shows Retry.
    for (const wait of [1000, 2000, 4000, 8000, 8000]) {
      outbox.refused({ type: "error", code: "rate_limited", message: "slow down", client_msg_id: "c1" });
      expect(outbox.pending.get("c1")).toMatchObject({ status: "sending", error: null });
      const before = wire.frames.length;
      clock.advance(wait - 1);
      expect(wire.frames.length).toBe(before);
      clock.advance(1);
      expect(wire.frames.slice(before).map((f) => f.client_msg_id)).toEqual(["c1"]);
    }
    outbox.refused({ type: "error", code: "rate_limited", message: "slow down", client_msg_id: "c1" });
    expect(outbox.pending.get("c1")).toMatchObject({ status: "failed", error: "slow down", retryable: true });
    expect(said).toEqual(["Message not sent: not a member", "Message not sent: slow down"]);
    expect(wire.reconnects).toEqual([]); // every send was answered: the link is alive
    wire.frames.length = 0;
    outbox.retry("c2"); // refused for good: nothing goes
    outbox.retry("c1");
    expect(wire.frames.map((f) => f.client_msg_id)).toEqual(["c1"]);
    expect(outbox.pending.get("c1")).toMatchObject({ status: "sending", error: null });
    outbox.takeBack("c2");
    expect(outbox.draft).toMatchObject({ box: `${TEAM}/thread/m7`, text: "not allowed" });
    expect(outbox.pending.has("c2")).toBe(false);
  });

  it("takes a refusal that came late for an answer, not for a silent link, and resends without reconnecting", () => {
    const { outbox, wire, clock } = setup();
    outbox.send(CHANNEL, "text", "while Kafka is down");
    // The relay answers `unavailable` after Kafka's 15 s; the resend follows 1, 2, 4, 8, 8 s
    // after each answer: past the first send's 20 s ack deadline.
    for (const wait of [1000, 2000, 4000, 8000, 8000]) {
      clock.advance(15_000);
      outbox.refused({ type: "error", code: "unavailable", message: "temporarily unavailable; retry later", client_msg_id: "c1" });
      clock.advance(wait);
    }
    expect(wire.frames.map((f) => f.client_msg_id)).toEqual(["c1", "c1", "c1", "c1", "c1", "c1"]);
    expect(wire.reconnects).toEqual([]);
    // Silence after a resend still counts: no answer in 20 s makes the link suspect.
    clock.advance(20_000);
    expect(wire.reconnects).toEqual(["the server did not answer"]);
  });

  it("forgets what was on its way to a team the user left and its uploads, keeps its unsent texts, and touches no other team", async () => {
    const signals: AbortSignal[] = [];
    const { outbox, wire } = setup(
      (_team, _file, _progress, signal) =>
        new Promise((resolve) => {
          signals.push(signal);
          // The upload completes after the team was dropped: nothing is sent for it.
          signal.addEventListener("abort", () => resolve({ id: "late", kind: "file" } as Attachment));
        }),
    );
    wire.up = false;
    outbox.send(CHANNEL, "text", "here");
    outbox.send({ channel: OTHER_TEAM, to: "*", threadId: null }, "text", "there");
    const here = outbox.sendFile(CHANNEL, new File(["x"], "here.txt"));
    void outbox.sendFile({ channel: OTHER_TEAM, to: "*", threadId: null }, new File(["x"], "there.txt"));
    outbox.keepUnsent(boxKey(TEAM, "*", null), "half a sentence here");
    outbox.keepUnsent(boxKey(TEAM, "*", "root"), "a reply here");
    outbox.keepUnsent(boxKey(OTHER_TEAM, "*", null), "half a sentence there");
    outbox.dropTeam(TEAM);
    await here;
    // Kept for if the user is added back: their own words, the text that never went included.
    expect([outbox.unsent(boxKey(TEAM, "*", null)), outbox.unsent(boxKey(TEAM, "*", "root"))]).toEqual(["half a sentence here\nhere", "a reply here"]);
    expect(outbox.unsent(boxKey(OTHER_TEAM, "*", null))).toBe("half a sentence there");
    expect([...outbox.pending.values()].map((p) => p.data)).toEqual(["there"]);
    expect([...outbox.uploads.values()].map((u) => u.name)).toEqual(["there.txt"]);
    expect(signals.map((s) => s.aborted)).toEqual([true, false]);
    // Signing out stops the rest.
    outbox.signOut();
    expect(signals.map((s) => s.aborted)).toEqual([true, true]);
    expect(outbox.uploads.size).toBe(0);
  });

  it("sends an uploaded file as a message of its kind, and shows a failed upload with its reason until dismissed", async () => {
    const ready: Attachment = { id: "f1", kind: "image" } as Attachment;
    let fail = false;
    const { outbox, wire, said } = setup(async (_team, file, progress) => {
      progress(0.5);
      if (fail) throw new Error(`“${file.name}” refused: too large.`);
      return ready;
    });
    await outbox.sendFile(CHANNEL, new File(["x"], "cat.png", { type: "image/png" }));
    expect(wire.frames).toEqual([{ channel_id: TEAM, to: "*", type: "image", data: "f1", client_msg_id: "c1" }]);
    expect(outbox.uploads.size).toBe(0);
    fail = true;
    await outbox.sendFile(CHANNEL, new File(["x"], "big.bin"));
    expect([...outbox.uploads.values()]).toMatchObject([{ name: "big.bin", progress: 0.5, error: "“big.bin” refused: too large." }]);
    expect(said).toEqual(["“big.bin” refused: too large."]);
    expect(wire.frames).toHaveLength(1);
    outbox.dismissUpload([...outbox.uploads.keys()][0] ?? 0);
    expect(outbox.uploads.size).toBe(0);
  });

  it("offers Retry for a file that failed for want of a connection, and uploads it again after the next hello", async () => {
    const ready: Attachment = { id: "f2", kind: "file" } as Attachment;
    let online = false;
    const tried: string[] = [];
    const { outbox, wire } = setup(async (_team, file) => {
      tried.push(file.name);
      if (!online) throw new UploadError(`“${file.name}” could not be sent: the server cannot be reached.`, true);
      return ready;
    });
    await outbox.sendFile(CHANNEL, new File(["x"], "notes.txt"));
    expect([...outbox.uploads.values()]).toMatchObject([{ name: "notes.txt", retryable: true }]);
    // Refused for the file itself: no Retry, and a hello does not send it again.
    const refusing = setup(async () => {
      throw new UploadError("“a.exe” refused: files of this type cannot be attached.");
    });
    await refusing.outbox.sendFile(CHANNEL, new File(["x"], "a.exe"));
    expect([...refusing.outbox.uploads.values()]).toMatchObject([{ retryable: false }]);
    online = true;
    outbox.resend();
    await new Promise((r) => setTimeout(r, 0));
    expect(tried).toEqual(["notes.txt", "notes.txt"]);
    expect(outbox.uploads.size).toBe(0);
    expect(wire.frames).toEqual([{ channel_id: TEAM, to: "*", type: "file", data: "f2", client_msg_id: "c1" }]);
    outbox.resend();
    expect(tried).toHaveLength(2);
  });

  it("tells the sender when the server stored the file under another name", async () => {
    const { outbox, said } = setup(async () => ({ id: "f3", kind: "file", filename: "script.py.txt" }) as Attachment);
    await outbox.sendFile(CHANNEL, new File(["print(1)"], "script.py"));
    expect(said).toEqual(["“script.py” was sent as “script.py.txt”, the name its file type needs."]);
    said.length = 0;
    const same = setup(async () => ({ id: "f4", kind: "file", filename: "notes.txt" }) as Attachment);
    await same.outbox.sendFile(CHANNEL, new File(["x"], "notes.txt"));
    expect(same.said).toEqual([]);
  });

  it("keeps each box's unsent text where it outlives the page, and forgets all of it at sign-out", () => {
    const stored = new Map([["t/*", "from before the reload"]]);
    const saves: number[] = [];
    const { outbox } = setup(undefined, {
      load: () => new Map(stored),
      save: (texts) => {
        saves.push(texts.size);
        stored.clear();
        for (const [k, v] of texts) stored.set(k, v);
      },
    });
    expect(outbox.unsent("t/*")).toBe("from before the reload");
    outbox.keepUnsent("t/bob", "for bob");
    outbox.keepUnsent("t/bob", "for bob"); // unchanged: not written again
    outbox.keepUnsent("t/carol", "   "); // nothing there, nothing to write
    expect([...stored.keys()]).toEqual(["t/*", "t/bob"]);
    outbox.keepUnsent("t/*", "");
    expect([...stored.keys()]).toEqual(["t/bob"]);
    outbox.keepUnsent("u/*", "in a team about to be left");
    outbox.dropTeam("u");
    expect([...stored.keys()]).toEqual(["t/bob", "u/*"]);
    outbox.keepUnsent("w/*", "in a team left while the tab was closed");
    // The next start keeps the texts of the teams the user is in only.
    outbox.keepOnly((team) => team === "t");
    expect([...stored.keys()]).toEqual(["t/bob"]);
    outbox.signOut();
    expect(stored.size).toBe(0);
    expect(outbox.unsent("t/bob")).toBe("");
    // The boxes close after the sign-out and hand over what they held: nothing is kept.
    outbox.keepUnsent("t/bob", "for bob");
    expect(stored.size).toBe(0);
    expect(saves).toEqual([2, 1, 2, 3, 1, 0]);
  });

  it("keeps the unsent texts, and the texts still on their way, when the session ended without the user's say", () => {
    const stored = new Map<string, string>();
    const kept: UnsentKeeper = { load: () => new Map(stored), save: (texts) => (stored.clear(), texts.forEach((v, k) => stored.set(k, v))) };
    const { outbox, wire } = setup(undefined, kept);
    outbox.keepUnsent("t/bob", "a long draft for bob");
    wire.up = false;
    outbox.send(CHANNEL, "text", "sent while the link was down");
    outbox.signOut(true);
    expect(Object.fromEntries(stored)).toEqual({ "t/bob": "a long draft for bob", [boxKey(TEAM, "*", null)]: "sent while the link was down" });
    expect(outbox.pending.size).toBe(0);
    // The boxes close afterwards and hand over what they held: kept too.
    outbox.keepUnsent("t/carol", "half a word");
    expect(stored.get("t/carol")).toBe("half a word");
  });

  it("counts as unsaved what the server does not have yet: a send not acknowledged, failed or not, and a file still uploading", async () => {
    let finish: (a: Attachment) => void = () => undefined;
    const { outbox, wire } = setup(() => new Promise((resolve) => (finish = resolve)));
    expect(outbox.unsaved()).toBe(false);
    wire.up = false;
    outbox.send(CHANNEL, "text", "offline");
    expect(outbox.unsaved()).toBe(true);
    outbox.refused({ type: "error", code: "rate_limited", message: "slow down", client_msg_id: "c1" });
    expect(outbox.unsaved()).toBe(true);
    outbox.acked({ type: "ack", client_msg_id: "c1", id: "m1", seq: 1, ts: "" }, () => false);
    expect(outbox.unsaved()).toBe(false); // Kafka has it; only its delivery is awaited
    const upload = outbox.sendFile(CHANNEL, new File(["x"], "a.txt"));
    expect(outbox.unsaved()).toBe(true);
    finish({ id: "f1", kind: "file" } as Attachment);
    await upload;
    // The upload is done; its message is now a send on its way (the socket is down).
    expect(outbox.uploads.size).toBe(0);
    expect(outbox.unsaved()).toBe(true);
  });

  it("shows a thread's upload under the thread's box only, and a cancelled one goes without a word or a message", async () => {
    let signal: AbortSignal | null = null;
    const { outbox, wire, said } = setup(
      (_team, _file, _progress, s) =>
        new Promise((_resolve, reject) => {
          signal = s;
          s.addEventListener("abort", () => reject(new Error("cancelled")));
        }),
    );
    const upload = outbox.sendFile({ channel: TEAM, to: "*", threadId: "m7" }, new File(["x"], "slow.bin"));
    expect([...outbox.uploads.values()]).toMatchObject([{ channel: TEAM, to: "*", threadId: "m7", name: "slow.bin" }]);
    outbox.cancelUpload([...outbox.uploads.keys()][0] ?? 0);
    await upload;
    expect((signal as AbortSignal | null)?.aborted).toBe(true);
    expect(outbox.uploads.size).toBe(0);
    expect(said).toEqual([]);
    expect(wire.frames).toEqual([]);
    expect(outbox.unsaved()).toBe(false);
  });
});
