import { describe, expect, it } from "vitest";
import { distinctLabels } from "../src/text/names";

describe("distinctLabels", () => {
  it("adds the email to names that look alike (case, Unicode forms), and only to those", () => {
    const labels = distinctLabels([
      { id: "a".repeat(32), name: "Sam", email: "sam.k@example.com" },
      { id: "b".repeat(32), name: "sam", email: "sam.b@example.com" },
      { id: "c".repeat(32), name: "Zo\u00eb", email: "zoe1@example.com" },
      { id: "d".repeat(32), name: "Zoe\u0308", email: null },
      { id: "e".repeat(32), name: "Ada", email: "ada@example.com" },
    ]);
    expect([...labels.values()]).toEqual([
      "Sam (sam.k@example.com)",
      "sam (sam.b@example.com)",
      "Zo\u00eb (zoe1@example.com)",
      "Zoe\u0308 (#dddddd)",
      "Ada",
    ]);
  });
});
