import { describe, expect, it } from "vitest";
import { decodeMentions, encodeMentions, insertMention, mentionLabels, mentionQuery, suggestMentions } from "../src/text/mentions";
import { BOB, ME } from "./fixtures";

const BOBBY = "c".repeat(32);
const BOB2 = "b".repeat(4) + "d".repeat(28);
const ADA_L = "e".repeat(32);
const team = [
  { id: ME, name: "Me" },
  { id: BOB, name: "Bob", email: "bob@example.com" },
  { id: BOBBY, name: "Bobby" },
  { id: ADA_L, name: "Ada Lovelace" },
];

describe("encodeMentions", () => {
  it("mentions a member at word boundaries, case-insensitively, before punctuation", () => {
    expect(encodeMentions("@Bob hi, (@bob), @Bob's turn, @Bob.", team)).toBe(`<@${BOB}> hi, (<@${BOB}>), <@${BOB}>'s turn, <@${BOB}>.`);
  });

  it("prefers the longest name: @Bobby is Bobby, never Bob", () => {
    expect(encodeMentions("@Bobby and @Bob", team)).toBe(`<@${BOBBY}> and <@${BOB}>`);
  });

  it("leaves an email address and a longer word alone", () => {
    expect(encodeMentions("write to support@Bob.example.com or @Bob.example.com or @Bobcat", team)).toBe(
      "write to support@Bob.example.com or @Bob.example.com or @Bobcat",
    );
  });

  it("mentions a member whose name changes length when lower-cased (İlker)", () => {
    const ilker = "f".repeat(32);
    expect(encodeMentions("hi @İlker, and @Bob", [...team, { id: ilker, name: "İlker" }])).toBe(`hi <@${ilker}>, and <@${BOB}>`);
  });

  it("matches a name with a space, and passes stored tokens through", () => {
    expect(encodeMentions(`@Ada Lovelace and <@${BOB}>`, team)).toBe(`<@${ADA_L}> and <@${BOB}>`);
  });

  it("mentions nobody for a bare shared name, and each member by their name#id label", () => {
    const two = [...team, { id: BOB2, name: "Bob" }];
    const labels = mentionLabels(two);
    // BOB and BOB2 share their first four characters, so their labels need five.
    expect([labels.get(BOB), labels.get(BOB2)]).toEqual(["Bob#bbbbb", "Bob#bbbbd"]);
    expect(encodeMentions("@Bob ?", two)).toBe("@Bob ?");
    expect(encodeMentions("@Bob#bbbbd and @Bob#bbbbb", two)).toBe(`<@${BOB2}> and <@${BOB}>`);
  });
});

describe("decodeMentions", () => {
  it("turns <@id> back into @Name for editing, round trip included", () => {
    const members = [
      { id: BOB, name: "Bob" },
      { id: BOBBY, name: "Bob Jr" },
    ];
    const encoded = encodeMentions("hi @Bob Jr and @Bob, not @Eve", members);
    expect(encoded).toBe(`hi <@${BOBBY}> and <@${BOB}>, not @Eve`);
    expect(decodeMentions(encoded, members)).toBe("hi @Bob Jr and @Bob, not @Eve");
  });

  it("gives back the label of a member, and keeps the token of someone no longer listed", () => {
    const gone = "f".repeat(32);
    const text = decodeMentions(`hi <@${BOB}> and <@${gone}>`, team);
    expect(text).toBe(`hi @Bob and <@${gone}>`);
    expect(encodeMentions(text, team)).toBe(`hi <@${BOB}> and <@${gone}>`);
  });
});

describe("the mention picker", () => {
  it("finds the @query before the caret, not inside an email or across a line", () => {
    expect(mentionQuery("hi @Bo", 6)).toEqual({ start: 3, query: "Bo" });
    expect(mentionQuery("@", 1)).toEqual({ start: 0, query: "" });
    expect(mentionQuery("mail bob@exa", 12)).toBeNull();
    expect(mentionQuery("@Bo\nx", 5)).toBeNull();
  });

  it("suggests other members by the start of their name or of a word in it, name matches first", () => {
    expect(suggestMentions(team, "bo", ME).map((s) => s.label)).toEqual(["Bob", "Bobby"]);
    expect(suggestMentions(team, "love", ME).map((s) => s.id)).toEqual([ADA_L]);
    expect(suggestMentions(team, "m", ME)).toEqual([]);
  });

  it("finds a name whatever its accents: @zoe finds Zoë, @angst Ångström", () => {
    const accented = [...team, { id: "7".repeat(32), name: "Zoë Ångström" }];
    expect(suggestMentions(accented, "zoe", ME).map((s) => s.label)).toEqual(["Zoë Ångström"]);
    expect(suggestMentions(accented, "angst", ME).map((s) => s.label)).toEqual(["Zoë Ångström"]);
    expect(suggestMentions(accented, "Zoë", ME).map((s) => s.label)).toEqual(["Zoë Ångström"]);
  });

  it("suggests both members of a shared name with labels that tell them apart, and their emails", () => {
    const two = [...team, { id: BOB2, name: "Bob", email: "other.bob@example.com" }];
    expect(suggestMentions(two, "bob", ME).map((s) => [s.label, s.email])).toEqual([
      ["Bob#bbbbb", "bob@example.com"],
      ["Bob#bbbbd", "other.bob@example.com"],
      ["Bobby", ""],
    ]);
  });

  it("replaces the typed query with the chosen label and a space, the caret after it", () => {
    expect(insertMention("hi @Bo", 3, 6, "Bob#bbbbd")).toEqual({ text: "hi @Bob#bbbbd ", caret: 14 });
    expect(insertMention("@B there", 0, 2, "Bob")).toEqual({ text: "@Bob there", caret: 5 });
  });
});
