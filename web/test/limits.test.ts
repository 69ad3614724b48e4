import { describe, expect, it } from "vitest";
import { MAX_TEXT_CHARS, retryable, textCounter, textLength, textProblem } from "../src/text/limits";

describe("textProblem", () => {
  it("takes 4,000 characters, counting an emoji as one as the server does, and refuses 4,001", () => {
    expect(textProblem("x".repeat(MAX_TEXT_CHARS))).toBeNull();
    expect(textLength("😀".repeat(MAX_TEXT_CHARS))).toBe(MAX_TEXT_CHARS);
    expect(textProblem("😀".repeat(MAX_TEXT_CHARS))).toBeNull();
    expect(textProblem("x".repeat(MAX_TEXT_CHARS + 1))).toBe("Too long: 4,001 of at most 4,000 characters. Shorten it or split it into several messages.");
  });

  it("allows newline and tab, refuses other control characters and broken characters", () => {
    expect(textProblem("a\n\tb")).toBeNull();
    expect(textProblem("a\u0007b")).toBe("Contains an invisible control character (U+0007) that cannot be sent; remove it.");
    expect(textProblem("a\r\nb")).toMatch(/U\+000D/);
    expect(textProblem("a\u0085b")).toMatch(/U\+0085/);
    expect(textProblem("a\ud800b")).toBe("Contains a broken character that cannot be sent; remove it.");
  });

  it("refuses a text of only whitespace, the server's kinds included", () => {
    expect(textProblem(" \n\u3000\u00a0")).toBe("Write something first.");
  });

  it("refuses a text of only invisible characters (zero-width space, BOM, Braille blank), and takes them beside a visible one", () => {
    for (const blank of ["\u200b", "\ufeff\u2028", "\u2800", "\u3164 \u200d", "\u2066\u2069\u00ad"]) expect(textProblem(blank)).toBe("Write something first.");
    expect(textProblem("a\u200b")).toBeNull();
    expect(textProblem("\u{1F468}\u200d\u{1F469}")).toBeNull();
  });

  it("agrees with the edit text pattern of docs/openapi.json, which the server's rule is held to", async () => {
    const { readFile } = await import("node:fs/promises");
    const doc = JSON.parse(await readFile(new URL("../../docs/openapi.json", import.meta.url), "utf8")) as {
      components: { schemas: { MessageEdit: { properties: { data: { pattern: string } } } } };
    };
    const pattern = new RegExp(doc.components.schemas.MessageEdit.properties.data.pattern);
    const samples = ["a", " a ", "\u200b", "\u200ba", "\u2800", "\u3000", "x\ty", "\ufeff", "\u034f", "\u2067", "é", "\u00ad-", "\u180e", "\uffa0", "\u061c", "\ufe0f", "\u2764\ufe0f", "\u206a", "\u180b", "\u17b4", "\ufffa"];
    for (const text of samples) expect([text, textProblem(text) === null]).toEqual([text, pattern.test(text)]);
  });
});

describe("textCounter", () => {
  it("shows the count only near the limit", () => {
    expect(textCounter("x".repeat(3499))).toBeNull();
    expect(textCounter("x".repeat(3612))).toBe("3,612 / 4,000");
  });
});

describe("retryable", () => {
  it("retries only what the server may take later (busy, rate limited)", () => {
    expect(["rate_limited", "unavailable", "invalid", "too_large", "forbidden"].map(retryable)).toEqual([true, true, false, false, false]);
  });
});
