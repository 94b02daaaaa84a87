// The dashboard in a real browser: Debian's chromium, headless, driven by
// playwright-core (installed by scripts/setup.sh's weir_browser_setup into
// $WEIR_NODE_DIR, default ~/.cache/weir/node).
//
//   node tests/browser/dashboard.mjs [--settle-ms N] URL OUT_DIR SOURCE_UID [UID...]
//
// Opens URL (a running job's dashboard, `#token=...` included if needed),
// waits until the graph shows a box for SOURCE_UID and every other UID,
// reads the record count the source's box shows, waits until a later
// refresh shows a larger one, waits N more milliseconds (default 0) and
// writes OUT_DIR/dashboard.png (1280x800). Fails with a message and exit
// code 1 when any of it does not happen within its deadline, or when the
// page's script throws.

import { createRequire } from "node:module";
import { mkdtempSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir, homedir } from "node:os";
import { join } from "node:path";

const CHROMIUM = "/usr/bin/chromium";
const DEADLINE_MS = 60_000;

function usage(message) {
  console.error(`dashboard test: ${message}`);
  console.error("usage: node tests/browser/dashboard.mjs [--settle-ms N] URL OUT_DIR SOURCE_UID [UID...]");
  process.exit(2);
}

const args = process.argv.slice(2);
let settleMs = 0;
if (args[0] === "--settle-ms") {
  settleMs = Number(args[1]);
  if (!Number.isInteger(settleMs) || settleMs < 0) usage(`--settle-ms wants milliseconds, not \`${args[1]}\``);
  args.splice(0, 2);
}
const [url, outDir, ...uids] = args;
if (!url || !outDir || uids.length === 0) usage("missing arguments");
const source = uids[0];

const nodeDir = process.env.WEIR_NODE_DIR || join(homedir(), ".cache", "weir", "node");
let chromium;
try {
  ({ chromium } = createRequire(join(nodeDir, "package.json"))("playwright-core"));
} catch (error) {
  console.error(`dashboard test: playwright-core is not installed in ${nodeDir} ` +
    `(source scripts/setup.sh && weir_browser_setup): ${error.message}`);
  process.exit(1);
}

/** A failure the test reports as it is. */
class Failure extends Error {}

/** The record count the box of `uid` shows, or null while it shows none. */
async function recordsShown(page, uid) {
  const text = await page.locator(`#graph g.vertex[data-uid="${uid}"] text.records`).textContent();
  const digits = /^([\d,]+) records/.exec(text || "");
  return digits ? Number(digits[1].replaceAll(",", "")) : null;
}

/** Polls `read` until `done(value)` or the deadline; returns the value. */
async function until(what, read, done) {
  const deadline = Date.now() + DEADLINE_MS;
  let value;
  for (;;) {
    value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Failure(`${what} (last seen: ${JSON.stringify(value)})`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

const userDataDir = mkdtempSync(join(tmpdir(), "weir-chromium-"));
let context;
let failed = false;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 800 },
    deviceScaleFactor: 1,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  const page = context.pages()[0] || (await context.newPage());
  const pageErrors = [];
  page.on("pageerror", (error) => pageErrors.push(error.message));

  const answer = await page.goto(url, { timeout: DEADLINE_MS });
  if (!answer || !answer.ok()) throw new Failure(`${url} answered ${answer ? answer.status() : "nothing"}`);
  for (const uid of uids) {
    try {
      await page.locator(`#graph g.vertex[data-uid="${uid}"]`).waitFor({ state: "visible", timeout: DEADLINE_MS });
    } catch (_) {
      const shown = await page.locator("#graph g.vertex").evaluateAll((gs) => gs.map((g) => g.dataset.uid));
      throw new Failure(`the graph shows no vertex \`${uid}\` (it shows ${JSON.stringify(shown)})`);
    }
  }
  const first = await until(`the source \`${source}\` shows no record count`,
    () => recordsShown(page, source), (n) => n !== null);
  const later = await until(`the record count of \`${source}\` did not rise above ${first}`,
    () => recordsShown(page, source), (n) => n !== null && n > first);
  if (settleMs > 0) await page.waitForTimeout(settleMs);
  if (pageErrors.length > 0) throw new Failure(`the page's script threw: ${pageErrors.join("; ")}`);
  mkdirSync(outDir, { recursive: true });
  const png = join(outDir, "dashboard.png");
  await page.screenshot({ path: png });
  console.log(`dashboard test: ${uids.length} vertices shown; ${source} records ${first} -> ${later}; screenshot ${png}`);
} catch (error) {
  failed = true;
  console.error(`dashboard test failed: ${error instanceof Failure ? error.message : error.stack || error}`);
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
