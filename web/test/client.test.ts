import { describe, expect, it } from "vitest";
import { Api, ApiError } from "../src/api/client";
import { json, TEAM } from "./fixtures";

function tokens() {
  return {
    renewed: 0,
    token: async () => "old",
    async renew() {
      this.renewed += 1;
      return "new";
    },
  };
}

describe("Api", () => {
  it("unwraps data and meta, with the bearer token and JSON body", async () => {
    const seen: RequestInit[] = [];
    const api = new Api("http://h", tokens(), async (_url, init) => {
      seen.push(init ?? {});
      return json(200, { data: [{ id: 1 }], meta: { has_more: false } });
    });
    const page = await api.history(TEAM, { before: 10, limit: 5 });
    expect(page).toEqual({ data: [{ id: 1 }], meta: { has_more: false } });
    expect((seen[0]?.headers as Record<string, string>).Authorization).toBe("Bearer old");
  });

  it("turns the error envelope into an ApiError a person can read, with field reasons", async () => {
    const api = new Api("http://h", tokens(), async () =>
      json(422, { error: { code: "invalid", message: "invalid input", request_id: "r1", details: { name: "too long" } } }),
    );
    const err = await api.createTeam({ name: "x".repeat(200) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).status).toBe(422);
    expect((err as ApiError).readable).toBe("invalid input (name: too long)");
  });

  it("renews the token once on a 401 and retries, and gives up on a second 401", async () => {
    const auth: string[] = [];
    const t = tokens();
    const api = new Api("http://h", t, async (_url, init) => {
      auth.push((init?.headers as Record<string, string>).Authorization ?? "");
      return auth.length === 1 ? json(401, { error: { code: "unauthorized", message: "expired" } }) : json(200, { data: { id: "me" } });
    });
    expect(await api.me()).toEqual({ id: "me" });
    expect(auth).toEqual(["Bearer old", "Bearer new"]);
    const refused = new Api("http://h", tokens(), async () => json(401, { error: { code: "unauthorized", message: "no" } }));
    await expect(refused.me()).rejects.toMatchObject({ status: 401 });
  });

  it("keeps tokens out of every URL it builds and encodes path parts", async () => {
    const urls: string[] = [];
    const api = new Api("http://h", tokens(), async (url) => {
      urls.push(url);
      return json(204, null);
    });
    await api.react(TEAM, "m1", "👍", true);
    await api.markRead(TEAM, 7);
    expect(urls[0]).toBe(`http://h/v1/teams/${TEAM}/messages/m1/reactions/%F0%9F%91%8D`);
    for (const u of urls) expect(u).not.toContain("old");
  });

  it("reports an unreachable server plainly", async () => {
    const api = new Api("http://h", tokens(), async () => {
      throw new TypeError("Failed to fetch");
    });
    await expect(api.teams()).rejects.toMatchObject({ code: "network" });
  });
});
