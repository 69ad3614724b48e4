// What the browser tests share: Debian's Chromium through playwright-core, the stack's address,
// accounts made through the real UI, and a watch on every page for script errors and CSP reports.
import { mkdirSync } from "node:fs";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";

export const BASE = process.env.CHATSTACK_NGINX_URL ?? "http://127.0.0.1:8080";
export const STACK_HOME = process.env.CHATSTACK_HOME ?? join(import.meta.dirname, "..", "..", ".stack");
export const ARTIFACTS = join(import.meta.dirname, "artifacts");
export const PASSWORD = "correct horse battery staple";

export function launch(): Promise<Browser> {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
    headless: true,
    // This machine's network is closed: Chromium's background calls would only fail (and slow it).
    args: ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-gpu", "--disable-quic"],
  });
}

export interface Person {
  name: string;
  email: string;
  context: BrowserContext;
  page: Page;
  /** Page errors, console errors and CSP violations seen so far. */
  problems: string[];
}

let counter = 0;

export function unique(label: string): string {
  counter += 1;
  return `${label}-${Date.now().toString(36)}-${counter}-${Math.random().toString(36).slice(2, 6)}`;
}

/** A new browser context, registered and signed in through the UI. */
export async function person(browser: Browser, name: string, viewport = { width: 1440, height: 900 }): Promise<Person> {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const problems: string[] = [];
  page.on("pageerror", (err) => problems.push(`pageerror: ${err.message}`));
  page.on("console", (msg) => {
    // A refused request (a 413 the test provokes, a route of 5b a backend lacks) is the app's to
    // handle and is logged by Chromium itself; script errors and CSP reports are what count.
    if (msg.type() === "error" && !msg.text().startsWith("Failed to load resource")) problems.push(`console: ${msg.text()}`);
  });
  const email = `${unique(name.toLowerCase())}@example.com`;
  await page.goto(BASE + "/");
  await page.getByRole("button", { name: "Create an account" }).click();
  // Registration is limited per client address (10 a minute): the whole suite shares 127.0.0.1.
  for (let attempt = 0; ; attempt++) {
    await page.getByLabel("Name").fill(name);
    await page.getByLabel("Email").fill(email);
    await page.getByLabel("Password").fill(PASSWORD);
    await page.getByRole("button", { name: "Create account" }).click();
    const outcome = await Promise.race([
      page.getByRole("status").filter({ hasText: "connected" }).waitFor({ timeout: 20_000 }).then(() => "in"),
      page.getByRole("alert").waitFor({ timeout: 20_000 }).then(async () => (await page.getByRole("alert").textContent()) ?? ""),
    ]);
    if (outcome === "in") break;
    if (!/too many/i.test(outcome) || attempt >= 8) throw new Error(`registration of ${name} failed: ${outcome}`);
    await page.waitForTimeout(7_000);
  }
  return { name, email, context, page, problems };
}

export function relayPid(index: number): number {
  return Number(readFileSync(join(STACK_HOME, "run", `relay-${index}.pid`), "utf8").trim());
}

export function screenshotPath(name: string): string {
  mkdirSync(ARTIFACTS, { recursive: true });
  return join(ARTIFACTS, name);
}

/** How many message articles of the open conversation show exactly this text. */
export async function countMessages(page: Page, text: string): Promise<number> {
  return page.locator("main article.message .text").filter({ hasText: new RegExp(`^${escapeRegExp(text)}( \\(edited\\))?$`) }).count();
}

export function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Sends a text through the composer of the open conversation. */
export async function send(page: Page, text: string): Promise<void> {
  const box = page.locator("main textarea");
  await box.fill(text);
  await box.press("Enter");
}

export async function openTeam(page: Page, team: string): Promise<void> {
  await page.locator(".team-button", { hasText: team }).click();
}

/** Waits until a message with this text shows in the open conversation (or `scope`). */
export async function shows(page: Page, text: string, scope = "main"): Promise<void> {
  await page.locator(`${scope} article.message .text`).filter({ hasText: text }).first().waitFor();
}
