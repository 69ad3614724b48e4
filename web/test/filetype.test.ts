import { describe, expect, it } from "vitest";
import { ACCEPTED_TYPES, declaredType, looksLikeText } from "../src/upload/filetype";

const text = (s: string) => new TextEncoder().encode(s);

describe("declaredType", () => {
  it("keeps a type the server takes", () => {
    expect(declaredType("image/png", new Uint8Array([0x89, 0x50]))).toBe("image/png");
    expect(declaredType("text/plain", text("hi"))).toBe("text/plain");
  });

  it("declares text files the browser types otherwise (or not at all) as plain text", () => {
    expect(declaredType("text/csv", text("a,b\n1,2\n"))).toBe("text/plain");
    expect(declaredType("application/json", text('{"a": 1}'))).toBe("text/plain");
    expect(declaredType("text/markdown", text("# Notes\n\nÉté — ok\n"))).toBe("text/plain");
    expect(declaredType("", text("README\n\tindented\r\n"))).toBe("text/plain");
    expect(declaredType("application/octet-stream", text("key: value\n"))).toBe("text/plain");
    expect(declaredType("video/mp2t", text("export const x: number = 1;\n"))).toBe("text/plain");
  });

  it("leaves markup and binaries to the server's refusal", () => {
    expect(declaredType("text/html", text("<p>hi</p>"))).toBe("text/html");
    expect(declaredType("image/svg+xml", text("<svg/>"))).toBe("image/svg+xml");
    expect(declaredType("application/atom+xml", text("<feed/>"))).toBe("application/atom+xml");
    expect(declaredType("", new Uint8Array([0x7f, 0x45, 0x4c, 0x46, 0, 1]))).toBe("application/octet-stream");
    expect(declaredType("image/bmp", new Uint8Array([0x42, 0x4d, 0, 0]))).toBe("image/bmp");
  });
});

describe("looksLikeText", () => {
  it("takes UTF-8 cut inside a character at the end of the sample", () => {
    const euro = text("price: 5€");
    expect(looksLikeText(euro.slice(0, euro.length - 1))).toBe(true);
  });

  it("refuses empty samples, NUL bytes, stray control characters and invalid UTF-8", () => {
    expect(looksLikeText(new Uint8Array())).toBe(false);
    expect(looksLikeText(text("a\u0000b"))).toBe(false);
    expect(looksLikeText(text("a\u0007b"))).toBe(false);
    expect(looksLikeText(new Uint8Array([0x61, 0xff, 0x62]))).toBe(false);
  });
});

describe("ACCEPTED_TYPES", () => {
  it("is the API's list of attachment types (docs/openapi.json's ContentType), kept in step", async () => {
    const { readFile } = await import("node:fs/promises");
    const doc = JSON.parse(await readFile(new URL("../../docs/openapi.json", import.meta.url), "utf8")) as {
      components: { schemas: { ContentType: { enum: string[] } } };
    };
    expect([...ACCEPTED_TYPES].sort()).toEqual([...doc.components.schemas.ContentType.enum].sort());
  });
});
