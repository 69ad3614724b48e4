import { describe, expect, it } from "vitest";
import { type Api, ApiError } from "../src/api/client";
import type { Attachment } from "../src/api/types";
import { MessageActions } from "../src/app/messages";
import { Notices } from "../src/app/notices";
import { ChannelTimeline } from "../src/state/timeline";
import { FakeClock, flush, ME } from "./fixtures";

function setup(answer: (id: string, asked: number) => Promise<Attachment>) {
  const clock = new FakeClock();
  const asked: string[] = [];
  let running = 0;
  let most = 0;
  const api = {
    attachment: async (id: string) => {
      asked.push(id);
      running += 1;
      most = Math.max(most, running);
      try {
        return await answer(id, asked.filter((a) => a === id).length);
      } finally {
        running -= 1;
      }
    },
  } as unknown as Api;
  const timeline = new ChannelTimeline();
  const actions = new MessageActions({ api, clock, me: ME, timeline: () => timeline, notices: new Notices(clock, () => undefined), changed: () => undefined });
  return { clock, actions, asked, most: () => most };
}

const link = (id: string): Attachment => ({ id, expires_at: new Date(Date.now() + 300_000).toISOString() }) as unknown as Attachment;

describe("MessageActions.attachment", () => {
  it("asks for at most two links at once, however many pictures are shown together", async () => {
    const gates: (() => void)[] = [];
    const s = setup((id) => new Promise((resolve) => gates.push(() => resolve(link(id)))));
    const all = ["a", "b", "c", "d", "e"].map((id) => s.actions.attachment(id));
    await flush();
    expect(s.asked).toEqual(["a", "b"]);
    while (gates.length > 0) {
      gates.shift()?.();
      await flush();
    }
    expect((await Promise.all(all)).map((a) => a.id)).toEqual(["a", "b", "c", "d", "e"]);
    expect(s.most()).toBe(2);
  });

  it("asks again after a pause while the server is busy (its scan slots taken), and gives up on a refusal", async () => {
    const s = setup(async (id, n) => {
      if (id === "gone") throw new ApiError(404, "not_found", "no such attachment");
      if (n < 3) throw new ApiError(503, "unavailable", "too many of your history requests at once, retry");
      return link(id);
    });
    const busy = s.actions.attachment("pic");
    await flush();
    expect(s.asked).toEqual(["pic"]);
    s.clock.advance(500);
    await flush();
    s.clock.advance(1000);
    await flush();
    expect((await busy).id).toBe("pic");
    expect(s.asked).toEqual(["pic", "pic", "pic"]);
    await expect(s.actions.attachment("gone")).rejects.toMatchObject({ status: 404 });
    expect(s.asked.filter((a) => a === "gone")).toHaveLength(1);
  });
});

describe("MessageActions.edit", () => {
  function editing(fail: ApiError | Error | null) {
    const clock = new FakeClock();
    const notices = new Notices(clock, () => undefined);
    const api = {
      edit: async (_t: string, id: string, data: string) => {
        if (fail) throw fail;
        return { id, seq: 1, channel_id: "t", to: "*", type: "text", data, from: ME, ts: new Date(0).toISOString() };
      },
    } as unknown as Api;
    const actions = new MessageActions({ api, clock, me: ME, timeline: () => new ChannelTimeline(), notices, changed: () => undefined });
    return { actions, notices };
  }

  it("says whether an edit was saved, may be tried again, or never will be (window passed, message gone)", async () => {
    expect(await editing(null).actions.edit("t", "m1", "new")).toBe("saved");
    expect(await editing(new ApiError(503, "unavailable", "busy")).actions.edit("t", "m1", "new")).toBe("retry");
    expect(await editing(new ApiError(422, "invalid", "too long")).actions.edit("t", "m1", "new")).toBe("retry");
    expect(await editing(new Error("offline")).actions.edit("t", "m1", "new")).toBe("retry");
    const late = editing(new ApiError(403, "forbidden", "messages can be edited for 300 s"));
    expect(await late.actions.edit("t", "m1", "new")).toBe("refused");
    expect(late.notices.list.map((n) => n.text)).toEqual([
      "Could not edit the message: Not allowed: messages can be edited for 300 s",
      "What you typed is still in the box: send it as a new message, or clear it.",
    ]);
    expect(await editing(new ApiError(404, "not_found", "no such message")).actions.edit("t", "m1", "new")).toBe("refused");
    // Deleted meanwhile (an admin, another tab): saving again could only fail again.
    expect(await editing(new ApiError(409, "conflict", "the message was deleted")).actions.edit("t", "m1", "new")).toBe("refused");
  });
});
