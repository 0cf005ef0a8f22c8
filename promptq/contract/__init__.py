"""Every name promptq shares with its clients: collections, states, fields, codes, callables.

This package is the one place that spells a state string, a field name or a callable name
(``documents``: an execution's documents; ``results``: what an answer carries besides its text; ``accounts``: users' limits, usage and keys;
``admin``: the operator's figures;
``batches``: batch runs; ``provider``: waits for the provider (cooldowns); ``calls``: the callables and the worker's answers; ``webhooks``: signed
webhooks' events, headers and refusals).
Python code imports them from here (``from promptq.contract import ExecutionField, Status``); the browser's
copy (``packages/web/src/schema.js``, linked as ``web/schema.js``) is generated from it (``make web-schema``) and a test fails when the
two drift apart. The transitions between states live in ``promptq.domain.execution``.
"""

from promptq.contract.accounts import *  # noqa: F401,F403
from promptq.contract.admin import *  # noqa: F401,F403
from promptq.contract.answers import answer_json, iso_time, parse_json_answer  # noqa: F401
from promptq.contract.batches import *  # noqa: F401,F403
from promptq.contract.calls import *  # noqa: F401,F403
from promptq.contract.documents import *  # noqa: F401,F403
from promptq.contract.results import *  # noqa: F401,F403
from promptq.contract.provider import *  # noqa: F401,F403
from promptq.contract.webhooks import *  # noqa: F401,F403

# The names of promptq 0.2 (one letter each), kept for scripts written against them: deprecated,
# and used nowhere in this repository (tests/tools/test_layout.py).
F, J, B, S, C, P, U, E, A, R, TC = (  # noqa: E741
    ExecutionField,  # noqa: F405
    JobField,  # noqa: F405
    BatchField,  # noqa: F405
    StopField,  # noqa: F405
    ChunkField,  # noqa: F405
    PageField,  # noqa: F405
    UsageField,  # noqa: F405
    ErrorField,  # noqa: F405
    AttemptField,  # noqa: F405
    RoundField,  # noqa: F405
    ToolCallField,  # noqa: F405
)
Acc, Lim, Proj, Use, Req, K = AccountField, LimitField, ProjectField, DayField, RequestField, KeyField  # noqa: F405
