// What the browser tests share: Debian's Chromium through playwright-core, the stack's address,
// accounts made through the real UI, and a watch on every page for script errors and CSP reports.
import { randomFillSync } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { crc32, deflateSync } from "node:zlib";
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
  /** Page errors, console errors, CSP violations and tokens in URLs seen so far. */
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
    // A refused request (a 413 the test provokes, a route of 5b a backend lacks, a handshake to a
    // relay that is restarting) is the app's to handle and is logged by Chromium itself; script
    // errors and CSP reports are what count.
    const text = msg.text();
    const network = text.startsWith("Failed to load resource") || /^WebSocket connection to .* failed/.test(text);
    if (msg.type() === "error" && !network) problems.push(`console: ${text}`);
  });
  // No URL the page creates carries a token, but the WebSocket's ?token= (the contract's one).
  page.on("request", (req) => {
    const url = req.url();
    if (/eyJ[\w-]+\.[\w-]+\.[\w-]+|refresh_token|access_token/.test(url) && !url.startsWith(`${BASE.replace(/^http/, "ws")}/v1/ws?token=`)) {
      problems.push(`token in a URL: ${url.slice(0, 80)}`);
    }
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

let axeSource: string | undefined;

/** axe-core's WCAG A/AA rules over the page as it is now: one line per element that breaks one
 * ("rule: selector"), so a failing test names what a screen-reader or keyboard user would meet.
 * The script goes in through the DevTools protocol, which the page's CSP does not govern. */
export async function accessibilityProblems(page: Page): Promise<string[]> {
  axeSource ??= readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
  if (!(await page.evaluate(() => "axe" in window))) await page.evaluate(axeSource);
  return page.evaluate(async () => {
    const axe = (window as unknown as { axe: { run(context: Document, options: object): Promise<{ violations: { id: string; nodes: { target: string[] }[] }[] }> } }).axe;
    const result = await axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] } });
    return result.violations.flatMap((v) => v.nodes.map((n) => `${v.id}: ${n.target.join(" ")}`));
  });
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

/** A real PNG of random pixels (so it does not compress): `side`² pixels, about 3·side² bytes. */
export function noisePng(side: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc32(body), 8 + data.length);
    return out;
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(side, 0);
  header.writeUInt32BE(side, 4);
  header.set([8, 2, 0, 0, 0], 8); // 8-bit RGB, no interlace
  const rows = Buffer.alloc(side * (1 + side * 3));
  for (let y = 0; y < side; y++) {
    const row = y * (1 + side * 3);
    rows[row] = 0; // filter: none
    randomFillSync(rows, row + 1, side * 3);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header),
    chunk("IDAT", deflateSync(rows, { level: 1 })),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

/** The relay index (1-based, as in $CHATSTACK_HOME/run/relay-N.pid) behind a hello's relay id. */
export function relayIndex(relayId: string): number {
  // The local stack names its relays after their components (relay-1, relay-2...); otherwise the
  // automatic name ends with the port.
  const named = /^relay-(\d+)$/.exec(relayId);
  if (named) return Number(named[1]);
  const ports = (process.env.CHATSTACK_RELAY_PORTS ?? "8103,8104").split(",");
  const port = relayId.slice(relayId.lastIndexOf("-") + 1);
  const index = ports.indexOf(port);
  if (index < 0) throw new Error(`relay ${relayId} is not one of the stack's ports ${ports.join(",")}`);
  return index + 1;
}

export async function relayOf(page: Page): Promise<string> {
  const el = page.locator(".conn.open");
  await el.waitFor();
  return (await el.getAttribute("data-relay")) ?? "";
}

/** Creates a team from the sidebar form and waits until it is open. */
export async function createTeam(page: Page, name: string, tags = ""): Promise<void> {
  await page.getByRole("button", { name: "+ New team" }).click();
  await page.getByLabel("Team name").fill(name);
  if (tags) await page.getByLabel("Tags (optional, comma separated)").fill(tags);
  await page.getByRole("button", { name: "Create team" }).click();
  await page.getByRole("heading", { name, exact: true }).waitFor();
}

/** Adds a member by email from the open team's panel, then closes the panel (Esc). */
export async function addMember(page: Page, email: string): Promise<void> {
  await page.getByRole("button", { name: "Members & settings" }).click();
  await page.getByLabel("Email address").fill(email);
  await page.getByRole("button", { name: "Add member" }).click();
  await page.getByText(/ added\.$/).waitFor();
  await page.keyboard.press("Escape");
}

/** The same account in a new browser context, which shares no cookie (so it asks for the password). */
export async function logInAgain(browser: Browser, who: Person, viewport = { width: 1440, height: 900 }, phone = false): Promise<Page> {
  // A phone: touch, and no hover (the `(hover: none)` styles apply).
  const context = await browser.newContext({ viewport, ...(phone ? { hasTouch: true, isMobile: true } : {}) });
  const page = await context.newPage();
  await page.goto(BASE + "/");
  await page.getByLabel("Email").fill(who.email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.locator(".conn.open").waitFor();
  return page;
}

/** An access token for an account, straight from the API (a test's view of the server's state). */
export async function apiToken(email: string): Promise<string> {
  const resp = await fetch(`${BASE}/v1/auth/login`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ email, password: PASSWORD }) });
  if (!resp.ok) throw new Error(`login of ${email} answered ${resp.status}`);
  return ((await resp.json()) as { data: { access_token: string } }).data.access_token;
}

/** The server's unread count of the caller's team with this name (GET /v1/teams). */
export async function serverUnread(token: string, teamName: string): Promise<number | undefined> {
  const resp = await fetch(`${BASE}/v1/teams?limit=100`, { headers: { Authorization: `Bearer ${token}` } });
  const teams = ((await resp.json()) as { data: { name: string; unread?: { count: number } }[] }).data;
  return teams.find((t) => t.name === teamName)?.unread?.count;
}
