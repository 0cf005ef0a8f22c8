"""What every Firestore repository of promptq shares: a version of an execution as read
(``Seen``), the ``writes`` count every server write bumps (``counted``), and the errors after
which a commit may or may not have landed (``INTERRUPTED``). The store, the bulk writes and the
batch and lane repositories build on it."""

from __future__ import annotations

import dataclasses
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from promptq.contract import F

# Transport hiccups (the emulator cancels a commit that races a closing listener). The write
# may or may not have landed: re-read and decide again; the preconditions make that safe.
INTERRUPTED = (gexc.Cancelled, gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.Aborted)


def counted(update: dict[str, Any]) -> dict[str, Any]:
    """Every server write of a document bumps its ``writes`` (a transform in the same write)."""
    return {**update, F.WRITES: firestore.Increment(1)}


@dataclasses.dataclass(frozen=True)
class Seen:
    """A version of an execution: both documents (None if missing) and their update times."""

    execution: dict[str, Any] | None
    job: dict[str, Any] | None
    execution_time: Any = None
    job_time: Any = None
