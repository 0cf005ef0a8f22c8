"""``@promptq/web/webhooks`` (packages/web/src/webhooks.js) on node, against the sender
(promptq.domain.webhooks) and the npm ``standardwebhooks`` library (a devDependency of
packages/web): it accepts what promptq and the library sign, with either secret during a
rotation, refuses what is changed, late or missing, and the library accepts what promptq signs.
Also: its names are the contract's, the browser entry does not load it, and a TypeScript app
type-checks against its entry under each module resolution the package supports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from promptq.contract import EventType, WebhookHeader
from promptq.domain import webhooks as wh

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "packages" / "web"
TSC = PACKAGE / "node_modules/.bin/tsc"

# Reads {cases} on stdin, runs each through verifyWebhook or the library, prints the results.
HARNESS = r"""
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
const input = JSON.parse(await new Promise((done) => { let s = ""; process.stdin.on("data", (c) => (s += c)).on("end", () => done(s)); }));
const mod = await import(pathToFileURL(input.module).href);
const { Webhook } = createRequire(input.manifest)("standardwebhooks");
const kinds = {
  object: (h) => h,
  title: (h) => Object.fromEntries(Object.entries(h).map(([k, v]) => [k.replace(/(^|-)\w/g, (c) => c.toUpperCase()), v])),
  fetch: (h) => new Headers(h),
  map: (h) => new Map(Object.entries(h)),
  pairs: (h) => Object.entries(h),
  get: (h) => ({ get: (name) => h[name] }),
  node: (h) => Object.fromEntries(Object.entries(h).map(([k, v]) => [k, k === "webhook-signature" ? v.split(" ") : v])),
};
const bodies = {
  string: (b) => b,
  buffer: (b) => Buffer.from(b, "utf8"),
  arraybuffer: (b) => new TextEncoder().encode(b).buffer,
};
async function run(c) {
  try {
    if (c.op === "theirSign") return { ok: true, value: new Webhook(c.secret).sign(c.msgId, new Date(c.timestamp * 1000), c.body) };
    if (c.op === "theirVerify") return { ok: true, value: new Webhook(c.secret).verify(c.body, c.headers) };
    const headers = kinds[c.headersKind ?? "object"](c.headers);
    return { ok: true, value: await mod.verifyWebhook(c.secret, headers, bodies[c.bodyKind ?? "string"](c.body), c.options ?? {}) };
  } catch (err) {
    return { ok: false, name: err.name, error: String(err.message) };
  }
}
const results = [];
for (const c of input.cases) results.push(await run(c));
console.log(JSON.stringify({ results, names: { events: mod.WebhookEventType, headers: mod.WebhookHeader } }));
"""

NEW, OLD = wh.new_secret(), wh.new_secret()


@pytest.fixture(scope="module")
def node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is required: install Node.js 20+", pytrace=False)
    if not (PACKAGE / "node_modules" / "standardwebhooks" / "package.json").exists():
        pytest.fail("packages/web/node_modules lacks standardwebhooks: run `npm ci` in packages/web", pytrace=False)
    return node


def _run(node: str, cases: list[dict]) -> dict:
    stdin = json.dumps({"module": str(PACKAGE / "src/webhooks.js"), "manifest": str(PACKAGE / "package.json"), "cases": cases})
    done = subprocess.run([node, "--input-type=module", "-e", HARNESS], input=stdin, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout)


def _signed(secrets: list[str], *, ts: int, msg_id: str = "msg_js", data: dict | None = None) -> tuple[dict, str]:
    body = wh.event(EventType.EXECUTION_SUCCEEDED, datetime.fromtimestamp(ts, timezone.utc), data or {"executionId": "e_1", "note": "ünï ✓"})
    return wh.delivery_headers(secrets, msg_id, ts, body), body.decode()


def test_verify_webhook_accepts_what_promptq_signs_in_every_container_and_body(node):
    now = 1_800_000_000
    headers, body = _signed([NEW, OLD], ts=now)
    cases = [
        {"secret": secret, "headers": headers, "body": body, "headersKind": kind, "bodyKind": body_kind, "options": {"now": now}}
        for secret in (NEW, OLD, [wh.new_secret(), OLD])
        for kind in ("object", "title", "fetch", "map", "pairs", "get", "node")
        for body_kind in ("string", "buffer", "arraybuffer")
    ]
    results = _run(node, cases)["results"]
    assert [r for r in results if not r["ok"]] == []
    assert {json.dumps(r["value"], sort_keys=True) for r in results} == {json.dumps(json.loads(body), sort_keys=True)}


def test_verify_webhook_refuses_what_is_changed_late_or_missing(node):
    now = 1_800_000_000
    headers, body = _signed([NEW], ts=now)
    at = {"options": {"now": now}}
    refused = [
        {"secret": OLD, "headers": headers, "body": body, **at},
        {"secret": NEW, "headers": headers, "body": body.replace("e_1", "e_2"), **at},
        {"secret": NEW, "headers": {**headers, "webhook-id": "msg_other"}, "body": body, **at},
        {"secret": NEW, "headers": {**headers, "webhook-timestamp": str(now + 1)}, "body": body, **at},
        {"secret": NEW, "headers": {**headers, "webhook-signature": headers["webhook-signature"].replace("v1,", "v1a,")}, "body": body, **at},
        {"secret": NEW, "headers": {k: v for k, v in headers.items() if k != "webhook-signature"}, "body": body, **at},
        {"secret": NEW, "headers": {k: v for k, v in headers.items() if k != "webhook-id"}, "body": body, **at},
        {"secret": NEW, "headers": headers, "body": body, "options": {"now": now + 301}},
        {"secret": NEW, "headers": headers, "body": body, "options": {"now": now - 301}},
    ]
    tolerated = {"secret": NEW, "headers": headers, "body": body, "options": {"now": now + 3600, "toleranceSeconds": 3600}}
    bad_secret = {"secret": "whsec_!!", "headers": headers, "body": body, **at}
    results = _run(node, [*refused, tolerated, bad_secret])["results"]
    assert [r["name"] for r in results[: len(refused)]] == ["WebhookVerificationError"] * len(refused)
    assert results[len(refused)]["ok"] and results[-1]["name"] == "TypeError"


def test_verify_webhook_accepts_what_the_library_signs_and_the_library_accepts_what_promptq_signs(node):
    ts = int(time.time())  # the library checks against the clock
    body = '{"type":"batch.completed","timestamp":"2026-12-07T10:04:05.123Z","data":{"batchId":"b_1","counts":{"total":3}}}'
    signed = _run(node, [{"op": "theirSign", "secret": s, "msgId": "msg_lib", "timestamp": ts, "body": body} for s in (NEW, OLD)])["results"]
    both = " ".join(r["value"] for r in signed)
    theirs = {"webhook-id": "msg_lib", "webhook-timestamp": str(ts), "webhook-signature": both}
    ours_headers, ours_body = _signed([NEW, OLD], ts=ts)
    assert both.split(" ") == [wh.sign(s, "msg_lib", ts, body.encode()) for s in (NEW, OLD)]  # one HMAC, three implementations
    cases = [{"secret": s, "headers": theirs, "body": body, "headersKind": "fetch"} for s in (NEW, OLD)]
    cases += [{"op": "theirVerify", "secret": s, "headers": ours_headers, "body": ours_body} for s in (NEW, OLD)]
    cases += [{"op": "theirVerify", "secret": wh.new_secret(), "headers": ours_headers, "body": ours_body}]
    results = _run(node, cases)["results"]
    assert [r["ok"] for r in results] == [True, True, True, True, False]
    assert results[0]["value"]["data"]["counts"] == {"total": 3} and results[2]["value"]["data"]["executionId"] == "e_1"


def test_the_js_names_are_the_contracts(node):
    names = _run(node, [])["names"]
    assert names["events"] == {e.name: e.value for e in EventType}
    assert names["headers"] == {"ID": WebhookHeader.ID, "TIMESTAMP": WebhookHeader.TIMESTAMP, "SIGNATURE": WebhookHeader.SIGNATURE}
    source = (PACKAGE / "src/webhooks.js").read_text()
    typedef = re.search(r"@typedef \{([^}]*)\} WebhookEventType", source).group(1)
    assert sorted(re.findall(r'"([^"]+)"', typedef)) == sorted(e.value for e in EventType)


def test_the_browser_entry_does_not_load_it_and_it_imports_nothing():
    """Server code only: the browser entry never reaches it, and it needs no firebase and no
    node: module (Web Crypto is global), so servers and edge runtimes import it alone."""
    entry = (PACKAGE / "src/index.js").read_text() + (PACKAGE / "src/react.js").read_text()
    assert "webhooks" not in entry
    assert re.findall(r"^\s*import\b.*$", (PACKAGE / "src/webhooks.js").read_text(), re.M) == []
    manifest = json.loads((PACKAGE / "package.json").read_text())
    assert manifest["exports"]["./webhooks"] == {"types": "./types/webhooks.d.ts", "default": "./src/webhooks.js"}
    assert manifest["typesVersions"]["*"]["webhooks"] == ["./types/webhooks.d.ts"]


APP_TS = """\
import { verifyWebhook, WebhookEventType, WebhookVerificationError, type WebhookEvent } from "@promptq/web/webhooks";

export async function receive(headers: Headers, nodeHeaders: Record<string, string | string[] | undefined>, body: Uint8Array): Promise<string> {
  try {
    const event: WebhookEvent = await verifyWebhook("whsec_c2VjcmV0", headers, new TextDecoder().decode(body));
    const again = await verifyWebhook(["whsec_a", "whsec_b"], nodeHeaders, body, { toleranceSeconds: 60, now: new Date() });
    return event.type === WebhookEventType.BATCH_COMPLETED ? String(event.data.batchId) : again.timestamp;
  } catch (err) {
    return err instanceof WebhookVerificationError ? "400" : "500";
  }
}

// @ts-expect-error: not an event type
export const notAType: WebhookEvent["type"] = "execution.done";
// @ts-expect-error: the body is the raw body, not a parsed object
verifyWebhook("whsec_c2VjcmV0", new Headers(), { type: "batch.completed" });
"""
COMMON = {"target": "es2022", "module": "nodenext", "moduleResolution": "nodenext"}
RESOLUTIONS = {"bundler": ("esnext", "bundler"), "nodenext": ("nodenext", "nodenext"), "node10": ("commonjs", "node10")}


@pytest.fixture(scope="module")
def server(node, tmp_path_factory) -> Path:
    """A TypeScript server with the package's manifest and webhooks.js, its .d.ts written by
    tsc from the JSDoc under the package's own options (a copy: packages/web/types/ is left to
    the package's build). webhooks.js imports nothing, so it builds alone."""
    app = tmp_path_factory.mktemp("webhooks-server")
    copy = app / "node_modules/@promptq/web"
    (copy / "src").mkdir(parents=True)
    shutil.copy(PACKAGE / "package.json", copy / "package.json")
    shutil.copy(PACKAGE / "src/webhooks.js", copy / "src/webhooks.js")
    build = {"allowJs": True, "checkJs": True, "strict": True, "declaration": True, "emitDeclarationOnly": True, "skipLibCheck": True}
    build |= {"outDir": "types", "rootDir": "src", "lib": ["es2022", "dom"], "types": [], **COMMON}
    (copy / "tsconfig.json").write_text(json.dumps({"compilerOptions": build, "include": ["src/*.js"]}))  # packages/web/tsconfig.json's
    built = subprocess.run([str(TSC), "-p", "tsconfig.json"], cwd=copy, capture_output=True, text=True, timeout=240)
    assert built.returncode == 0 and (copy / "types/webhooks.d.ts").is_file(), built.stdout[-4000:]
    (app / "package.json").write_text('{"name": "server", "private": true, "type": "module"}\n')
    (app / "server.ts").write_text(APP_TS)
    return app


@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_a_typescript_server_type_checks_against_the_entry(server, resolution):
    module, resolver = RESOLUTIONS[resolution]
    options = {"noEmit": True, "strict": True, "lib": ["es2022", "dom"], "types": [], **COMMON, "module": module, "moduleResolution": resolver}
    (server / f"tsconfig.{resolution}.json").write_text(json.dumps({"compilerOptions": options, "files": ["server.ts"]}))
    done = subprocess.run([str(TSC), "-p", f"tsconfig.{resolution}.json"], cwd=server, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-4000:]
