"""Every name promptq shares with its clients: collections, states, fields, codes, callables.

This package is the one place that spells a state string, a field name or a callable name
(``documents``: an execution's documents; ``accounts``: users' limits, usage and keys;
``batches``: batch runs; ``calls``: the callables and the worker's answers).
Python code imports them from here (``from promptq.schema import F, Status``); the browser's
copy (``packages/web/src/schema.js``, linked as ``web/schema.js``) is generated from it (``make web-schema``) and a test fails when the
two drift apart. The transitions between states live in ``promptq.execution``.
"""

from promptq.schema.accounts import *  # noqa: F401,F403
from promptq.schema.answers import answer_json, parse_json_answer  # noqa: F401
from promptq.schema.batches import *  # noqa: F401,F403
from promptq.schema.calls import *  # noqa: F401,F403
from promptq.schema.documents import *  # noqa: F401,F403
