import { describe, expect, it } from "vitest";
import { safeHref, segments } from "../src/text/segments";
import { ME } from "./fixtures";

describe("segments", () => {
  it("keeps markup as plain text", () => {
    const s = `<img src=x onerror=alert(1)><script>alert(2)</script>`;
    expect(segments(s)).toEqual([{ kind: "text", text: s }]);
  });

  it("makes http(s) links, leaving trailing punctuation outside", () => {
    expect(segments("see https://example.com/a?b=1, then (http://x.org).")).toEqual([
      { kind: "text", text: "see " },
      { kind: "link", text: "https://example.com/a?b=1", href: "https://example.com/a?b=1" },
      { kind: "text", text: ", then (" },
      { kind: "link", text: "http://x.org", href: "http://x.org/" },
      { kind: "text", text: ")." },
    ]);
  });

  it("keeps a closing bracket that closes one opened in the link, and leaves the sentence's outside", () => {
    const wiki = "https://en.wikipedia.org/wiki/Rust_(programming_language)";
    expect(segments(`read ${wiki}.`)).toEqual([
      { kind: "text", text: "read " },
      { kind: "link", text: wiki, href: wiki },
      { kind: "text", text: "." },
    ]);
    expect(segments("(https://example.com/a_(b))")).toEqual([
      { kind: "text", text: "(" },
      { kind: "link", text: "https://example.com/a_(b)", href: "https://example.com/a_(b)" },
      { kind: "text", text: ")" },
    ]);
  });

  it("makes a link of an address that starts with www., over https, but not inside a word or an email", () => {
    expect(segments("go to www.example.com/docs, now")).toEqual([
      { kind: "text", text: "go to " },
      { kind: "link", text: "www.example.com/docs", href: "https://www.example.com/docs" },
      { kind: "text", text: ", now" },
    ]);
    expect(segments("awww.example.com and ada@www.example.com").every((s) => s.kind === "text")).toBe(true);
    expect(segments("is it www.. or www./x?").every((s) => s.kind === "text")).toBe(true);
  });

  it("never makes links of other schemes", () => {
    expect(segments("javascript:alert(1) data:text/html,x").every((s) => s.kind === "text")).toBe(true);
    expect(safeHref("javascript:alert(1)")).toBeNull();
    expect(safeHref("https://ok.example/")).toBe("https://ok.example/");
  });

  it("turns <@user_id> into a mention", () => {
    expect(segments(`hi <@${ME}>!`)).toEqual([
      { kind: "text", text: "hi " },
      { kind: "mention", userId: ME },
      { kind: "text", text: "!" },
    ]);
  });

  it("leaves text-direction controls out, so an override cannot make a text or a link read as another", () => {
    expect(segments("invoice\u202efdp.exe")).toEqual([{ kind: "text", text: "invoicefdp.exe" }]);
    expect(segments("see https://example.com/\u202egro.live and \u2067עברית\u2069")).toEqual([
      { kind: "text", text: "see " },
      { kind: "link", text: "https://example.com/gro.live", href: "https://example.com/gro.live" },
      { kind: "text", text: " and עברית" },
    ]);
  });
});
