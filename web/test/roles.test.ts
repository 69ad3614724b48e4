import { describe, expect, it } from "vitest";
import type { Team } from "../src/api/types";
import { allowed, mayDelete, roleOf } from "../src/state/roles";
import { decodeMentions, encodeMentions } from "../src/ui/format";
import { BOB, ME, TEAM } from "./fixtures";

const CY = "c".repeat(32);
const team: Team = { id: TEAM, name: "Core", icon: "", active: true, meta_tags: [], members: [ME, BOB, CY], admins: [ME, BOB], super_admin: ME, doc: "" };

describe("roles", () => {
  it("names each member's role from the team document", () => {
    expect([roleOf(team, ME), roleOf(team, BOB), roleOf(team, CY)]).toEqual(["super_admin", "admin", "user"]);
  });

  it("offers seed 002's buttons: admins edit and remove users, the super_admin everything", () => {
    const admin = allowed(team, BOB);
    expect([admin.editTeam, admin.addMembers, admin.electDismiss, admin.transfer]).toEqual([true, true, false, false]);
    expect([admin.remove(CY), admin.remove(ME), admin.remove(BOB)]).toEqual([true, false, false]);
    const superAdmin = allowed(team, ME);
    expect([superAdmin.electDismiss, superAdmin.transfer, superAdmin.remove(BOB), superAdmin.remove(ME)]).toEqual([true, true, true, false]);
    const user = allowed(team, CY);
    expect([user.editTeam, user.addMembers, user.remove(BOB)]).toEqual([false, false, false]);
  });

  it("lets authors and admins delete, not other members", () => {
    expect(mayDelete(team, CY, CY)).toBe(true);
    expect(mayDelete(team, CY, ME)).toBe(false);
    expect(mayDelete(team, BOB, CY)).toBe(true);
  });
});

describe("mentions in the composer", () => {
  it("turns @Name of a member into <@id>, longest names first, and back for editing", () => {
    const members = [
      { id: BOB, name: "Bob" },
      { id: CY, name: "Bob Jr" },
    ];
    const encoded = encodeMentions("hi @Bob Jr and @Bob, not @Eve", members);
    expect(encoded).toBe(`hi <@${CY}> and <@${BOB}>, not @Eve`);
    expect(decodeMentions(encoded, (id) => (id === BOB ? "Bob" : "Bob Jr"))).toBe("hi @Bob Jr and @Bob, not @Eve");
  });
});
