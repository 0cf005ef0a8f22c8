"""@promptq/web's JSON answer while it streams (packages/web/src/partial.js, and the states of
watchExecution), run by node: its parser (partial-json) and scanner agree with the Python
client's (jiter, promptq_client/partial.py) on every prefix of a few answers; parses are spaced
out as the text grows and stop at the cap; and watchExecution, on a fake Firestore (a module
hook stands in for "firebase/firestore"), reports ``partial`` growing before ``json``. No
emulator: node and packages/web/node_modules (scripts/setup.sh)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from promptq_client.partial import Members, parse_partial

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "packages" / "web" / "src"

ANSWERS = [
    {"name": "Ada Lovelace", "age": 36, "tags": ["math", "engines"], "bio": {"born": 1815, "city": "London"}, "ok": True, "none": None},
    [{"x": 1.5, "y": -2}, "two, three", [3, [4]], {"nested": {"deep": 'é " \\ ✓'}}, False],
    {'q"uote': "a} b] c, d", "emoji": "👍🏽 fine", "neg": -0.25e-3, "empty": {}, "list": []},
    "just a string",
]

PREFIXES_JS = """
import { members, parsePartial } from "%(src)s/partial.js";
const texts = JSON.parse(process.argv[2]);
const out = texts.map((text) => {
  const scanner = members();
  const rows = [];
  for (let end = 1; end <= text.length; end++) {
    const complete = [...scanner.feed(text, end)];
    const value = parsePartial(text.slice(0, end), scanner.inString);
    rows.push([value === undefined ? null : value, complete]);
  }
  return rows;
});
console.log(JSON.stringify(out));
"""


@pytest.fixture(scope="module")
def node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is required: install Node.js 20+", pytrace=False)
    if not (ROOT / "packages/web/node_modules/partial-json/package.json").exists():
        pytest.fail("packages/web/node_modules/partial-json is missing: run `bash scripts/setup.sh`", pytrace=False)
    return node


def _node(node: str, script: Path, *args: str, imports: Path | None = None) -> str:
    argv = [node, *(["--import", imports.as_uri()] if imports else []), str(script), *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"node failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_the_js_and_python_parsers_agree_on_every_prefix(node, tmp_path):
    texts = [json.dumps(a, ensure_ascii=False) for a in ANSWERS] + [json.dumps(ANSWERS[0], indent=2)]
    script = tmp_path / "prefixes.mjs"
    script.write_text(PREFIXES_JS % {"src": SRC.as_uri()})
    seen = json.loads(_node(node, script, json.dumps(texts)))
    for text, rows in zip(texts, seen):
        if len(rows) != len(text):  # JS counts UTF-16 units (and cuts inside a surrogate pair): the whole only
            assert rows[-1] == [json.loads(text), Members().feed(text, len(text))]
            continue
        scanner = Members()
        for end, (value, complete) in enumerate(rows, 1):
            expected = parse_partial(text[:end])
            assert value == expected, f"{text[:end]!r}: JS {value!r}, Python {expected!r}"
            assert complete == scanner.feed(text, end), text[:end]
        assert rows[-1][0] == json.loads(text)


THROTTLE_JS = """
import { PARTIAL_CAP_CHARS, PARTIAL_EAGER_CHARS, parsePartial, partialJson } from "%(src)s/partial.js";
const answer = (n) => JSON.stringify({ items: Array.from({ length: n }, (_, i) => `item number ${String(i).padStart(7, "0")}`), tail: "end" });
function run(text, step) {
  const tracker = partialJson();
  const parsedAt = [];
  let last = tracker.update("");
  const started = performance.now();
  for (let end = step; end <= text.length; end += step) {
    const state = tracker.update(text.slice(0, end));
    if (state !== last) parsedAt.push(end);  // a new state object: it parsed
    last = state;
  }
  const ms = performance.now() - started;
  const final = tracker.update(text, true);
  return { length: text.length, parsedAt, ms, partialItems: final.partial?.items?.length ?? null, complete: final.partialComplete };
}
const small = answer(8000), large = answer(40000);
const ms = performance.now();  // what parsing every 1,000-character chunk up to the cap would take
for (let end = 1000; end <= PARTIAL_CAP_CHARS; end += 1000) parsePartial(large.slice(0, end));
const unthrottled = performance.now() - ms;
const deep = [200, 201].map((n) => partialJson().update(`{"a": ${"[".repeat(n - 1)}`, true).partial !== undefined);
const out = { eager: PARTIAL_EAGER_CHARS, cap: PARTIAL_CAP_CHARS, small: run(small, 100), large: run(large, 1000), unthrottled, deep };
console.log(JSON.stringify(out));
"""


def test_js_parses_when_the_text_grew_by_an_eighth_and_not_past_the_cap(node, tmp_path):
    script = tmp_path / "throttle.mjs"
    script.write_text(THROTTLE_JS % {"src": SRC.as_uri()})
    out = json.loads(_node(node, script))
    eager, small, large = out["eager"], out["small"], out["large"]
    steps = small["parsedAt"]
    assert [n for n in steps if n <= eager] == list(range(100, eager + 1, 100))
    bigger = [n for n in steps if n > eager]
    for before, after in zip([eager - eager % 100, *bigger], bigger):
        assert before / 8 <= after - before < before / 8 + 100
    assert small["partialItems"] == 8000 and small["complete"] == ["items", "tail"]  # the end parses whatever is new
    # ~920 KB: parsed at most up to the cap, whose value it then keeps.
    assert max(large["parsedAt"]) <= large["length"] and large["partialItems"] < 40000 and large["complete"] == []
    print(
        f"partial.js: {small['length']:,} characters in 100-character chunks parsed {len(steps)} times ({small['ms']:.0f} ms); "
        f"{large['length']:,} in 1,000-character chunks {len(large['parsedAt'])} times ({large['ms']:.0f} ms; "
        f"parsing every chunk up to the cap instead: {out['unthrottled']:.0f} ms)"
    )
    assert len(large["parsedAt"]) < 60
    assert out["deep"] == [True, False]  # nested deeper than 200 levels: no partial, as in Python


FAKE_FIRESTORE_JS = """
// A stand-in for "firebase/firestore": the test pushes snapshots to the listeners.
export const listeners = [];
export const doc = (db, ...path) => ({ path: path.join("/") });
export const collection = (ref, name) => ({ path: `${ref.path}/${name}` });
export const where = (...args) => ({ where: args });
export const orderBy = (field) => ({ orderBy: field });
export const query = (coll, ...constraints) => ({ path: coll.path, constraints });
export function onSnapshot(target, next, error) {
  const listener = { target, next, error };
  listeners.push(listener);
  return () => listeners.splice(listeners.indexOf(listener), 1);
}
export const getDoc = async () => { throw new Error("not in this test"); };
export const getDocs = async () => ({ docs: [] });
export const serverTimestamp = () => ({});
export const Timestamp = { fromMillis: (ms) => ({ ms }) };
export const writeBatch = () => { throw new Error("not in this test"); };
"""

HOOKS_JS = """
export async function resolve(specifier, context, next) {
  if (specifier === "firebase/firestore") return { url: new URL("./fake-firestore.mjs", import.meta.url).href, shortCircuit: true };
  return next(specifier, context);
}
"""

WATCH_JS = """
import { listeners } from "./fake-firestore.mjs";
import { ChunkField, ExecutionField, OutputFormat, Status } from "%(src)s/schema.js";
import { watchExecution } from "%(src)s/watch.js";

const text = process.argv[2];
const tick = () => new Promise((resolve) => setTimeout(resolve, 0));
const states = [];
const handle = watchExecution({}, "e1", { onUpdate: (s) => states.push(s), onError: (err) => { throw err; } });
const [docs] = listeners;
const Ex = ExecutionField;
const emit = (fields) => docs.next({ exists: () => true, data: () => ({ [Ex.OUTPUT_FORMAT]: OutputFormat.JSON, [Ex.ATTEMPT]: 1, ...fields }) });
emit({ [Ex.STATUS]: Status.RUNNING, [Ex.SEQ]: 2 });
await tick();
const chunks = listeners[1];
for (let start = 0, seq = 1; start < text.length; start += 7, seq++) {
  const Ch = ChunkField;
  const end = Math.min(start + 7, text.length);
  const piece = { [Ch.ATTEMPT]: 1, [Ch.SEQ]: seq, [Ch.START]: start, [Ch.END]: end, [Ch.TEXT]: text.slice(start, end) };
  chunks.next({ docChanges: () => [{ type: "added", doc: { data: () => piece } }] });
}
emit({ [Ex.STATUS]: Status.SUCCEEDED, [Ex.SEQ]: 3, [Ex.OUTPUT_LENGTH]: text.length });
const final = await handle.done;
handle.unsubscribe();
console.log(JSON.stringify({
  states: states.map((s) => ({ status: s.status, partial: s.partial ?? null, partialComplete: s.partialComplete, json: s.json ?? null })),
  final: { partial: final.partial, partialComplete: final.partialComplete, json: final.json },
}));
"""


def test_watch_execution_reports_partial_growing_before_json(node, tmp_path):
    (tmp_path / "fake-firestore.mjs").write_text(FAKE_FIRESTORE_JS)
    (tmp_path / "hooks.mjs").write_text(HOOKS_JS)
    (tmp_path / "register.mjs").write_text('import { register } from "node:module";\nregister("./hooks.mjs", import.meta.url);\n')
    (tmp_path / "watch.mjs").write_text(WATCH_JS % {"src": SRC.as_uri()})
    answer = ANSWERS[0]
    text = json.dumps(answer)
    out = json.loads(_node(node, tmp_path / "watch.mjs", text, imports=tmp_path / "register.mjs"))
    running = [s for s in out["states"] if s["status"] == "running"]
    assert all(s["json"] is None for s in running) and len(running) > 10
    shown = [json.dumps(s["partial"]) for s in running if s["partial"] is not None]
    assert len(set(shown)) >= 10, "partial grew in many steps"
    completes = [s["partialComplete"] for s in running]
    assert completes[0] == [] and completes[-1] == list(answer)
    assert all(a == b[: len(a)] for a, b in zip(completes, completes[1:]))
    # Each state agrees with the Python twin on the text it had.
    for i, state in enumerate(running[1:], 1):
        assert state["partial"] == parse_partial(text[: min(7 * i, len(text))])
    assert out["final"] == {"partial": answer, "partialComplete": list(answer), "json": answer}
