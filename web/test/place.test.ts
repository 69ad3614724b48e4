import { describe, expect, it } from "vitest";
import { tabPlaceOf } from "../src/app/place";

function memory() {
  const items = new Map<string, string>();
  return { getItem: (k: string) => items.get(k) ?? null, setItem: (k: string, v: string) => void items.set(k, v), items };
}

describe("the tab's place", () => {
  it("gives back the team and conversation saved, to the same account only", () => {
    const storage = memory();
    tabPlaceOf(() => storage, "ada").save("t1", "bob");
    expect(tabPlaceOf(() => storage, "ada").load()).toEqual({ team: "t1", conversation: "bob" });
    // Someone else signing in next in this tab learns nothing of where Ada was.
    expect(tabPlaceOf(() => storage, "cy").load()).toBeNull();
  });

  it("starts afresh from nothing, from what is not its own, and where storage is refused", () => {
    const storage = memory();
    expect(tabPlaceOf(() => storage, "ada").load()).toBeNull();
    for (const bad of ["{", "7", '{"user":"ada","team":3,"conversation":"*"}', '"t1"']) {
      storage.items.set("chatstack.place", bad);
      expect(tabPlaceOf(() => storage, "ada").load()).toBeNull();
    }
    const refused = {
      getItem: () => {
        throw new Error("SecurityError");
      },
      setItem: () => {
        throw new Error("SecurityError");
      },
    };
    expect(tabPlaceOf(() => refused, "ada").load()).toBeNull();
    expect(() => tabPlaceOf(() => refused, "ada").save("t1", "*")).not.toThrow();
    const unreachable = () => {
      throw new Error("SecurityError: sessionStorage is not available");
    };
    expect(tabPlaceOf(unreachable, "ada").load()).toBeNull();
  });
});
