import { describe, expect, it } from "vitest";
import { byName } from "../src/text/order";

describe("byName", () => {
  it("orders numbers in names by their value, and ignores case as people do", () => {
    expect(["Member 10", "member 2", "Member 1", "Ada"].sort(byName)).toEqual(["Ada", "Member 1", "member 2", "Member 10"]);
  });
});
