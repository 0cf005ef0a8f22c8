"""Every name promptq shares with its clients: collections, states, fields, codes, callables.

This package is the one place that spells a state string, a field name or a callable name
(``documents``: an execution's documents; ``accounts``: users' limits, usage and keys;
``batches``: batch runs; ``calls``: the callables and the worker's answers; ``webhooks``: signed
webhooks' events, headers and refusals).
Python code imports them from here (``from promptq.contract import F, Status``); the browser's
copy (``packages/web/src/schema.js``, linked as ``web/schema.js``) is generated from it (``make web-schema``) and a test fails when the
two drift apart. The transitions between states live in ``promptq.domain.execution``.
"""

from promptq.contract.accounts import *  # noqa: F401,F403
from promptq.contract.answers import answer_json, iso_time, parse_json_answer  # noqa: F401
from promptq.contract.batches import *  # noqa: F401,F403
from promptq.contract.calls import *  # noqa: F401,F403
from promptq.contract.documents import *  # noqa: F401,F403
from promptq.contract.webhooks import *  # noqa: F401,F403
