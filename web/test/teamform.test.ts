import { describe, expect, it } from "vitest";
import { ApiError } from "../src/api/client";
import { readable } from "../src/app/notices";
import {
  addedMemberName,
  changedSettings,
  checkTeam,
  describeDetails,
  leaveChoice,
  nameProblem,
  normalEmail,
  parseTags,
  settingsOf,
  slugOf,
} from "../src/text/teamform";

describe("parseTags", () => {
  it("splits on commas only: a tag with a space is one tag to fix, never two tags", () => {
    expect(parseTags("backend, on-call,backend")).toEqual({ tags: ["backend", "on-call"], problem: null });
    const out = parseTags("Back End, ops");
    expect(out.tags).toEqual(["Back End", "ops"]);
    expect(out.problem).toBe("Tags are lower-case letters, digits and single dashes, up to 32 characters: change “Back End” (try “back-end”).");
  });

  it("refuses double dashes, over-long tags and more than 20 tags", () => {
    expect(parseTags("a--b").problem).toMatch(/“a--b” \(try “a-b”\)/);
    expect(parseTags("x".repeat(33)).problem).toMatch(/change/);
    expect(parseTags(Array.from({ length: 21 }, (_, i) => `t${i}`).join(",")).problem).toBe("At most 20 tags (there are 21).");
  });

  it("suggests a slug the server takes", () => {
    expect(slugOf("  Ops!! Team ")).toBe("ops-team");
  });
});

describe("checkTeam", () => {
  it("refuses a name with a text-direction override, as the server does", () => {
    expect(checkTeam("Core \u202eevil", "", "").name).toMatch(/text-direction/);
    expect(checkTeam("\u05e9\u05dc\u05d5\u05dd \u200f", "", "")).toEqual({});
  });

  it("refuses a name of only spaces, a non-http icon and bad tags, each under its field", () => {
    expect(checkTeam("   ", "not a url", "Back End")).toEqual({
      name: "Enter a name: spaces alone are not one.",
      icon: "Use an http:// or https:// address (like https://example.com/icon.png), or leave it empty.",
      meta_tags: expect.stringMatching(/try “back-end”/),
    });
    expect(checkTeam(" Core ", "https://example.com:8443/a.png?x=1", "backend, on-call")).toEqual({});
  });
});

describe("server validation errors", () => {
  it("are told per field in the form's words, not as the server's general sentence", () => {
    const err = new ApiError(422, "invalid", "request validation failed", null, { name: "must be 1-100 characters", meta_tags: "must be lower-case slugs." });
    expect(describeDetails(err.details ?? {})).toBe("Name: must be 1-100 characters. Tags: must be lower-case slugs.");
    expect(readable(err)).toBe("Name: must be 1-100 characters. Tags: must be lower-case slugs.");
    expect(readable(new ApiError(409, "conflict", "already a member"))).toBe("already a member");
  });
});

describe("changedSettings", () => {
  const initial = settingsOf({ name: "Core", icon: "https://example.com/a.png", meta_tags: ["backend", "on-call"] });

  it("fills the form from the team", () => {
    expect(initial).toEqual({ name: "Core", icon: "https://example.com/a.png", tags: "backend, on-call" });
  });

  it("sends only the field that was changed, so a stale form does not undo another admin's rename", () => {
    // Admin A renamed the team meanwhile; admin B, whose form still says "Core", adds a tag.
    expect(changedSettings(initial, { ...initial, tags: "backend, on-call, ops" })).toEqual({ meta_tags: ["backend", "on-call", "ops"] });
    expect(changedSettings(initial, { ...initial, name: "  Core team " })).toEqual({ name: "Core team" });
    expect(changedSettings(initial, { ...initial, icon: "" })).toEqual({ icon: "" });
    expect(changedSettings(initial, { name: "Ops", icon: " ", tags: "" })).toEqual({ name: "Ops", icon: "", meta_tags: [] });
  });

  it("is null when nothing changed: spaces, duplicate tags and the tags' order are no change", () => {
    expect(changedSettings(initial, initial)).toBeNull();
    expect(changedSettings(initial, { name: " Core ", icon: "https://example.com/a.png ", tags: "on-call,backend, backend" })).toBeNull();
  });

  it("sees a tag replaced by another as a change even when the count stays", () => {
    expect(changedSettings(initial, { ...initial, tags: "backend, ops" })).toEqual({ meta_tags: ["backend", "ops"] });
  });
});

describe("nameProblem", () => {
  it("is the team form's name rule, shared with registration", () => {
    expect(nameProblem("   ")).toBe("Enter a name: spaces alone are not one.");
    expect(nameProblem("x".repeat(101))).toBe("A name has at most 100 characters.");
    expect(nameProblem("a\u0007b")).toMatch(/control character/);
    expect(nameProblem(" Ada ")).toBeNull();
  });

  it("refuses a name that begins or ends with a character that shows nothing, as the API's Name pattern does", async () => {
    for (const blank of ["\u200b", "\u3164", "\u2800\u2800", "\u2060", "\u200bAda", "Ada\u200b", "\ufe0f"]) {
      expect(nameProblem(blank)).toBe("A name begins and ends with a character that shows: remove the invisible one.");
    }
    expect(nameProblem("Ada \u2764\ufe0f")).toBeNull();
    const { readFile } = await import("node:fs/promises");
    const doc = JSON.parse(await readFile(new URL("../../docs/openapi.json", import.meta.url), "utf8")) as {
      components: { schemas: { Name: { pattern: string } } };
    };
    const pattern = new RegExp(doc.components.schemas.Name.pattern);
    const samples = ["\u05e9\u05dc\u05d5\u05dd \u200f", "\u200f\u05e9", "\u200f", "Ada", " Ada ", "\u200b", "\u200bAda", "Ada\u200b", "Ada \u2764\ufe0f", "\ufe0f", "\u3164", "\u2800 x", "x \u2800", "\ufeffAda", "שלום", "a\u200db", "\u3000Zoë\u3000"];
    for (const name of samples) expect([name, nameProblem(name) === null]).toEqual([name, pattern.test(name)]);
  });
});

describe("addedMemberName", () => {
  const users = new Map<string, { email: string | null; name: string }>([
    ["u1", { email: "ada@example.com", name: "Ada" }],
    ["u2", { email: "ben@ex.com", name: "Ben" }],
    ["u4", { email: null, name: "Cy" }],
  ]);

  it("names the member with the address, however it was typed", () => {
    expect(addedMemberName("  BEN@EX.COM ", ["u1", "u2"], users)).toBe("Ben");
  });

  it("says the stored address when the member's profile is not known, never the raw input", () => {
    expect(addedMemberName("  BEN@EX.COM ", ["u1", "u3"], users)).toBe("ben@ex.com");
    expect(addedMemberName("Ben@Ex.com", ["u1"], users)).toBe("ben@ex.com");
    expect(normalEmail(" A@B.C ")).toBe("a@b.c");
  });

  it("passes over a profile read before the member shared a team (its email null)", () => {
    expect(addedMemberName("cy@ex.com", ["u4"], users)).toBe("cy@ex.com");
  });
});

describe("leaveChoice", () => {
  it("lets members and admins leave", () => {
    expect(leaveChoice({ super_admin: "a", members: ["a", "b"] }, "b")).toBe("leave");
  });

  it("asks the super admin to hand the role on while others remain", () => {
    expect(leaveChoice({ super_admin: "a", members: ["a", "b"] }, "a")).toBe("transfer-first");
  });

  it("offers the last member, the super admin, to leave and delete the team", () => {
    expect(leaveChoice({ super_admin: "a", members: ["a"] }, "a")).toBe("delete");
  });
});
