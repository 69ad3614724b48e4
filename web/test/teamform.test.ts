import { describe, expect, it } from "vitest";
import { ApiError } from "../src/api/client";
import { readable } from "../src/app/chat";
import { checkTeam, describeDetails, parseTags, slugOf } from "../src/text/teamform";

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
