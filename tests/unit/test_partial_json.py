"""A JSON answer while it streams (promptq_client/partial.py, and the watcher's states in
promptq_client/watch.py): ``partial`` grows with the text, ``partialComplete`` names the
top-level members that are whole, ``json`` only once it succeeded; parses are spaced out as the
text grows and stop at the cap. The watcher runs on a fake reader (no Firestore)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from promptq.contract import ChunkField, ExecutionField, OutputFormat, Status
from promptq_client import partial as pj
import promptq_client.partial as partial_module
from promptq_client.partial import Members, Partial, parse_partial
from promptq_client.watch import JSON, OUTPUT, PARTIAL, PARTIAL_COMPLETE, Follower

ANSWER = {"name": "Ada Lovelace", "age": 36, "tags": ["math", "engines"], "bio": {"born": 1815, "city": "London"}, "ok": True, "none": None}
TEXT = json.dumps(ANSWER, ensure_ascii=False)


# --- parsing a prefix -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, value, complete",
    [
        ('{"name": "Ad', {"name": "Ad"}, []),
        ('{"name": "Ada", "age": 3', {"name": "Ada", "age": 3}, ["name"]),
        ('{"name": "Ada", "age": 36,', {"name": "Ada", "age": 36}, ["name", "age"]),
        ('{"a": 1, "b":', {"a": 1}, ["a"]),  # a member whose value has not begun is left out
        ('{"a": tru', {}, []),  # nor an unfinished literal
        ('{"a": {"b": [1, 2', {"a": {"b": [1, 2]}}, []),
        ('{"a": {"b": 1}, "c": "x, y}', {"a": {"b": 1}, "c": "x, y}"}, ["a"]),  # brackets in strings do not count
        ('{"q\\"uote": 1, "z": "\\u00e9t\\u00e', {'q"uote': 1, "z": "ét"}, ['q"uote']),
        ("[1, 2, 3", [1, 2, 3], [0, 1]),
        ('[{"x": 1}, {"y"', [{"x": 1}, {}], [0]),
        ('"a str', "a str", []),
        ('{"a": 1}', {"a": 1}, ["a"]),
        ("  ", None, []),
        ('Sure! Here is the JSON: {"a": 1}', None, []),  # prose first: not JSON
    ],
)
def test_a_prefix_parses_to_what_came_and_names_the_whole_members(text, value, complete):
    tracker = Partial()
    assert tracker.update(text, final=True) == (value, complete)
    assert parse_partial(text) == value


def test_every_prefix_of_an_answer_parses_and_ends_at_its_value():
    seen = []
    for end in range(1, len(TEXT) + 1):
        value = parse_partial(TEXT[:end])
        assert value is None or isinstance(value, dict), TEXT[:end]
        seen.append(value)
    assert seen[-1] == ANSWER
    members = Members()
    done = [list(members.feed(TEXT, end)) for end in range(1, len(TEXT) + 1)]
    assert done[-1] == list(ANSWER)
    assert all(a == b[: len(a)] for a, b in zip(done, done[1:])), "members only ever become whole"
    # A member is whole exactly when the parse of that prefix already holds its final value.
    for end, whole in enumerate(done, 1):
        assert all(seen[end - 1][key] == ANSWER[key] for key in whole)


def test_the_scanner_reads_each_character_once_whatever_the_steps():
    one_go = Members().feed(TEXT, len(TEXT))
    members = Members()
    for end in (3, 3, 10, 40, 41, len(TEXT)):
        members.feed(TEXT, end)
    assert members.done == one_go and members.pos == len(TEXT)


def test_a_text_nested_deeper_than_200_levels_has_no_partial():
    assert Partial().update('{"a": ' + "[" * 199, final=True) == ({"a": _nested(199)}, [])
    assert Partial().update('{"a": ' + "[" * 200, final=True) == (None, [])
    assert Partial().update("[" * 5000 + "]" * 5000, final=True) == (None, [])


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


# --- how often it parses, and the cap ---------------------------------------------------------


def _counting(monkeypatch) -> list[int]:
    lengths: list[int] = []
    real = pj.parse_partial
    monkeypatch.setattr(pj, "parse_partial", lambda text: lengths.append(len(text)) or real(text))
    return lengths


def _long_answer(items: int) -> str:
    return json.dumps({"items": [f"item number {i:07d}" for i in range(items)], "tail": "end"})


def test_small_answers_parse_on_every_change_large_ones_when_they_grew_by_an_eighth(monkeypatch):
    lengths = _counting(monkeypatch)
    text = _long_answer(8000)  # ~200 KB, under the cap
    tracker = Partial()
    for end in range(0, len(text) + 1, 100):  # 100-character chunks
        tracker.update(text[:end])
    small = [n for n in lengths if n <= pj.EAGER_CHARS]
    assert small == list(range(100, pj.EAGER_CHARS + 1, 100))
    large = [n for n in lengths if n > pj.EAGER_CHARS]
    for before, after in zip([small[-1], *large], large):
        assert after - before >= before / pj.GROWTH and after - before < before / pj.GROWTH + 100
    # Linear: all the parses together read a few times the text, not its length squared / 100.
    assert sum(lengths) < 12 * len(text)
    tracker.update(text, final=True)  # the end parses what came last, whatever its size
    assert lengths[-1] == len(text) and tracker.value == json.loads(text)


def test_past_the_cap_partial_stays_the_value_of_the_first_256_ki_characters(monkeypatch):
    lengths = _counting(monkeypatch)
    text = _long_answer(16000)  # ~400 KB
    assert len(text) > pj.CAP_CHARS
    tracker = Partial()
    for end in range(0, len(text) + 1, 4000):
        value, complete = tracker.update(text[:end])
    tracker.update(text, final=True)
    assert max(lengths) == pj.CAP_CHARS and lengths.count(pj.CAP_CHARS) == 1
    assert value == parse_partial(text[: pj.CAP_CHARS]) and complete == []  # "items" is not whole yet at the cap
    assert len(value["items"]) < 16000
    assert tracker.settle(json.loads(text)) == (json.loads(text), ["items", "tail"])


def test_a_megabyte_answer_in_small_chunks_is_parsed_in_linear_work(monkeypatch):
    """The work is counted, not timed: every parse reads the text so far, and the tracker parses
    again only when the text grew by an eighth (or below 4 Ki characters), up to its cap; so the
    characters parsed over a whole answer stay a small multiple of the answer (every chunk
    parsed would be quadratic: ~20 G characters here)."""
    text = _long_answer(40000)  # ~1 MB in 1,000-character chunks
    parsed: list[int] = []
    real = partial_module.parse_partial
    monkeypatch.setattr(partial_module, "parse_partial", lambda t: (parsed.append(len(t)), real(t))[1])
    tracker = Partial()
    for end in range(0, len(text) + 1, 1000):
        tracker.update(text[:end])
    assert 0 < sum(parsed) <= 10 * len(text), (len(parsed), sum(parsed), len(text))


# --- the watcher's states ---------------------------------------------------------------------


class _Watch:
    def __init__(self, listeners: list, callback):
        self.listeners, self.callback = listeners, callback
        listeners.append(callback)

    def unsubscribe(self) -> None:
        if self.callback in self.listeners:
            self.listeners.remove(self.callback)


class FakeReader:
    """What promptq_client.watch reads, in memory: the test pushes documents and chunks."""

    def __init__(self) -> None:
        self.doc_listeners: list = []
        self.chunk_listeners: dict[int, list] = {}
        self.stored: list[dict[str, Any]] = []

    def watch(self, execution_id, on_doc):
        return _Watch(self.doc_listeners, on_doc)

    def watch_chunks(self, execution_id, attempt, on_chunks):
        return _Watch(self.chunk_listeners.setdefault(attempt, []), on_chunks)

    def pieces(self, execution_id, execution, after=-1):
        return [c for c in self.stored if c[ChunkField.ATTEMPT] == execution[ExecutionField.ATTEMPT]]

    def doc(self, **fields) -> None:
        for listener in list(self.doc_listeners):
            listener(dict(fields))

    def chunks(self, attempt: int, texts: list[str], start: int = 0) -> int:
        batch = []
        for text in texts:
            batch.append(
                {
                    ChunkField.ATTEMPT: attempt,
                    ChunkField.SEQ: len(self.stored) + 1,
                    ChunkField.START: start,
                    ChunkField.END: start + len(text),
                    ChunkField.TEXT: text,
                }
            )
            start += len(text)
        self.stored += batch
        for listener in list(self.chunk_listeners.get(attempt, [])):
            listener(batch)
        return start


def _doc(status: Status, seq: int, attempt: int = 1, fmt: str | None = OutputFormat.JSON.value, **more) -> dict[str, Any]:
    return {
        ExecutionField.STATUS: status.value,
        ExecutionField.SEQ: seq,
        ExecutionField.ATTEMPT: attempt,
        **({ExecutionField.OUTPUT_FORMAT: fmt} if fmt else {}),
        **more,
    }


def _follow(reader: FakeReader) -> tuple[Follower, list[dict[str, Any]]]:
    states: list[dict[str, Any]] = []
    return Follower(reader, "e1", states.append).start(), states


def test_partial_grows_while_it_streams_and_json_comes_only_when_it_succeeded():
    reader = FakeReader()
    follower, states = _follow(reader)
    reader.doc(**_doc(Status.RUNNING, 2))
    at = 0
    for i in range(0, len(TEXT), 9):
        at = reader.chunks(1, [TEXT[i : i + 9]], at)
    reader.doc(**_doc(Status.SUCCEEDED, 3, **{ExecutionField.OUTPUT_LENGTH: len(TEXT)}))
    final = follower.wait(1)

    running = [s for s in states if s[ExecutionField.STATUS] == Status.RUNNING.value]
    assert all(s[JSON] is None for s in running)
    shown = [json.dumps(s[PARTIAL]) for s in running if s[PARTIAL] is not None]
    assert len(set(shown)) >= 10, "partial grew in many steps"
    completes = [s[PARTIAL_COMPLETE] for s in running]
    assert completes[0] == [] and completes[-2] == ["name", "age", "tags", "bio", "ok"] and completes[-1] == list(ANSWER)
    assert all(a == b[: len(a)] for a, b in zip(completes, completes[1:]))
    assert final[JSON] == final[PARTIAL] == ANSWER and final[PARTIAL_COMPLETE] == list(ANSWER)
    assert final[OUTPUT] == TEXT


def test_a_text_answer_has_no_partial_and_a_failed_json_answer_keeps_what_parsed():
    reader = FakeReader()
    follower, states = _follow(reader)
    reader.doc(**_doc(Status.RUNNING, 2, fmt=None))
    reader.chunks(1, ['{"looks": "like json"}'])
    reader.doc(**_doc(Status.SUCCEEDED, 3, fmt=None, **{ExecutionField.OUTPUT_LENGTH: 22}))
    assert (follower.wait(1)[PARTIAL], states[-1][PARTIAL_COMPLETE], states[-1][JSON]) == (None, None, None)

    reader = FakeReader()
    follower, states = _follow(reader)
    reader.doc(**_doc(Status.RUNNING, 2))
    text = '{"a": 1, "b": [1, 2'  # cut by max_tokens: not JSON, so it fails
    reader.chunks(1, [text])
    reader.doc(**_doc(Status.FAILED, 3, **{ExecutionField.OUTPUT_LENGTH: len(text)}))
    final = follower.wait(1)
    assert final[JSON] is None and final[PARTIAL] == {"a": 1, "b": [1, 2]} and final[PARTIAL_COMPLETE] == ["a"]


def test_a_new_attempt_starts_partial_over():
    reader = FakeReader()
    follower, states = _follow(reader)
    reader.doc(**_doc(Status.RUNNING, 2))
    reader.chunks(1, ['{"first": "attempt", "x": 1'])
    assert states[-1][PARTIAL] == {"first": "attempt", "x": 1} and states[-1][PARTIAL_COMPLETE] == ["first"]
    reader.doc(**_doc(Status.RUNNING, 4, attempt=2))
    assert states[-1][PARTIAL] is None and states[-1][PARTIAL_COMPLETE] == []
    reader.chunks(2, ['{"second": 2}'])
    reader.doc(**_doc(Status.SUCCEEDED, 5, attempt=2, **{ExecutionField.OUTPUT_LENGTH: 13}))
    assert follower.wait(1)[PARTIAL] == {"second": 2}


def test_an_answer_that_ended_before_it_was_followed_is_whole_at_once():
    reader = FakeReader()
    reader.stored = [{ChunkField.ATTEMPT: 1, ChunkField.SEQ: 1, ChunkField.START: 0, ChunkField.END: len(TEXT), ChunkField.TEXT: TEXT}]
    follower, states = _follow(reader)
    reader.doc(**_doc(Status.SUCCEEDED, 3, **{ExecutionField.OUTPUT_LENGTH: len(TEXT)}))
    assert len(states) == 1 and follower.wait(1)[PARTIAL] == ANSWER
