"""Generates ``web/schema.js``, the browser's copy of ``promptq.schema``'s names.

    python -m devstack.schema_js > web/schema.js      (make web-schema)

tests/unit/test_layout.py fails when the committed file differs from what this prints.
"""

from __future__ import annotations

import json
import re

from promptq.schema import (
    ACCOUNTS, BATCHES, CHUNKS, DAYS, EXECUTIONS, FINISH_CANCELLED, LIVE, PAGES, PROMPTS, TEMPLATE_CONTENT, USAGE, USERS, Acc, C, Callable,
    CostSource, E, F, P, Status, U, Use, B, Count,
)


def js_module() -> str:
    """``web/schema.js``: the names the web page and ``watchExecution`` use."""
    def obj(cls: type) -> dict[str, str]:
        return {k: v for k, v in vars(cls).items() if k.isupper() and isinstance(v, str)}

    from enqueue.request import StartRequest

    names = {
        "EXECUTIONS": EXECUTIONS,
        "CHUNKS": CHUNKS,
        "PAGES": PAGES,
        "USERS": USERS,
        "PROMPTS": PROMPTS,
        "TEMPLATE_CONTENT": TEMPLATE_CONTENT,
        "ACCOUNTS": ACCOUNTS,
        "USAGE": USAGE,
        "DAYS": DAYS,
        "BATCHES": BATCHES,
        "FINISH_CANCELLED": FINISH_CANCELLED,
        "Status": {s.name: s.value for s in Status},
        "LIVE": sorted(s.value for s in LIVE),
        "F": obj(F),
        "C": obj(C),
        "U": obj(U),
        "E": obj(E),
        "P": obj(P),
        "Acc": obj(Acc),
        "Use": obj(Use),
        "B": obj(B),
        "Count": obj(Count),
        "CostSource": {s.name: s.value for s in CostSource},
        "Callable": {c.name: c.value for c in Callable},
        # start_execution's request fields (enqueue/request.py, StartRequest)
        "Start": {re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper(): name for name in StartRequest.model_fields},
    }
    lines = ["// Generated from promptq/schema.py by `make web-schema`: do not edit.", ""]
    for name, value in names.items():
        literal = json.dumps(value, indent=2)
        lines.append(f"export const {name} = {literal};" if isinstance(value, str) else f"export const {name} = Object.freeze({literal});")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(js_module())
