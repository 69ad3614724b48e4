import { describe, expect, it } from "vitest";
import type { User } from "../src/api/types";
import { People } from "../src/app/people";
import { BOB, FakeClock, flush, ME } from "./fixtures";

function setup() {
  const answers = new Map<string, (u: User) => void>();
  const asked: string[] = [];
  let changes = 0;
  const people = new People(
    {
      user: (id: string) => {
        asked.push(id);
        return new Promise<User>((resolve) => answers.set(id, resolve));
      },
    },
    new FakeClock(),
    () => (changes += 1),
    { id: ME, email: "me@x", name: "Me" },
  );
  return { people, asked, answers, changes: () => changes };
}

describe("People", () => {
  it("keeps a name a profile frame told while that user's lookup was in flight", async () => {
    const s = setup();
    expect(s.people.name(BOB)).toBe("…");
    s.people.renamed(BOB, "Robert");
    // The lookup's answer was read before the rename: the frame's name wins.
    s.answers.get(BOB)?.({ id: BOB, email: "b@x", name: "Bob" });
    await flush();
    expect(s.people.name(BOB)).toBe("Robert");
    // A later frame applies as usual; the remembered one is gone once used.
    s.people.renamed(BOB, "Rob");
    expect(s.people.name(BOB)).toBe("Rob");
    expect(s.asked).toEqual([BOB]);
  });

  it("updates a known name once per change, and ignores a frame for someone never looked up", () => {
    const s = setup();
    s.people.renamed(ME, "Me Renamed");
    s.people.renamed(ME, "Me Renamed");
    expect(s.people.name(ME)).toBe("Me Renamed");
    expect(s.changes()).toBe(1);
    s.people.renamed(BOB, "Bob");
    expect(s.people.users.has(BOB)).toBe(false);
    expect(s.asked).toEqual([]);
  });
});
