"""The fleet's cooldowns (``cooldowns/{id}``, ``promptq.domain.cooldown``): what this process
heard of them, and their writes.

Every worker process keeps one listener on the collection (started at its first use, like the
Stop listener), so that the check before each upstream call reads memory, not Firestore: a
cooldown recorded by one worker reaches the others within the listener's latency (the few calls
that go out meanwhile are refused too, and only extend the same cooldown). Writes go through
``compare_and_set``: a refusal extends the cooldown (``throttled``), the probe takes its turn
(``Gate.take``, conditional on the version it decided on: one probe), and a call that went
through ends it (``passed``).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any, Callable

from google.cloud import firestore

from promptq.adapters.cas import Commit, Step, compare_and_set
from promptq.contract import COOLDOWNS, CooldownField
from promptq.contract.shapes import JobDoc
from promptq.domain import cooldown as cd
from promptq.domain.records import utcnow

log = logging.getLogger(__name__)

READY_S = 5.0  # how long a first check waits for the listener's first snapshot (then reads)


class Cooldowns:
    def __init__(self, client: firestore.Client, *, listen: bool = True, now: Callable[[], datetime] = utcnow):
        self.client = client
        self.listen = listen
        self.now = now
        self._docs: dict[str, dict[str, Any]] = {}
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._watch: Any = None

    def ref(self, doc_id: str) -> firestore.DocumentReference:
        return self.client.collection(COOLDOWNS).document(doc_id)

    # --- what this process heard ---------------------------------------------------------

    def _heard(self) -> dict[str, dict[str, Any]] | None:
        """The cooldowns as the listener last heard them (None: no listener, or not ready yet)."""
        if not self.listen:
            return None
        with self._lock:
            if self._watch is None or not self._watch.is_active:
                self._ready.clear()
                self._watch = self.client.collection(COOLDOWNS).on_snapshot(self._on_snapshot)
        if not self._ready.wait(READY_S):
            log.warning("cooldowns: no snapshot within %g s; reading", READY_S)
            return None
        return self._docs

    def _on_snapshot(self, docs: list, changes: list, read_time: Any) -> None:
        docs_now = {snap.id: snap.to_dict() or {} for snap in docs}
        self._docs = docs_now  # replaced whole: readers see one snapshot or the next
        self._ready.set()

    def _read(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        heard = self._heard()
        if heard is not None:
            return {i: heard[i] for i in ids if i in heard}
        snaps = self.client.get_all([self.ref(i) for i in ids])
        return {s.id: s.to_dict() or {} for s in snaps if s.exists}

    # --- the check before a call ----------------------------------------------------------

    def gate(self, job: JobDoc, attempt_id: str) -> cd.Gate:
        """May this attempt call upstream now? The key's cooldown (credit) first, then the
        model's; the first call after a cooldown takes the probe's turn (once, fleet-wide)."""
        model, key = cd.model_of(job), cd.key_of(job)
        ids = [cd.doc_id(cd.ANY_MODEL, key), cd.doc_id(model, key)]
        heard = self._read(ids)
        for doc_id in ids:
            seen = cd.gate(heard.get(doc_id), now=self.now(), attempt_id=attempt_id)
            if seen.probe:
                seen = self._take_probe(doc_id, attempt_id)
            if seen.waits:
                return seen
        return cd.GO

    def _take_probe(self, doc_id: str, attempt_id: str) -> cd.Gate:
        ref = self.ref(doc_id)

        def decide(snap: firestore.DocumentSnapshot) -> Step[cd.Gate]:
            gate = cd.gate(snap.to_dict() if snap.exists else None, now=self.now(), attempt_id=attempt_id)
            if not gate.probe or gate.take is None:
                return Step(None, lambda: gate)
            commit = Commit(self.client)
            commit.update(ref, gate.take, version=snap.update_time)
            log.info("cooldown %s: attempt %s goes first", doc_id[:12], attempt_id)
            return Step(commit, lambda: cd.GO)

        return compare_and_set(ref.get, decide, what=f"cooldown {doc_id[:12]}")

    # --- what a call learned --------------------------------------------------------------

    def refused(self, job: JobDoc, refusal: cd.Refusal) -> cd.Gate:
        """The upstream refused a call (429, or spent credit): the cooldown begins or goes on;
        returns the wait it sets for this call (and every other of the model on that key)."""
        key = cd.key_of(job)
        model = cd.ANY_MODEL if refusal.reason is cd.WaitReason.CREDIT else cd.model_of(job)
        doc_id = cd.doc_id(model, key)
        ref = self.ref(doc_id)

        def decide(snap: firestore.DocumentSnapshot) -> Step[cd.Gate]:
            doc = cd.throttled(snap.to_dict() if snap.exists else None, refusal, model=model, key=key, now=self.now())
            commit = Commit(self.client)
            if snap.exists:
                commit.update(ref, doc, version=snap.update_time)
            else:
                commit.create(ref, doc)
            gate = cd.gate(doc, now=self.now(), attempt_id="")
            if snap.exists and doc[CooldownField.UNTIL] == (snap.to_dict() or {}).get(CooldownField.UNTIL):
                return Step(None, lambda: gate)  # the same cooldown, as long: nothing to write
            return Step(commit, lambda: gate)

        gate = compare_and_set(ref.get, decide, what=f"cooldown {doc_id[:12]}")
        log.warning("cooldown %s: %s on %s's key until %s (%s)", doc_id[:12], model, key.split(":")[0], gate.until, refusal.reason.value)
        return gate

    def passed(self, job: JobDoc) -> None:
        """A call went through: the model's cooldown on that key (and the key's) is over."""
        model, key = cd.model_of(job), cd.key_of(job)
        heard = self._heard()
        for doc_id in (cd.doc_id(model, key), cd.doc_id(cd.ANY_MODEL, key)):
            if heard is not None and doc_id not in heard:
                continue  # nothing to end (the common case: no read, no write)
            self._end(doc_id)

    def clear(self, key: str, model: str = cd.ANY_MODEL) -> None:
        """End a cooldown now (``resume_batch``: the key's credit is said to be back)."""
        self._end(cd.doc_id(model, key), force=True)

    def _end(self, doc_id: str, *, force: bool = False) -> None:
        ref = self.ref(doc_id)

        def decide(snap: firestore.DocumentSnapshot) -> Step[None]:
            if not snap.exists or not (force or cd.passed(snap.to_dict(), now=self.now())):
                return Step(None, lambda: None)
            commit = Commit(self.client)
            commit.delete(ref, version=snap.update_time)
            log.info("cooldown %s: over", doc_id[:12])
            return Step(commit, lambda: None)

        compare_and_set(ref.get, decide, what=f"cooldown {doc_id[:12]}")

    def close(self) -> None:
        with self._lock:
            if self._watch is not None:
                self._watch.unsubscribe()
                self._watch = None
