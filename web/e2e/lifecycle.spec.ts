// The message life cycle, read state and presence (DESIGN section 5b) in two browsers.
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { accessibilityProblems, addMember, apiToken, BASE, countMessages, createTeam, launch, openTeam, type Person, person, screenshotPath, send, serverUnread, shows, unique } from "./support";

let browser: Browser;
let ada: Person;
let bob: Person;
let team: string;

/** A backend without 5b would make every test below time out: say so at once instead. */
async function require5b(page: Person["page"]): Promise<void> {
  const status = await page.evaluate(async (base) => (await fetch(`${base}/v1/teams/${"0".repeat(32)}/changes?after=0`)).status, BASE);
  // Without a token the route answers 401; a backend that lacks it answers nginx's or aiohttp's 404.
  if (status === 404) throw new Error("this backend does not serve DESIGN section 5b yet (GET /v1/teams/{id}/changes is 404)");
}

beforeAll(async () => {
  browser = await launch();
  ada = await person(browser, "Ada");
  await require5b(ada.page);
  bob = await person(browser, "Bob");
  team = unique("Life");
  await createTeam(ada.page, team);
  await addMember(ada.page, bob.email);
  await openTeam(bob.page, team);
  for (const p of [ada, bob]) p.page.on("dialog", (d) => void d.accept());
});

afterAll(async () => {
  await browser?.close();
});

/** What has the keyboard's focus: its accessible label, or "message: <text>" for a message. */
const focused = (p: Person) =>
  p.page.evaluate(() => {
    const el = document.activeElement;
    if (el?.matches("article.message")) return `message: ${el.querySelector(".text, .tombstone")?.textContent ?? ""}`;
    return el?.getAttribute("aria-label") ?? el?.tagName ?? null;
  });

/** Ada replies in the thread of her "one for later", then closes the thread. */
async function adaRepliesToOneForLater(text: string): Promise<void> {
  const root = ada.page.locator("main article.message", { hasText: "one for later" });
  await root.hover();
  await root.getByRole("button", { name: "Reply in thread" }).click();
  const panel = ada.page.getByRole("complementary", { name: "Thread" });
  await panel.locator("textarea").fill(text);
  await panel.locator("textarea").press("Enter");
  await panel.locator("article.message .text", { hasText: text }).waitFor();
  await ada.page.keyboard.press("Escape");
}

const dmButton = (p: Person, name: string) => p.page.getByRole("button", { name: new RegExp(`^Direct messages with ${name}`) });

describe("message life cycle between two browsers", () => {
  it("shows the other member online, and offline once their last page closes", async () => {
    await expect.poll(() => dmButton(ada, "Bob").getByRole("img").getAttribute("aria-label"), { timeout: 10_000 }).toBe("online");
    const cy = await person(browser, "Cy");
    await addMember(ada.page, cy.email);
    await expect.poll(() => dmButton(ada, "Cy").getByRole("img").getAttribute("aria-label"), { timeout: 10_000 }).toBe("online");
    // Bob's page hears of Cy from Cy's presence, not from its 30-second re-read of the team.
    await expect.poll(() => dmButton(bob, "Cy").getByRole("img").getAttribute("aria-label"), { timeout: 10_000 }).toBe("online");
    await cy.context.close();
    await expect.poll(() => dmButton(ada, "Cy").getByRole("img").getAttribute("aria-label"), { timeout: 10_000 }).toBe("offline");
  });

  it("shows an edit (Up arrow edits the last own message) in the other browser without reload", async () => {
    await send(ada.page, "first draft");
    await shows(bob.page, "first draft");
    const box = ada.page.locator("main textarea");
    await box.press("ArrowUp");
    await expect.poll(() => box.inputValue()).toBe("first draft");
    // Emptied, it cannot be saved: the box says so, and what to do instead.
    await box.fill("  ");
    await box.press("Enter");
    await ada.page.getByText("An edit cannot leave the message empty").waitFor();
    expect(await ada.page.getByRole("button", { name: "delete it" }).count()).toBe(1);
    await box.fill("final text");
    await box.press("Enter");
    await bob.page.locator("main article.message .text", { hasText: "final text" }).getByText("(edited)").waitFor();
    expect(await countMessages(bob.page, "first draft")).toBe(0);
  });

  it("shows a reaction from one browser in the other", async () => {
    const message = bob.page.locator("main article.message", { hasText: "final text" });
    await message.hover();
    await message.getByRole("button", { name: "Add reaction" }).click();
    // The picker takes focus (its first emoji) and gives it back to its button once used.
    await expect.poll(() => focused(bob)).toBe("React with 👍");
    expect(await accessibilityProblems(bob.page)).toEqual([]);
    await bob.page.keyboard.press("Enter");
    await expect.poll(() => focused(bob)).toBe("Add reaction");
    await ada.page.locator("main article.message", { hasText: "final text" }).getByRole("button", { name: "👍 1" }).waitFor();
    // Ada's own 👍 makes two; pressing it again takes hers back.
    const chip = ada.page.locator("main article.message", { hasText: "final text" }).locator(".reaction");
    await chip.click();
    await bob.page.locator("main article.message", { hasText: "final text" }).getByRole("button", { name: /^👍 2/ }).waitFor();
  });

  it("shows a thread reply in the other browser's thread panel, and the reply count", async () => {
    const message = bob.page.locator("main article.message", { hasText: "final text" });
    await message.hover();
    await message.getByRole("button", { name: "Reply in thread" }).click();
    const panel = bob.page.getByRole("complementary", { name: "Thread" });
    // The reply box takes focus as the thread opens: one types straight away.
    await panel.locator("textarea").waitFor();
    await bob.page.keyboard.type("a reply in the thread");
    await bob.page.keyboard.press("Enter");
    await panel.locator("article.message .text", { hasText: "a reply in the thread" }).waitFor();
    expect(await accessibilityProblems(bob.page)).toEqual([]);
    await ada.page.locator("main article.message", { hasText: "final text" }).getByRole("button", { name: "1 reply" }).click();
    await ada.page.getByRole("complementary", { name: "Thread" }).locator("article.message .text", { hasText: "a reply in the thread" }).waitFor();
    // Replies stay out of the main conversation; Esc closes the panel.
    expect(await countMessages(ada.page, "a reply in the thread")).toBe(0);
    await ada.page.keyboard.press("Escape");
    expect(await ada.page.getByRole("complementary", { name: "Thread" }).count()).toBe(0);
    // Focus goes back to the thread's first message, not to the page.
    await expect.poll(() => focused(ada)).toMatch(/^message: final text/);
    await bob.page.keyboard.press("Escape");
  });

  it("takes a deleted reply off its thread in the other browser: the count, then the link, go", async () => {
    const root = bob.page.locator("main article.message", { hasText: "final text" });
    await root.getByRole("button", { name: "1 reply" }).click();
    const panel = bob.page.getByRole("complementary", { name: "Thread" });
    await panel.locator("textarea").fill("a second reply, soon gone");
    await panel.locator("textarea").press("Enter");
    const adaRoot = ada.page.locator("main article.message", { hasText: "final text" });
    await adaRoot.getByRole("button", { name: "2 replies" }).waitFor();
    const reply = panel.locator("article.message", { hasText: "a second reply, soon gone" });
    await reply.hover();
    await reply.getByRole("button", { name: "Delete message" }).click();
    await adaRoot.getByRole("button", { name: "1 reply" }).waitFor();
    // Gone from the panel too, not left as a tombstone.
    await expect.poll(() => panel.locator("article.message", { hasText: "a second reply, soon gone" }).count()).toBe(0);
    expect(await panel.getByText("This message was deleted.").count()).toBe(0);
    await bob.page.keyboard.press("Escape");
  });

  it("shows a deletion in the other browser as a tombstone", async () => {
    await send(ada.page, "this will be deleted");
    await shows(bob.page, "this will be deleted");
    const message = ada.page.locator("main article.message", { hasText: "this will be deleted" });
    await message.hover();
    await message.getByRole("button", { name: "Delete message" }).click();
    await bob.page.getByText("This message was deleted.").waitFor();
    expect(await countMessages(bob.page, "this will be deleted")).toBe(0);
    // The actions went with the text: focus is on the message, where Tab and the arrows go on.
    await expect.poll(() => focused(ada)).toBe("message: This message was deleted.");
  });

  it("keeps a reply being typed, readable, when its thread's first message is deleted, and says so", async () => {
    await send(ada.page, "a root about to go");
    const root = bob.page.locator("main article.message", { hasText: "a root about to go" });
    await root.hover();
    await root.getByRole("button", { name: "Reply in thread" }).click();
    const panel = bob.page.getByRole("complementary", { name: "Thread" });
    const box = panel.locator("textarea");
    await box.fill("half a reply");
    const adaRoot = ada.page.locator("main article.message", { hasText: "a root about to go" });
    await adaRoot.hover();
    await adaRoot.getByRole("button", { name: "Delete message" }).click();
    await panel.getByRole("alert").filter({ hasText: "What you typed was not sent." }).waitFor();
    expect(await box.inputValue()).toBe("half a reply");
    expect(await box.getAttribute("readonly")).not.toBeNull();
    await panel.getByRole("button", { name: "Discard it" }).click();
    await expect.poll(() => box.isDisabled()).toBe(true);
    await bob.page.keyboard.press("Escape");
  });
});

describe("read state", () => {
  it("badges unread messages and mentions of a team not open, then clears them as they are seen", async () => {
    // Bob looks at a team of his own while Ada writes in the shared one.
    const own = unique("Solo");
    await createTeam(bob.page, own);
    await send(ada.page, "one for later");
    await send(ada.page, "@Bob this one mentions you");
    const shared = bob.page.locator(".team-button", { hasText: team });
    await shared.getByLabel("2 unread").waitFor();
    await shared.getByLabel("1 mention", { exact: true }).waitFor();
    await shared.click();
    // The divider sits above the first unseen message; seeing them clears the badges.
    const divider = bob.page.getByRole("separator", { name: "New messages" });
    await divider.waitFor();
    const next = bob.page.locator("main .divider + article.message .text");
    expect(await next.textContent()).toBe("one for later");
    await expect.poll(() => shared.locator(".badge").count()).toBe(0);
    await bob.page.locator("main article.message .mention.me").waitFor();
  });

  it("keeps the read mark on the server: a new page of the same user shows no unread", async () => {
    await bob.page.waitForTimeout(1000); // the mark is reported after a short pause
    const again = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    const page = await again.newPage();
    await page.goto(BASE + "/");
    await page.getByLabel("Email").fill(bob.email);
    await page.getByLabel("Password").fill("correct horse battery staple");
    await page.getByRole("button", { name: "Log in" }).click();
    await page.locator(".team-button", { hasText: team }).waitFor();
    await page.waitForTimeout(500);
    expect(await page.locator(".team-button", { hasText: team }).locator(".badge").count()).toBe(0);
    await again.close();
  });

  it("clears a DM opened with its messages already loaded: the badge goes, the server counts 0", async () => {
    const token = await apiToken(bob.email);
    const shared = bob.page.locator(".team-button", { hasText: team });
    await dmButton(ada, "Bob").click();
    await send(ada.page, "a private word for Bob");
    await openTeam(ada.page, team);
    // Bob's page holds the DM (it arrived live) while he reads the team's own conversation.
    await bob.page.getByRole("button", { name: /^Direct messages with Ada 1 new, / }).waitFor();
    await shared.getByLabel("1 unread").waitFor();
    await dmButton(bob, "Ada").click();
    await shows(bob.page, "a private word for Bob");
    await expect.poll(() => shared.locator(".badge").count()).toBe(0);
    await expect.poll(() => serverUnread(token, team), { timeout: 10_000 }).toBe(0);
    await openTeam(bob.page, team);
  });

  it("clears a thread reply's unread once the team is opened and read to its end", async () => {
    const token = await apiToken(bob.email);
    const own = unique("Elsewhere");
    await createTeam(bob.page, own);
    await adaRepliesToOneForLater("a reply Bob has not seen");
    const shared = bob.page.locator(".team-button", { hasText: team });
    await shared.getByLabel("1 unread").waitFor();
    await shared.click();
    await expect.poll(() => shared.locator(".badge").count()).toBe(0);
    await expect.poll(() => serverUnread(token, team), { timeout: 10_000 }).toBe(0);
  });

  it("points to a new reply to an old message from a bar under the header, which opens its thread", async () => {
    await createTeam(bob.page, unique("Aside")); // Bob looks elsewhere while Ada replies
    await adaRepliesToOneForLater("a late answer");
    await openTeam(bob.page, team);
    const bar = bob.page.getByRole("region", { name: "New replies in threads" });
    // Two: the one before (the last test's, which Bob read past without opening its thread) too.
    await bar.getByText("2 new replies in a thread:").waitFor();
    await bob.page.screenshot({ path: screenshotPath("new-replies-1440x900.png") });
    await bar.getByRole("button", { name: /one for later \(2 new\)/ }).click();
    await bob.page.getByRole("complementary", { name: "Thread" }).locator("article.message .text", { hasText: "a late answer" }).waitFor();
    await expect.poll(() => bar.count()).toBe(0);
    await bob.page.keyboard.press("Escape");
  });

  it("opens a team at its first message for a member added before anything was posted, who has read nothing since", async () => {
    const token = await apiToken(bob.email);
    const fresh = unique("Fresh");
    await createTeam(ada.page, fresh);
    await addMember(ada.page, bob.email);
    for (let i = 1; i <= 55; i++) {
      await send(ada.page, `from the start ${i}`);
      await shows(ada.page, `from the start ${i}`);
    }
    await expect.poll(() => serverUnread(token, fresh), { timeout: 10_000 }).toBe(55);
    const again = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    const page = await again.newPage();
    await page.goto(BASE + "/");
    await page.getByLabel("Email").fill(bob.email);
    await page.getByLabel("Password").fill("correct horse battery staple");
    await page.getByRole("button", { name: "Log in" }).click();
    await page.locator(".team-button", { hasText: fresh }).click();
    await page.getByRole("separator", { name: "New messages" }).waitFor();
    await page.locator("main article.message .text", { hasText: /^from the start 1$/ }).waitFor();
    await page.getByRole("button", { name: /new messages? below/ }).waitFor();
    await page.waitForTimeout(1500); // past the read mark's debounce: the backlog is still unread
    expect(await serverUnread(token, fresh)).toBeGreaterThan(0);
    await again.close();
    await openTeam(ada.page, team);
    await openTeam(bob.page, team);
  });

  it("opens a team with more new messages than fit at the first of them, and reads the rest as they come into view", async () => {
    const token = await apiToken(bob.email);
    await createTeam(bob.page, unique("Away")); // Bob looks elsewhere while Ada writes
    // More than a page of 50: a page opened now reads the history back to Bob's mark first.
    for (let i = 1; i <= 60; i++) {
      await send(ada.page, `catching up ${i}`);
      await shows(ada.page, `catching up ${i}`); // one at a time: under the socket's rate limit
    }
    await bob.page.locator(".team-button", { hasText: team }).getByLabel("60 unread").waitFor();
    // A new page (a reload, another device): it holds nothing of the team yet.
    const again = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    const page = await again.newPage();
    // A slow network for the older page: the list shows the newest messages meanwhile, and what
    // it saw there must not count as seen once it moves up to the first new one.
    await page.route(/\/messages\?before=/, async (route) => {
      await new Promise((resolve) => setTimeout(resolve, 1500));
      await route.continue();
    });
    await page.goto(BASE + "/");
    await page.getByLabel("Email").fill(bob.email);
    await page.getByLabel("Password").fill("correct horse battery staple");
    await page.getByRole("button", { name: "Log in" }).click();
    const shared = page.locator(".team-button", { hasText: team });
    await shared.getByLabel("60 unread").waitFor();
    await shared.click();
    await page.getByRole("separator", { name: "New messages" }).waitFor();
    const below = page.getByRole("button", { name: /new messages? below/ });
    await below.waitFor();
    // The first new message is on screen, the last is not, and the server still counts those below.
    const list = page.locator("main .message-list");
    const inList = async (text: string) => {
      const [box, item] = await Promise.all([list.boundingBox(), page.locator("main article.message .text", { hasText: new RegExp(`^${text}$`) }).boundingBox()]);
      return box !== null && item !== null && item.y >= box.y - 1 && item.y < box.y + box.height;
    };
    expect(await inList("catching up 1")).toBe(true);
    expect(await inList("catching up 60")).toBe(false);
    await page.waitForTimeout(1500); // past the read mark's debounce
    expect(await serverUnread(token, team)).toBeGreaterThan(0);
    await below.click();
    await expect.poll(() => serverUnread(token, team), { timeout: 10_000 }).toBe(0);
    await again.close();
    await openTeam(bob.page, team);
  });

  it("reads a message taller than the list once it fills the list", async () => {
    const token = await apiToken(bob.email);
    const tall = Array.from({ length: 80 }, (_, i) => `line ${i + 1} of a tall message`).join("\n");
    await send(ada.page, tall);
    await shows(bob.page, "line 80 of a tall message");
    await expect.poll(() => serverUnread(token, team), { timeout: 10_000 }).toBe(0);
  });

  it("reports no script error, no CSP violation and no token in a URL on any page", () => {
    for (const p of [ada, bob]) expect(p.problems).toEqual([]);
  });
});
