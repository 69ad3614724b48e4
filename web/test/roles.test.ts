import { describe, expect, it } from "vitest";
import type { Team } from "../src/api/types";
import { allowed, dmClosed, formerDmPartners, lastEditable, mayDelete, mayEdit, mayWrite, roleNews, roleOf } from "../src/state/roles";
import { initials } from "../src/ui/format";
import { BOB, ME, msg, TEAM } from "./fixtures";

const CY = "c".repeat(32);
const WINDOW = 300_000;
const team: Team = { id: TEAM, name: "Core", icon: "", active: true, meta_tags: [], members: [ME, BOB, CY], admins: [ME, BOB], super_admin: ME, doc: "" };

describe("roles", () => {
  it("names each member's role from the team document", () => {
    expect([roleOf(team, ME), roleOf(team, BOB), roleOf(team, CY)]).toEqual(["super_admin", "admin", "user"]);
  });

  it("offers seed 002's buttons: admins edit and remove users, the super_admin everything", () => {
    const admin = allowed(team, BOB);
    expect([admin.editTeam, admin.addMembers, admin.electDismiss, admin.transfer, admin.deactivate]).toEqual([true, true, false, false, false]);
    expect([admin.remove(CY), admin.remove(ME), admin.remove(BOB)]).toEqual([true, false, false]);
    const superAdmin = allowed(team, ME);
    expect([superAdmin.electDismiss, superAdmin.transfer, superAdmin.deactivate, superAdmin.remove(BOB), superAdmin.remove(ME)]).toEqual([true, true, true, true, false]);
    const user = allowed(team, CY);
    expect([user.editTeam, user.addMembers, user.remove(BOB), user.deactivate]).toEqual([false, false, false, false]);
  });

  it("lets authors delete within the window and admins any time, not other members", () => {
    const cys = msg(1, { from: CY });
    const sent = Date.parse(cys.ts);
    expect(mayDelete(team, CY, cys, sent + 60_000, WINDOW)).toBe(true);
    expect(mayDelete(team, CY, cys, sent + WINDOW + 1, WINDOW)).toBe(false);
    expect(mayDelete(team, CY, msg(2, { from: ME }), sent, WINDOW)).toBe(false);
    expect(mayDelete(team, BOB, cys, sent + 10 * WINDOW, WINDOW)).toBe(true);
    expect(mayDelete(team, BOB, { ...cys, deleted: true }, sent, WINDOW)).toBe(false);
  });

  it("offers edit on one's own text within the window the server announced; an admin's any time", () => {
    const cys = msg(1, { from: CY });
    const sent = Date.parse(cys.ts);
    expect(mayEdit(team, CY, cys, sent + WINDOW, WINDOW)).toBe(true);
    expect(mayEdit(team, CY, cys, sent + WINDOW + 1, WINDOW)).toBe(false);
    expect(mayEdit(team, CY, cys, sent + WINDOW + 1, 2 * WINDOW)).toBe(true);
    expect(mayEdit(team, BOB, cys, sent, WINDOW)).toBe(false);
    const bobs = msg(3, { from: BOB });
    expect(mayEdit(team, BOB, bobs, sent + 10 * WINDOW, WINDOW)).toBe(true);
    expect(mayEdit(team, BOB, { ...bobs, type: "image" }, sent, WINDOW)).toBe(false);
  });

  it("opens with ArrowUp only a message the member may still edit", () => {
    const old = msg(1, { from: CY });
    const fresh = msg(2, { from: CY });
    const sentFresh = Date.parse(fresh.ts);
    expect(lastEditable([old, fresh, msg(3)], team, CY, sentFresh + 1000, WINDOW)?.id).toBe("m2");
    // Past the window for both: nothing opens (the server would answer 403).
    expect(lastEditable([old, fresh], team, CY, sentFresh + WINDOW + 1, WINDOW)).toBeUndefined();
    // An image or a deleted text is skipped for an older editable text.
    expect(lastEditable([fresh, { ...old, seq: 5, id: "m5", type: "image" }], team, CY, sentFresh, WINDOW)?.id).toBe("m2");
  });
});

describe("what the reader is told", () => {
  it("says a role change the way it went: up, down, or the super admin role handed over", () => {
    expect(roleNews("Core", "user", "admin")).toBe("You are now an admin of Core.");
    expect(roleNews("Core", "admin", "user")).toBe("You are no longer an admin of Core.");
    expect(roleNews("Core", "super_admin", "user")).toBe("You are no longer an admin of Core.");
    expect(roleNews("Core", "admin", "super_admin")).toBe("You are now the super admin of Core.");
    expect(roleNews("Core", "super_admin", "admin")).toBe("You are no longer the super admin of Core; you are still an admin.");
  });

  it("closes a DM whose other person left the team, and nothing else", () => {
    expect(dmClosed(team, "*", "Core")).toBeNull();
    expect(dmClosed(team, BOB, "Bob")).toBeNull();
    expect(dmClosed(team, ME, "Me")).toBeNull();
    expect(dmClosed(team, "d".repeat(32), "Dee")).toBe("Dee is no longer a member of this team");
  });
});

describe("initials", () => {
  it("offers no edit, delete or reaction in a deactivated team, to anyone (the server refuses them)", () => {
    const closed = { ...team, active: false };
    const mine = msg(1, { from: ME });
    const sent = Date.parse(mine.ts);
    expect(mayWrite(team)).toBe(true);
    expect(mayWrite(closed)).toBe(false);
    expect(mayEdit(closed, ME, mine, sent, WINDOW)).toBe(false);
    expect(mayDelete(closed, ME, mine, sent, WINDOW)).toBe(false);
    expect(lastEditable([mine], closed, ME, sent, WINDOW)).toBeUndefined();
  });

  it("takes whole characters, never half of an emoji", () => {
    expect(initials("Bob \u{1F43B} Brown")).toBe("B\u{1F43B}");
    expect(initials("\u{1F43B}bear")).toBe("\u{1F43B}B");
    expect(initials("ada lovelace")).toBe("AL");
    expect(initials("   ")).toBe("?");
  });
});

describe("formerDmPartners", () => {
  it("lists people no longer members whom the user has DMs with, most recent first", () => {
    const DEE = "d".repeat(32);
    const EVE = "e".repeat(32);
    const held = [
      msg(1, { from: DEE, to: ME }),
      msg(2, { from: ME, to: EVE }),
      msg(3, { from: BOB, to: ME }),
      msg(4, { from: ME, to: "*" }),
      msg(5, { from: ME, to: DEE }),
      msg(6, { from: CY, to: BOB }),
      msg(7, { from: ME, to: ME }),
    ];
    expect(formerDmPartners(held, [ME, BOB], ME)).toEqual([DEE, EVE]);
    expect(formerDmPartners(held, [ME, BOB, DEE, EVE], ME)).toEqual([]);
  });

  it("skips conversations whose every held DM was deleted", () => {
    const DEE = "d".repeat(32);
    expect(formerDmPartners([msg(1, { from: DEE, to: ME, deleted: true })], [ME], ME)).toEqual([]);
  });
});
