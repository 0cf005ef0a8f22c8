// Drives Debian's headless Chromium for tests/browser/, one JSON command per line.
//
//   node tests/browser/driver.mjs USER_DATA_DIR [CHROMIUM]
//
// stdin:  {"id": 1, "op": "goto", "url": "..."}       one command per line
// stdout: {"id": 1, "ok": true, "result": ...}  or  {"id": 1, "ok": false, "error": "..."}
// The first line written is {"ready": true, "version": "<browser version>"}. The assertions live
// in the Python test; this file only performs actions and reads the page.

import { createRequire } from "node:module";
import readline from "node:readline";

// playwright-core is installed with the page's packages (web/package.json).
const require = createRequire(new URL("../../web/package.json", import.meta.url));
const { chromium } = require("playwright-core");

const [userDataDir, executablePath = "/usr/bin/chromium"] = process.argv.slice(2);
if (!userDataDir) {
  console.error("usage: node driver.mjs USER_DATA_DIR [CHROMIUM]");
  process.exit(2);
}

const ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

const logs = [];  // the page's console messages and uncaught errors, for failure reports

const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath, headless: true, args: ARGS, viewport: { width: 1100, height: 1000 },
});
const page = context.pages()[0] ?? await context.newPage();
page.on("console", (msg) => logs.push(`console.${msg.type()}: ${msg.text()}`));
page.on("pageerror", (err) => logs.push(`pageerror: ${err.message}`));
page.on("response", (res) => { if (res.status() >= 400) logs.push(`response ${res.status()}: ${res.request().method()} ${res.url()}`); });
page.on("requestfailed", (req) => logs.push(`requestfailed: ${req.url()} ${req.failure()?.errorText ?? ""}`));

const ops = {
  goto: ({ url }) => page.goto(url, { waitUntil: "load" }).then(() => null),
  click: ({ selector }) => page.click(selector),
  fill: ({ selector, value }) => page.fill(selector, value),
  check: ({ selector }) => page.check(selector),
  // A file input's files, as a person picking them: [{name, mimeType, base64}].
  set_files: ({ selector, files }) =>
    page.setInputFiles(selector, files.map((f) => ({ name: f.name, mimeType: f.mimeType, buffer: Buffer.from(f.base64, "base64") }))),
  visible: ({ selector }) => page.isVisible(selector),
  wait: ({ selector, state = "visible", timeout = 10000 }) =>
    page.waitForSelector(selector, { state, timeout }).then(() => null),
  // The textContent of each selector (null when absent), read in one round trip.
  texts: ({ selectors }) =>
    page.evaluate((sels) => sels.map((s) => document.querySelector(s)?.textContent ?? null), selectors),
  // Wait until the selector's textContent matches a regular expression.
  wait_text: ({ selector, pattern, timeout = 10000 }) =>
    page.waitForFunction(
      ([s, p]) => new RegExp(p).test(document.querySelector(s)?.textContent ?? ""),
      [selector, pattern], { timeout, polling: 50 },
    ).then(() => null),
  disabled: ({ selector }) => page.isDisabled(selector),
  // The JSON value of a JavaScript expression in the page, e.g. "window.updates" (a promise
  // is awaited; undefined answers null).
  eval: ({ expr }) => page.evaluate(expr),
  // Wait until a JavaScript expression is truthy in the page.
  wait_js: ({ expr, timeout = 10000 }) =>
    page.waitForFunction(expr, null, { timeout, polling: 50 }).then(() => null),
  screenshot: ({ path }) => page.screenshot({ path, fullPage: true }).then(() => null),
  logs: () => logs.slice(-50),
};

function reply(msg) {
  process.stdout.write(JSON.stringify(msg) + "\n");
}

let closing = false;
async function close(code = 0) {
  if (closing) return;
  closing = true;
  await context.close().catch(() => {});
  process.exit(code);
}
process.on("SIGTERM", () => close(0));
process.on("SIGINT", () => close(0));

reply({ ready: true, version: context.browser()?.version() ?? "unknown" });

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const { id, op, ...args } = JSON.parse(line);
  if (op === "close") {
    reply({ id, ok: true, result: null });
    await close(0);
  }
  try {
    if (!ops[op]) throw new Error(`unknown op ${op}`);
    reply({ id, ok: true, result: (await ops[op](args)) ?? null });
  } catch (err) {
    reply({ id, ok: false, error: String(err?.message ?? err) });
  }
}
await close(0);  // stdin closed: the test is gone
