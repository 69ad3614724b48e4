import { describe, expect, it } from "vitest";
import { tabPlaceOf, tabUnsentOf } from "../src/app/place";

function memory() {
  const items = new Map<string, string>();
  return { getItem: (k: string) => items.get(k) ?? null, setItem: (k: string, v: string) => void items.set(k, v), removeItem: (k: string) => void items.delete(k), items };
}

describe("the tab's place", () => {
  it("gives back the team and conversation saved, to the same account only", () => {
    const storage = memory();
    tabPlaceOf(() => storage, "ada").save("t1", "bob");
    expect(tabPlaceOf(() => storage, "ada").load()).toEqual({ team: "t1", conversation: "bob" });
    // Someone else signing in next in this tab learns nothing of where Ada was.
    expect(tabPlaceOf(() => storage, "cy").load()).toBeNull();
    tabPlaceOf(() => storage, "ada").forget();
    expect(tabPlaceOf(() => storage, "ada").load()).toBeNull();
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
      removeItem: () => {
        throw new Error("SecurityError");
      },
    };
    expect(tabPlaceOf(() => refused, "ada").load()).toBeNull();
    expect(() => tabPlaceOf(() => refused, "ada").save("t1", "*")).not.toThrow();
    expect(() => tabPlaceOf(() => refused, "ada").forget()).not.toThrow();
    const unreachable = () => {
      throw new Error("SecurityError: sessionStorage is not available");
    };
    expect(tabPlaceOf(unreachable, "ada").load()).toBeNull();
  });
});

describe("the tab's unsent texts", () => {
  const storage = () => {
    const items = new Map<string, string>();
    return {
      getItem: (k: string) => items.get(k) ?? null,
      setItem: (k: string, v: string) => void items.set(k, v),
      removeItem: (k: string) => void items.delete(k),
      items,
    };
  };

  it("gives back each box's text to the same account only, and leaves nothing once all are sent", () => {
    const s = storage();
    tabUnsentOf(() => s, "ada").save(new Map([["t1/*", "half a"], ["t1/bob", "for bob"]]));
    expect([...tabUnsentOf(() => s, "ada").load()]).toEqual([
      ["t1/*", "half a"],
      ["t1/bob", "for bob"],
    ]);
    tabUnsentOf(() => s, "ada").save(new Map());
    expect(s.items.size).toBe(0);
    // Someone else signing in next gets nothing of Ada's, and it is not left in the tab.
    tabUnsentOf(() => s, "ada").save(new Map([["t1/*", "half a"]]));
    expect(tabUnsentOf(() => s, "cy").load().size).toBe(0);
    expect(s.items.size).toBe(0);
  });

  it("keeps nothing from what is not its own or not texts, and never throws where storage is refused", () => {
    const s = storage();
    for (const bad of ["{", "[]", '{"user":"ada","texts":7}', '{"user":"ada"}']) {
      s.items.set("chatstack.unsent", bad);
      expect(tabUnsentOf(() => s, "ada").load().size).toBe(0);
    }
    s.items.set("chatstack.unsent", '{"user":"ada","texts":{"t1/*":"ok","t1/bob":5}}');
    expect([...tabUnsentOf(() => s, "ada").load()]).toEqual([["t1/*", "ok"]]);
    const refused = () => {
      throw new Error("QuotaExceededError");
    };
    const keeper = tabUnsentOf(() => ({ getItem: refused, setItem: refused, removeItem: refused }), "ada");
    expect(keeper.load().size).toBe(0);
    expect(() => keeper.save(new Map([["t1/*", "x"]]))).not.toThrow();
  });
});
