// Two people chat in real Chromium through nginx and the whole stack (DESIGN section 5 only).
import type { Browser, Route } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  accessibilityProblems,
  addMember,
  BASE,
  countMessages,
  createTeam,
  launch,
  logInAgain,
  noisePng,
  openTeam,
  PASSWORD,
  type Person,
  person,
  relayIndex,
  relayOf,
  relayPid,
  screenshotPath,
  send,
  shows,
  unique,
} from "./support";

// The EICAR anti-virus test file (as in deploy/local/storage.py), kept as hex so that no
// scanner flags this source.
const EICAR_HEX =
  "58354f2150254041505b345c505a58353428505e2937434329377d2445494341522d5354414e44415244" +
  "2d414e544956495255532d544553542d46494c452124482b482a";

// Stands in for the browser's Notification (permission granted) and records each one made.
const RECORD_NOTIFICATIONS = `
  window.__notifications = [];
  class Recorded {
    static get permission() { return "granted"; }
    static requestPermission() { return Promise.resolve("granted"); }
    constructor(title, options) { window.__notifications.push({ title, body: options && options.body, tag: options && options.tag }); }
    close() {}
  }
  Object.defineProperty(window, "Notification", { value: Recorded, configurable: true, writable: true });
`;

let browser: Browser;
let ada: Person;
let bob: Person;
let cy: Person;
let team: string;

beforeAll(async () => {
  browser = await launch();
  ada = await person(browser, "Ada");
  bob = await person(browser, "Bob");
  cy = await person(browser, "Cy");
});

afterAll(async () => {
  await browser?.close();
});

/**
 * Opens the members panel and types into one of its fields in the same task, then reads the field
 * back 300 ms later: a reset scheduled after the panel's first paint would have wiped it.
 */
function typedAsThePanelOpens(page: Person["page"], label: string, value: string): Promise<string> {
  return page.evaluate(
    async ([label, value]) => {
      const button = [...document.querySelectorAll("button")].find((b) => b.textContent?.trim() === "Members & settings");
      if (!button) throw new Error("no Members & settings button");
      button.click();
      await new Promise((resolve) => setTimeout(resolve, 0));
      const input = [...document.querySelectorAll(".panel label")].find((l) => l.textContent?.trim().startsWith(label))?.querySelector("input");
      if (!input) throw new Error(`the panel shows no ${label} field`);
      input.value = value;
      input.dispatchEvent(new Event("input", { bubbles: true }));
      await new Promise((resolve) => setTimeout(resolve, 300));
      return input.value;
    },
    [label, value] as const,
  );
}

describe("chat in two browsers", () => {
  it("creates a team, adds members by email, and both chat both ways with typing shown", async () => {
    team = unique("Core");
    await createTeam(ada.page, team, "backend, on-call");

    await ada.page.getByRole("button", { name: "Members & settings" }).click();
    await ada.page.getByLabel("Email address").fill(bob.email);
    await ada.page.getByRole("button", { name: "Add member" }).click();
    await ada.page.getByText("Bob added.").waitFor();
    // Bob becomes an admin and adds Cy himself: each adds someone.
    // Each member's buttons name them: a screen reader hears "Make admin: Bob", not "Make admin" per row.
    await ada.page.getByRole("button", { name: /^Make admin: Bob/ }).click();
    await ada.page.getByText("Bob is now an admin.").waitFor();
    await ada.page.keyboard.press("Escape");

    // Bob's page hears the membership event and lists the team without a reload.
    await openTeam(bob.page, team);
    await addMember(bob.page, cy.email);
    await openTeam(cy.page, team);

    await send(ada.page, "hello Bob, welcome");
    await shows(bob.page, "hello Bob, welcome");

    await bob.page.locator("main textarea").pressSequentially("hi A", { delay: 30 });
    await ada.page.getByText("Bob is typing…").waitFor();
    await bob.page.locator("main textarea").fill("hi Ada!");
    await bob.page.locator("main textarea").press("Enter");
    await shows(ada.page, "hi Ada!");
    await shows(cy.page, "hi Ada!");
    expect(await countMessages(ada.page, "hi Ada!")).toBe(1);
    expect(await countMessages(bob.page, "hello Bob, welcome")).toBe(1);

    // Shift+Enter is a new line inside the message; Enter sends it.
    const box = ada.page.locator("main textarea");
    await box.pressSequentially("line one");
    await box.press("Shift+Enter");
    await box.pressSequentially("line two");
    await box.press("Enter");
    const multi = bob.page.locator("main article.message .text", { hasText: "line one" });
    await multi.waitFor();
    expect(await multi.textContent()).toBe("line one\nline two");
    expect(await box.inputValue()).toBe("");
  });

  it("keeps a DM between its two people: the third member's page never shows it", async () => {
    await ada.page.getByRole("button", { name: /^Direct messages with Bob/ }).click();
    await send(ada.page, "a secret for Bob only");
    await bob.page.getByRole("button", { name: /Direct messages with Ada/ }).click();
    await shows(bob.page, "a secret for Bob only");
    // A later team message reaches Cy: by then the DM would have too, had it leaked.
    await ada.page.locator(".conversation-list .conv-button").first().click();
    await send(ada.page, "team message after the DM");
    await shows(cy.page, "team message after the DM");
    expect(await cy.page.content()).not.toContain("a secret for Bob only");
    await cy.page.getByRole("button", { name: /Direct messages with Ada/ }).click();
    await cy.page.getByText("This is the beginning of the conversation.").waitFor();
    expect(await cy.page.content()).not.toContain("a secret for Bob only");
    await cy.page.locator(".conversation-list .conv-button").first().click();
    await bob.page.locator(".conversation-list .conv-button").first().click();
  });

  it("shows the server's refusal (403) plainly when a role changed under an open page", async () => {
    await bob.page.getByRole("button", { name: "Members & settings" }).click();
    await bob.page.getByRole("button", { name: "Save settings" }).waitFor();
    // The dismissal's `team` frame makes Bob's page read the team again within a second, which
    // would make the panel current before the click; its reads of teams are held until the
    // refusal has shown (a frame still on its way, as on a slow link).
    const held: Route[] = [];
    let holding = true;
    const teamReads = /\/v1\/teams(\?.*|\/[0-9a-f]{32})?$/;
    await bob.page.route(teamReads, (route) => {
      if (holding && route.request().method() === "GET") held.push(route);
      else void route.continue();
    });
    await ada.page.getByRole("button", { name: "Members & settings" }).click();
    await ada.page.locator(".members li", { hasText: "Bob" }).getByRole("button", { name: "Dismiss admin" }).click();
    await ada.page.getByText("Bob is no longer an admin.").waitFor();
    // Bob's panel still offers the admin's form; the server says no, and the page says so.
    await bob.page.getByLabel("Name").fill(`${team} renamed`);
    await bob.page.getByRole("button", { name: "Save settings" }).click();
    const refusal = bob.page.locator(".panel .result.error");
    await refusal.waitFor();
    expect(await refusal.textContent()).toMatch(/^Not allowed: /);
    holding = false;
    for (const route of held) await route.continue();
    await bob.page.unroute(teamReads);
    for (const p of [ada, bob]) await p.page.keyboard.press("Escape");
    expect(await bob.page.getByRole("heading", { name: team, exact: true }).count()).toBe(1);
  });

  it("shows a rename and a role change made elsewhere within seconds, without a reload", async () => {
    // The page's own net reads the teams every 5 minutes: anything sooner is the `team` frame.
    const within = { timeout: 10_000 };
    await ada.page.getByRole("button", { name: "Members & settings" }).click();
    await ada.page.getByLabel("Name").fill(`${team} (v2)`);
    await ada.page.getByRole("button", { name: "Save settings" }).click();
    await ada.page.getByText("Team saved.").waitFor();
    await bob.page.getByRole("heading", { name: `${team} (v2)`, exact: true }).waitFor(within);
    await bob.page.locator(".sidebar", { hasText: `${team} (v2)` }).waitFor(within);
    // Bob was dismissed in the test before: made admin again, his page says so and offers the form.
    await ada.page.locator(".members li", { hasText: "Bob" }).getByRole("button", { name: "Make admin" }).click();
    await ada.page.getByText("Bob is now an admin.").waitFor();
    await bob.page.locator(".notices").getByText(`You are now an admin of ${team} (v2).`).waitFor(within);
    await bob.page.getByRole("button", { name: "Members & settings" }).click();
    await bob.page.getByRole("button", { name: "Save settings" }).waitFor(within);
    await bob.page.getByLabel("Name", { exact: true }).fill(team);
    await bob.page.getByRole("button", { name: "Save settings" }).click();
    await bob.page.getByText("Team saved.").waitFor();
    await ada.page.getByRole("heading", { name: team, exact: true }).first().waitFor(within);
    for (const p of [ada, bob]) await p.page.keyboard.press("Escape");
    // Closing the panel gives focus back to the button that opened it.
    for (const p of [ada, bob]) await expect.poll(() => p.page.evaluate(() => document.activeElement?.textContent?.trim())).toBe("Members & settings");
  });

  it("keeps an address typed the moment the members panel opens (nothing resets it a frame later)", async () => {
    expect(await typedAsThePanelOpens(ada.page, "Email address", "typed@example.com")).toBe("typed@example.com");
    await ada.page.keyboard.press("Escape");
    await ada.page.getByLabel("Email address").waitFor({ state: "detached" });
    // The settings' Name, too.
    const named = await typedAsThePanelOpens(ada.page, "Name", "Renamed at once");
    expect(named).toBe("Renamed at once");
    // Focus went into the panel as it opened (its heading), so Esc and Tab start there. Esc over
    // a name typed and not saved asks first: dismissed, the panel and the name stay.
    expect(await ada.page.evaluate(() => document.activeElement?.closest(".panel") !== null)).toBe(true);
    const asked: string[] = [];
    ada.page.once("dialog", (d) => {
      asked.push(d.message());
      void d.dismiss();
    });
    await ada.page.keyboard.press("Escape");
    await expect.poll(() => asked).toEqual(["Discard your changes to the team's name, icon and tags?"]);
    expect(await ada.page.getByLabel("Name", { exact: true }).inputValue()).toBe("Renamed at once");
    ada.page.once("dialog", (d) => void d.accept());
    await ada.page.keyboard.press("Escape");
    await ada.page.getByLabel("Email address").waitFor({ state: "detached" });
  });

  it("drops an edit when another conversation opens, keeps each conversation's unsent text, and gives it back after an edit", async () => {
    await send(bob.page, "bob's channel line");
    // Delivered (a message still on its way cannot be edited yet): Up takes it, not the one before.
    await bob.page.locator("main article.message:not(.pending) .text", { hasText: "bob's channel line" }).waitFor();
    const box = bob.page.locator("main textarea");
    await box.press("ArrowUp");
    await expect.poll(() => box.inputValue()).toBe("bob's channel line");
    await bob.page.getByRole("button", { name: /^Direct messages with Ada/ }).click();
    // The DM's box is its own: no edit of the channel's message in it.
    await expect.poll(() => bob.page.locator("main textarea").inputValue()).toBe("");
    expect(await bob.page.locator("main .editing-note").count()).toBe(0);
    await send(bob.page, "meant for Ada alone");
    await shows(bob.page, "meant for Ada alone");
    await bob.page.locator(".conversation-list .conv-button").first().click();
    await shows(bob.page, "bob's channel line");
    expect(await countMessages(bob.page, "meant for Ada alone")).toBe(0);
    // Half a sentence in the channel waits there while the DM is open.
    await bob.page.locator("main textarea").fill("half a sentence");
    await bob.page.getByRole("button", { name: /^Direct messages with Ada/ }).click();
    await expect.poll(() => bob.page.locator("main textarea").inputValue()).toBe("");
    await bob.page.locator(".conversation-list .conv-button").first().click();
    await expect.poll(() => bob.page.locator("main textarea").inputValue()).toBe("half a sentence");
    // An edit started from the message's menu takes the box, and gives the half sentence back
    // when it is cancelled, and when it is saved.
    const line = bob.page.locator("main article.message", { hasText: "bob's channel line" });
    for (const end of ["Escape", "Enter"]) {
      await line.hover();
      await line.getByRole("button", { name: "Edit message" }).click();
      await expect.poll(() => box.inputValue()).toBe("bob's channel line");
      if (end === "Enter") await box.fill("bob's channel line, edited");
      await box.press(end);
      await expect.poll(() => box.inputValue()).toBe("half a sentence");
    }
    await line.getByText("(edited)").waitFor();
    await bob.page.locator("main textarea").fill("");
  });

  it("creates one team for a double click, takes typing in the new-team form at once and closes it on Esc", async () => {
    await cy.page.getByRole("button", { name: "+ New team" }).click();
    const name = unique("Once");
    await cy.page.keyboard.type(name); // focus is in the form's first field
    await cy.page.getByRole("button", { name: "Create team" }).dblclick();
    await cy.page.getByRole("heading", { name, exact: true }).waitFor();
    await cy.page.waitForTimeout(500); // a second team would be listed by now
    expect(await cy.page.locator(".team-list .team-name", { hasText: name }).count()).toBe(1);
    await cy.page.getByRole("button", { name: "+ New team" }).click();
    await cy.page.keyboard.press("Escape");
    await cy.page.getByRole("button", { name: "+ New team" }).waitFor();
    await openTeam(cy.page, team);
  });

  it("shows markup in a message as text and runs none of it", async () => {
    const attack = `<img src=x onerror="window.__xss=1;document.title='pwned'"> <script>window.__xss=2</script>`;
    await send(ada.page, attack);
    await shows(bob.page, attack);
    for (const p of [ada.page, bob.page]) {
      expect(await p.evaluate(() => (window as unknown as { __xss?: number }).__xss)).toBeUndefined();
      // The app's own title (with what waits before it), never one a message set.
      expect(await p.title()).toMatch(/^(\(\d+\) |• )?chatstack$/);
      expect(await p.locator('main article img[src="x"]').count()).toBe(0);
    }
    // Links become anchors built by the app, only for http(s).
    await send(ada.page, "docs at https://example.com/a?b=1, and javascript:alert(1)");
    const link = bob.page.locator("main article a", { hasText: "https://example.com/a?b=1" });
    await link.waitFor();
    expect(await link.getAttribute("href")).toBe("https://example.com/a?b=1");
    expect(await bob.page.locator('main a[href^="javascript:"]').count()).toBe(0);
  });

  it("looks right at 1440×900 and at 375×800, and axe finds no WCAG A/AA problem in either", async () => {
    // The pointer rests outside the messages, so that no hover toolbar is in the picture.
    for (const p of [ada, bob]) await p.page.mouse.move(1, 1);
    await ada.page.screenshot({ path: screenshotPath("chat-1440x900.png") });
    expect(await accessibilityProblems(ada.page)).toEqual([]);
    await bob.page.setViewportSize({ width: 375, height: 800 });
    await bob.page.screenshot({ path: screenshotPath("chat-375x800.png") });
    // The narrow layout keeps the composer and the last message on screen.
    expect(await bob.page.locator("main textarea").isVisible()).toBe(true);
    expect(await accessibilityProblems(bob.page)).toEqual([]);
    await bob.page.setViewportSize({ width: 1440, height: 900 });
  });

  it("closes the thread, then the phone's drawer, with the browser's Back, and leaves no entry behind what Esc closed", async () => {
    const page = bob.page;
    await page.setViewportSize({ width: 375, height: 800 });
    const text = unique("a root to go back from");
    await send(page, text);
    const root = page.locator("main article.message:not(.pending)", { hasText: text });
    await root.click(); // a tap shows the message's actions on a phone
    await root.getByRole("button", { name: "Reply in thread" }).click();
    const thread = page.getByRole("complementary", { name: "Thread" });
    await thread.waitFor();
    await page.goBack();
    await thread.waitFor({ state: "detached" });
    expect(page.url()).toBe(`${BASE}/`);
    await page.getByRole("button", { name: /^Teams and conversations/ }).click();
    await expect.poll(() => page.locator(".shell.drawer-open").count()).toBe(1);
    // The drawer has the focus, and the page it covers is out of Tab's reach meanwhile.
    await expect.poll(() => page.evaluate(() => document.activeElement?.closest("#sidebar") !== null)).toBe(true);
    expect(await page.locator("main").getAttribute("inert")).not.toBeNull();
    await page.goBack();
    await expect.poll(() => page.locator(".shell.drawer-open").count()).toBe(0);
    expect(await page.locator("main").getAttribute("inert")).toBeNull();
    // The focus, which was in the drawer, is back on the button that opened it.
    await expect.poll(() => page.evaluate(() => document.activeElement?.classList.contains("drawer-toggle") ?? false)).toBe(true);
    await root.click();
    await root.getByRole("button", { name: "Reply in thread" }).click();
    await thread.waitFor();
    await page.keyboard.press("Escape");
    await thread.waitFor({ state: "detached" });
    // The entry the thread stood on is gone with it: the page is back where it started.
    const onLayerEntry = () => page.evaluate(() => (history.state as { chatstackLayer?: boolean } | null)?.chatstackLayer ?? false);
    await expect.poll(onLayerEntry).toBe(false);
    await page.setViewportSize({ width: 1440, height: 900 });
    // A thread opened over the members panel: Back closes the thread, then the panel, then no more.
    await page.getByRole("button", { name: "Members & settings" }).click();
    const members = page.getByRole("complementary", { name: /members and settings/ });
    await members.waitFor();
    await root.hover();
    await root.getByRole("button", { name: "Reply in thread" }).click();
    await thread.waitFor();
    await page.goBack();
    await thread.waitFor({ state: "detached" });
    await members.waitFor();
    await page.goBack();
    await members.waitFor({ state: "detached" });
    await expect.poll(onLayerEntry).toBe(false);
    expect(page.url()).toBe(`${BASE}/`);
  });

  it("on a phone, one tap follows a link, opens a thread or toggles a reaction, with the message's actions shown or not; a tap on the text shows them", async () => {
    const text = unique("tap here");
    await openTeam(ada.page, team);
    await send(ada.page, `${text} https://example.org/handbook`);
    const mine = ada.page.locator("main article.message:not(.pending)", { hasText: text });
    await mine.hover();
    await mine.getByRole("button", { name: "Reply in thread" }).click();
    const adaThread = ada.page.getByRole("complementary", { name: "Thread" });
    await adaThread.locator("textarea").fill("a reply to tap to");
    await adaThread.locator("textarea").press("Enter");
    await adaThread.getByText("a reply to tap to").waitFor();
    await ada.page.keyboard.press("Escape");
    await mine.hover();
    await mine.getByRole("button", { name: "Add reaction" }).click();
    await mine.getByRole("button", { name: "React with 👍" }).click();
    await mine.getByRole("button", { name: "👍 1, including you" }).waitFor();

    const phone = await logInAgain(browser, bob, { width: 390, height: 844 }, true);
    try {
      // The teams are behind ☰ on a phone; choosing one closes the drawer.
      await phone.getByRole("button", { name: /^Teams and conversations/ }).tap();
      await phone.locator(".team-button", { hasText: team }).tap();
      await expect.poll(() => phone.locator(".shell.drawer-open").count()).toBe(0);
      const root = phone.locator("main article.message:not(.pending)", { hasText: text });
      const link = root.getByRole("link", { name: /example\.org/ });
      const actions = root.getByRole("group", { name: "Message actions" });
      const opened = () => phone.context().waitForEvent("page", { timeout: 5_000 });
      // Nothing chosen: one tap on the link opens it, and no actions appear.
      let popup = opened();
      await link.tap();
      await (await popup).close();
      expect(await actions.isVisible()).toBe(false);
      // A tap on the text (its first word, not the link) shows the actions, and they stay for
      // a tap on the link, on the reply count and on a reaction: each works the first time.
      await root.locator(".text").tap({ position: { x: 4, y: 6 } });
      await actions.waitFor();
      popup = opened();
      await link.tap();
      await (await popup).close();
      expect(await actions.isVisible()).toBe(true);
      await root.getByRole("button", { name: /^1 reply/ }).tap();
      const thread = phone.getByRole("complementary", { name: "Thread" });
      await thread.getByText("a reply to tap to").waitFor();
      await phone.goBack();
      await thread.waitFor({ state: "detached" });
      await root.getByRole("button", { name: /^👍 1/ }).tap();
      await root.getByRole("button", { name: "👍 2, including you" }).waitFor();
      // The actions work by touch: the picker opens and a pick is sent.
      await root.locator(".text").tap({ position: { x: 4, y: 6 } });
      await actions.getByRole("button", { name: "Add reaction" }).tap();
      await root.getByRole("button", { name: "React with 🎉" }).tap();
      await root.getByRole("button", { name: "🎉 1, including you" }).waitFor();
    } finally {
      await phone.context().close();
    }
  });

  it("uploads an image (progress bar) and a dropped file into both browsers; refuses 6 MiB, SVG, malware, text posing as a PNG", async () => {
    // Enough lines that both lists scroll: an image loading at the bottom must not unpin them.
    for (let i = 1; i <= 30; i++) await send(ada.page, `before the image ${i}`);
    await shows(bob.page, "before the image 30");
    const png = noisePng(640); // about 1.2 MB
    // Slow Ada's uploads down so that the progress bar is there to be seen.
    const cdp = await ada.context.newCDPSession(ada.page);
    await cdp.send("Network.enable");
    await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 400 * 1024 });
    await ada.page.locator("main input[type=file]").setInputFiles({ name: "noise.png", mimeType: "image/png", buffer: png });
    const bar = ada.page.getByRole("progressbar", { name: "Uploading noise.png" });
    await bar.waitFor();
    await expect.poll(async () => Number(await bar.getAttribute("value")), { timeout: 20_000 }).toBeGreaterThan(0);
    await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    for (const p of [ada.page, bob.page]) {
      const img = p.locator('main article.message img[alt="noise.png"]');
      await img.waitFor({ timeout: 30_000 });
      await expect.poll(() => img.evaluate((el) => (el as HTMLImageElement).naturalWidth), { timeout: 15_000 }).toBe(640);
    }
    expect(await bar.count()).toBe(0);
    // A click shows it full size here (opening the URL would download it); Esc closes.
    await bob.page.getByRole("button", { name: "View noise.png" }).click();
    const viewer = bob.page.getByRole("dialog", { name: "noise.png" });
    await expect.poll(() => viewer.locator("img").evaluate((el) => (el as HTMLImageElement).naturalWidth), { timeout: 15_000 }).toBe(640);
    expect(await accessibilityProblems(bob.page)).toEqual([]);
    await bob.page.keyboard.press("Escape");
    expect(await viewer.count()).toBe(0);
    // Focus goes back to the picture it was opened from, not to the top of the page.
    await expect.poll(() => bob.page.evaluate(() => document.activeElement?.getAttribute("aria-label"))).toBe("View noise.png");
    // The image grew the list after it was laid out: readers at the bottom stay there, and keep
    // following what comes next.
    for (const line of ["after the image 1", "after the image 2"]) await send(ada.page, line);
    for (const [who, p] of [["ada", ada.page], ["bob", bob.page]] as const) {
      await shows(p, "after the image 2");
      const list = p.locator("main [role=log]").first();
      await expect.poll(() => list.evaluate((el) => el.scrollHeight - el.scrollTop - el.clientHeight), { timeout: 5_000, message: who }).toBeLessThan(40);
    }

    await ada.page.locator("main input[type=file]").setInputFiles({ name: "big.pdf", mimeType: "application/pdf", buffer: Buffer.alloc(6 * 1024 * 1024, 7) });
    const refusal = ada.page.locator(".upload.failed [role=alert]");
    await refusal.waitFor();
    expect(await refusal.textContent()).toMatch(/^“big\.pdf” refused: .*(large|5 MiB|5242880)/i);
    await refusal.getByRole("button", { name: "Dismiss" }).click();

    // A file dropped on the conversation: other files are download links.
    const dropped = await ada.page.evaluateHandle(() => {
      const transfer = new DataTransfer();
      transfer.items.add(new File(["meeting notes\n"], "notes.txt", { type: "text/plain" }));
      return transfer;
    });
    await ada.page.locator("main section.conversation").dispatchEvent("drop", { dataTransfer: dropped });
    const link = bob.page.locator("main article.message a.attachment.file", { hasText: "notes.txt" });
    await link.waitFor();
    expect(await link.getAttribute("href")).toMatch(/^http:\/\/127\.0\.0\.1:\d+\//);
    expect(await link.getAttribute("target")).toBe("_blank");

    // A type the server does not take, and the EICAR test file, which the scanner rejects.
    await ada.page.locator("main input[type=file]").setInputFiles({ name: "logo.svg", mimeType: "image/svg+xml", buffer: Buffer.from("<svg/>") });
    await refusal.waitFor();
    expect(await refusal.textContent()).toMatch(/^“logo\.svg” refused: files of this type cannot be attached/);
    await refusal.getByRole("button", { name: "Dismiss" }).click();
    await ada.page.locator("main input[type=file]").setInputFiles({ name: "eicar.txt", mimeType: "text/plain", buffer: Buffer.from(EICAR_HEX, "hex") });
    await refusal.waitFor();
    expect(await refusal.textContent()).toMatch(/^“eicar\.txt” was refused: /);
    await refusal.getByRole("button", { name: "Dismiss" }).click();
    expect(await countMessages(bob.page, "eicar.txt")).toBe(0);
    // Text renamed to look like a picture: its bytes are not a PNG, so completing refuses it.
    await ada.page.locator("main input[type=file]").setInputFiles({ name: "holiday.png", mimeType: "image/png", buffer: Buffer.from("just text") });
    await refusal.waitFor();
    expect(await refusal.textContent()).toMatch(/^“holiday\.png” was refused: its content is not what its type says \(image\/png\)/);
    await refusal.getByRole("button", { name: "Dismiss" }).click();
    expect(await countMessages(bob.page, "holiday.png")).toBe(0);
  });

  it("loads older history as the reader scrolls up (before=), each message once", async () => {
    for (let i = 1; i <= 60; i++) await send(ada.page, `history line ${i}`);
    await shows(bob.page, "history line 60");
    const page = await logInAgain(browser, cy);
    await openTeam(page, team);
    await shows(page, "history line 60");
    expect(await countMessages(page, "history line 1")).toBe(0);
    const list = page.getByRole("log", { name: `Messages in ${team}` });
    // One scroll to the top brings the page above without moving the reader: the message they
    // were looking at stays in view (the list is not left at the top, where nothing more loads).
    await list.evaluate((el) => el.scrollTo({ top: 0 }));
    await expect.poll(() => list.evaluate((el) => el.scrollTop), { timeout: 5_000 }).toBeGreaterThan(100);
    // Up to the beginning, however many pages the earlier tests' messages fill.
    const beginning = page.getByText("This is the beginning of the conversation.");
    for (let round = 0; round < 10 && (await beginning.count()) === 0; round++) {
      await list.evaluate((el) => el.scrollTo({ top: 0 }));
      await page.waitForTimeout(300);
    }
    expect(await countMessages(page, "history line 1")).toBe(1);
    expect(await countMessages(page, "hello Bob, welcome")).toBe(1);
    await beginning.waitFor();
    await page.context().close();
  });

  it("says how many messages came below a reader scrolled up, and the arrow keys reach a message's actions", async () => {
    const list = bob.page.getByRole("log", { name: `Messages in ${team}` });
    await list.evaluate((el) => el.scrollTo({ top: 0 }));
    await bob.page.waitForTimeout(300);
    await send(ada.page, "below one");
    await send(ada.page, "below two");
    const below = bob.page.getByRole("button", { name: "2 new messages below ↓" });
    await below.waitFor();
    await below.click();
    await expect.poll(() => below.count()).toBe(0);
    await expect.poll(() => list.evaluate((el) => el.scrollHeight - el.scrollTop - el.clientHeight)).toBeLessThan(40);
    // Keyboard only: from the list, Up goes to its last message; Tab then reaches its actions.
    await list.focus();
    await bob.page.keyboard.press("ArrowUp");
    const focused = bob.page.locator("main article.message:focus");
    expect(await focused.locator(".text").textContent()).toBe("below two");
    await bob.page.keyboard.press("Tab");
    expect(await bob.page.evaluate(() => document.activeElement?.getAttribute("aria-label"))).toBe("Add reaction");
  });

  it("keeps keys typed right after a mention is picked after the mention, and sends on the next Enter", async () => {
    const box = bob.page.locator("main textarea");
    for (let round = 0; round < 3; round++) {
      await box.fill("");
      await box.focus();
      await bob.page.keyboard.type("please @Ad", { delay: 5 });
      await bob.page.getByRole("listbox").waitFor();
      await bob.page.keyboard.press("Enter");
      await bob.page.keyboard.type("look", { delay: 3 });
      expect(await box.inputValue()).toMatch(/^please @Ada\S* look$/);
    }
    // A mention picked at the end of the text: the picker closes, the next Enter sends.
    await box.fill("");
    await box.focus();
    await bob.page.keyboard.type("ping @Ad", { delay: 5 });
    await bob.page.getByRole("listbox").waitFor();
    await bob.page.keyboard.press("Enter");
    await bob.page.getByRole("listbox").waitFor({ state: "detached" });
    await bob.page.keyboard.press("Enter");
    await expect.poll(() => box.inputValue()).toBe("");
    await shows(ada.page, "ping @Ada");
    // The next message's "@" opens the picker again, and so does changing a picked name.
    await bob.page.keyboard.type("@Ad", { delay: 5 });
    await bob.page.getByRole("listbox").waitFor();
    await bob.page.keyboard.press("Enter");
    await bob.page.getByRole("listbox").waitFor({ state: "detached" });
    await bob.page.keyboard.press("Backspace");
    await bob.page.keyboard.press("Backspace");
    await bob.page.getByRole("listbox").waitFor();
    await box.fill("");
  });

  it("survives a relay killed while both chat: both reconnect, messages sent meanwhile show once", async () => {
    const relays = new Set([relayIndex(await relayOf(ada.page)), relayIndex(await relayOf(bob.page))]);
    const banners = [ada, bob].map((p) => p.page.locator(".banner.reconnecting").waitFor({ timeout: 15_000 }));
    for (const index of relays) process.kill(relayPid(index), "SIGKILL");
    await Promise.all(banners);
    // Sent while the sockets are down (queued), and by Cy, whose socket may be elsewhere.
    await send(ada.page, "sent by Ada while reconnecting");
    await send(bob.page, "sent by Bob while reconnecting");
    await send(cy.page, "sent by Cy meanwhile");
    // nginx keeps a relay that failed out of rotation for up to 10 s (its default fail_timeout).
    for (const p of [ada, bob]) await p.page.locator(".conn.open").waitFor({ timeout: 40_000 });
    for (const p of [ada, bob]) {
      for (const text of ["sent by Ada while reconnecting", "sent by Bob while reconnecting", "sent by Cy meanwhile"]) {
        await shows(p.page, text);
        expect(await countMessages(p.page, text)).toBe(1);
      }
      expect(await countMessages(p.page, "hi Ada!")).toBe(1);
      expect(await p.page.locator(".message.pending").count()).toBe(0);
      expect(await p.page.locator(".banner.reconnecting").count()).toBe(0);
    }
  });

  it("lets the super admin deactivate the team (everyone reads, nobody writes) and reactivate it", async () => {
    await openTeam(ada.page, team);
    await openTeam(bob.page, team);
    await ada.page.getByRole("button", { name: "Members & settings" }).click();
    ada.page.once("dialog", (dialog) => void dialog.accept());
    await ada.page.getByRole("button", { name: "Deactivate team" }).click();
    await ada.page.getByText(`${team} is deactivated.`).waitFor();
    // The other member's open page turns read-only without a reload.
    await bob.page.getByText("This team is deactivated: you can read it, not write to it.").waitFor();
    expect(await bob.page.locator("main textarea").isDisabled()).toBe(true);
    await ada.page.getByRole("button", { name: "Reactivate team" }).click();
    await ada.page.getByText(`${team} is active again.`).waitFor();
    await ada.page.keyboard.press("Escape");
    await bob.page.locator("main textarea:not([disabled])").waitFor();
    expect(await bob.page.getByText("This team is deactivated").count()).toBe(0);
    await send(bob.page, "writing again after the reactivation");
    await shows(ada.page, "writing again after the reactivation");
  });

  it("counts a DM waiting in the tab's title until it is read, and notifies it while its conversation is not open", async () => {
    // Ada's browser grants notifications; a stand-in for Notification records what the page shows.
    await ada.context.grantPermissions(["notifications"], { origin: BASE });
    // A script string, not a function: nothing of the test's compiled code reaches the page.
    await ada.context.addInitScript(RECORD_NOTIFICATIONS);
    await ada.page.reload();
    await ada.page.locator(".conn.open").waitFor();
    await openTeam(ada.page, team);
    // What the tests before left waiting for Ada — Bob's DM she never opened, and a mention of
    // her after it (her mark stops before the DM, and posting elsewhere does not read it) — is
    // read first: then nothing waits, and the title has no number.
    await ada.page.getByRole("button", { name: /^Direct messages with Bob/ }).click();
    await shows(ada.page, "meant for Ada alone");
    await ada.page.locator(".conversation-list .conv-button").first().click();
    await ada.page.waitForFunction(() => /^(• )?chatstack$/.test(document.title), undefined, { timeout: 10_000 });
    // Granted already: there is nothing to turn on.
    expect(await ada.page.getByRole("button", { name: "Turn on notifications" }).count()).toBe(0);

    const text = unique("a word for Ada");
    await bob.page.getByRole("button", { name: /^Direct messages with Ada/ }).click();
    await send(bob.page, text);
    await ada.page.waitForFunction(() => document.title === "(1) chatstack", undefined, { timeout: 10_000 });
    const recorded = () => ada.page.evaluate(() => (window as unknown as { __notifications: { title: string; body?: string; tag?: string }[] }).__notifications);
    expect(await recorded()).toEqual([{ title: `Bob (direct message in ${team})`, body: text, tag: expect.stringMatching(/^chatstack:/) }]);

    // Read: the number goes.
    await ada.page.getByRole("button", { name: /^Direct messages with Bob/ }).click();
    await shows(ada.page, text);
    await ada.page.waitForFunction(() => /^(• )?chatstack$/.test(document.title), undefined, { timeout: 10_000 });
    expect(await recorded()).toHaveLength(1);
    for (const p of [ada, bob]) await p.page.locator(".conversation-list .conv-button").first().click();
  });

  it("keeps the session and a half-typed message across a reload and in a new tab; logging out ends both, forgets the text, and a reload asks for the password", async () => {
    const page = await logInAgain(browser, cy);
    await openTeam(page, team);
    await page.locator("main textarea").fill("typed, not sent");
    await page.reload();
    await page.locator(".conn.open").waitFor();
    await openTeam(page, team);
    expect(await page.getByLabel("Password").count()).toBe(0);
    await expect.poll(() => page.locator("main textarea").inputValue()).toBe("typed, not sent");
    // No script on the page can read the refresh token: it lives in an HttpOnly cookie.
    expect(await page.evaluate(() => document.cookie)).toBe("");
    const tab = await page.context().newPage();
    await tab.goto(BASE + "/");
    await tab.locator(".conn.open").waitFor();
    await page.getByRole("button", { name: "Log out", exact: true }).click();
    await page.getByLabel("Password").waitFor();
    // The other tab ends at once too: the login it shared is revoked.
    await tab.getByText("You logged out in another tab.").waitFor({ timeout: 5000 });
    await tab.close();
    // What Cy was writing does not stay behind in the tab for whoever signs in next.
    expect(await page.evaluate(() => sessionStorage.getItem("chatstack.unsent"))).toBeNull();
    await page.reload();
    await page.getByLabel("Password").waitFor();
    expect(await accessibilityProblems(page)).toEqual([]);
    await page.context().close();
  });

  /** Cy in a new browser, offline, with a message of this label sent and not acknowledged. */
  async function cyOfflineWithAMessagePending(label: string) {
    const page = await logInAgain(browser, cy);
    await openTeam(page, team);
    await page.context().setOffline(true);
    await page.locator(".conn.open").waitFor({ state: "detached" });
    const text = unique(label);
    await send(page, text);
    await page.locator("main article.message.pending .text", { hasText: text }).waitFor();
    return { page, text };
  }

  it("asks before closing a page holding a message the server does not have yet, and not once it has it", async () => {
    const { page, text } = await cyOfflineWithAMessagePending("sent offline");
    const asked: string[] = [];
    page.on("dialog", (dialog) => {
      asked.push(dialog.type());
      void dialog.dismiss(); // "stay on the page"
    });
    await page.close({ runBeforeUnload: true });
    await expect.poll(() => asked).toEqual(["beforeunload"]);
    expect(page.isClosed()).toBe(false);
    await page.context().setOffline(false);
    await page.locator("main article.message:not(.pending) .text", { hasText: text }).waitFor({ timeout: 30_000 });
    await page.close({ runBeforeUnload: true });
    await expect.poll(() => page.isClosed()).toBe(true);
    expect(asked).toEqual(["beforeunload"]);
    await page.context().close();
  });

  it("asks before logging out while a message has not reached the server, and stays when told to", async () => {
    const { page, text } = await cyOfflineWithAMessagePending("not yet delivered");
    const asked: string[] = [];
    page.once("dialog", (dialog) => {
      asked.push(dialog.message());
      void dialog.dismiss();
    });
    await page.locator(".topbar").getByRole("button", { name: "Log out" }).click();
    await expect.poll(() => asked).toEqual(["Some of your messages or files have not reached the server yet. Log out anyway and lose them?"]);
    await page.context().setOffline(false);
    await page.locator("main article.message:not(.pending) .text", { hasText: text }).waitFor({ timeout: 30_000 });
    expect(await page.getByLabel("Password").count()).toBe(0); // still signed in
    await page.context().close();
  });

  it("logs out everywhere: another browser's login ends at once and asks for the password", async () => {
    const here = await logInAgain(browser, cy);
    const elsewhere = await logInAgain(browser, cy);
    await openTeam(elsewhere, team);
    // The question takes focus (on Cancel), Esc takes it back to where it was asked from.
    await here.getByRole("button", { name: "Log out everywhere…" }).click();
    const focused = () => here.evaluate(() => document.activeElement?.textContent);
    await expect.poll(focused, { timeout: 5_000 }).toBe("Cancel");
    await here.keyboard.press("Escape");
    await expect.poll(focused, { timeout: 5_000 }).toBe("Log out everywhere…");
    await here.keyboard.press("Enter");
    await here.getByRole("group", { name: "Log out everywhere" }).getByRole("button", { name: "Log out everywhere" }).click();
    await here.getByText("You logged out on every device.").waitFor();
    // The other browser shares no cookie with this one: its socket is closed (session ended),
    // its renewal refused, and it says so.
    await elsewhere.getByLabel("Password").waitFor({ timeout: 15_000 });
    await elsewhere.getByText(/Your session ended/).waitFor();
    await here.context().close();
    await elsewhere.context().close();
  });

  it("closes an open DM's box and its thread's reply box when its other person is removed from the team, keeping what was typed", async () => {
    await openTeam(ada.page, team);
    await openTeam(bob.page, team);
    await bob.page.getByRole("button", { name: /^Direct messages with Cy/ }).click();
    // A thread under the DM, open beside it.
    await bob.page.locator("main textarea").fill("a root for Cy");
    await bob.page.keyboard.press("Enter");
    const root = bob.page.locator("main article.message:not(.pending)", { hasText: "a root for Cy" });
    await root.hover();
    await root.getByRole("button", { name: "Reply in thread" }).click();
    const thread = bob.page.getByRole("complementary", { name: "Thread" });
    expect(await thread.locator("textarea").isEditable()).toBe(true);
    await bob.page.locator("main textarea").fill("a line for Cy");
    await ada.page.getByRole("button", { name: "Members & settings" }).click();
    ada.page.once("dialog", (dialog) => void dialog.accept());
    await ada.page.getByRole("button", { name: "Remove Cy" }).click();
    await ada.page.getByText("Cy removed.").waitFor();
    await ada.page.keyboard.press("Escape");
    // Within seconds (the `team` frame), without a reload: said above the list and in the box.
    await bob.page.getByText("Cy is no longer a member of this team: you can read your messages, not send new ones.").waitFor({ timeout: 10_000 });
    await bob.page.getByText(/Cy is no longer a member of this team\. What you typed was not sent\./).waitFor();
    expect(await bob.page.locator("main textarea").inputValue()).toBe("a line for Cy");
    expect(await bob.page.locator("main textarea").isEditable()).toBe(false);
    // Nor can the thread under it be replied to: the server would refuse that too.
    expect(await thread.locator("textarea").getAttribute("placeholder")).toBe("Cy is no longer a member of this team");
    expect(await thread.locator("textarea").isEditable()).toBe(false);
    // No presence is shown for someone no longer in the team (nothing would keep it current).
    expect(await bob.page.locator("main .conversation-head .dot").count()).toBe(0);
    await bob.page.screenshot({ path: screenshotPath("dm-closed-1440x900.png") });
  });

  it("renames the user and changes their password from their account: every other login ends, this one stays", async () => {
    const dee = await person(browser, "Dee");
    const elsewhere = await logInAgain(browser, dee);
    const { page } = dee;
    const deeTeam = unique("Dee's");
    await createTeam(page, deeTeam);
    await addMember(page, ada.email);
    const hello = unique("hello from Dee");
    await send(page, hello);
    await openTeam(ada.page, deeTeam);
    await shows(ada.page, hello);
    const byDee = ada.page.locator("main article.message", { hasText: hello }).locator(".author");
    expect(await byDee.textContent()).toBe("Dee");
    await page.getByRole("button", { name: "Your account…" }).click();
    const panel = page.getByRole("complementary", { name: "Your account" });
    await panel.getByLabel("Name").fill("Dee Renamed");
    await panel.getByRole("button", { name: "Save name" }).click();
    await panel.getByText("Name saved.").waitFor();
    await page.locator(".whoami", { hasText: "Dee Renamed" }).waitFor();
    // Told live: a teammate's page shows the new name on what Dee wrote, and Dee's other
    // browser shows it as theirs, neither reloaded.
    await ada.page.locator("main article.message", { hasText: hello }).locator(".author", { hasText: "Dee Renamed" }).waitFor();
    await elsewhere.locator(".whoami", { hasText: "Dee Renamed" }).waitFor();
    // A wrong current password changes nothing and says so, by the form.
    await panel.getByLabel("Current password").fill("not my password");
    await panel.getByLabel("New password").fill("a brand new passphrase");
    await panel.getByRole("button", { name: "Change password" }).click();
    await panel.getByText("The current password is wrong.").waitFor();
    await panel.getByLabel("Current password").fill(PASSWORD);
    await panel.getByRole("button", { name: "Change password" }).click();
    await panel.getByText("Password changed. Every other device and browser was logged out.").waitFor();
    await page.screenshot({ path: screenshotPath("account-1440x900.png") });
    // The other browser's login ended at once (its socket closed, its renewal refused); this
    // page goes on, and the new password is the one that logs in.
    await elsewhere.getByLabel("Password").waitFor({ timeout: 15_000 });
    expect(await page.locator(".conn.open").count()).toBe(1);
    await page.keyboard.press("Escape");
    await expect.poll(() => page.evaluate(() => document.activeElement?.textContent?.trim())).toBe("Your account…");
    await elsewhere.getByLabel("Email").fill(dee.email);
    await elsewhere.getByLabel("Password").fill("a brand new passphrase");
    await elsewhere.getByRole("button", { name: "Log in" }).click();
    await elsewhere.locator(".whoami", { hasText: "Dee Renamed" }).waitFor();
    expect(dee.problems).toEqual([]);
    await elsewhere.context().close();
    await dee.context.close();
  });

  it("reports no script error, no CSP violation and no token in a URL on any page", () => {
    for (const p of [ada, bob, cy]) expect(p.problems).toEqual([]);
  });
});
