"""Generates ``packages/web/src/schema.js``: the names ``@promptq/web`` (the npm package for
frontends, which the web page loads too) shares with ``promptq.contract``.

    python -m devstack.schema_js > packages/web/src/schema.js      (make web-schema)

It is the one generated copy (``web/schema.js`` is a link to it). tests/tools/test_layout.py and
tests/tools/test_npm_package.py fail when the committed file differs from what this prints.
"""

from __future__ import annotations

import json
import re

from promptq.contract import (
    ACCOUNTS,
    BATCH_TERMINAL,
    BATCHES,
    CHUNKS,
    DAYS,
    EXECUTIONS,
    FINISH_CANCELLED,
    LIVE,
    PAGES,
    PROMPTS,
    TEMPLATE_CONTENT,
    TEMPLATE_COUNT,
    STOPS,
    TEMPLATE_LAST,
    USAGE,
    USERS,
    WORKERS,
    Acc,
    B,
    BatchStatus,
    C,
    Callable,
    CallStatus,
    Code,
    CostSource,
    Count,
    E,
    F,
    OutputFormat,
    P,
    Reason,
    S,
    Status,
    U,
    Use,
)


def js_module() -> str:
    """The module's text: the names the package, the web page and the example app use."""

    def obj(cls: type) -> dict[str, str]:
        return {k: v for k, v in vars(cls).items() if k.isupper() and isinstance(v, str)}

    def enum(cls: type) -> dict[str, str]:
        return {s.name: s.value for s in cls}

    from promptq.contract.requests.request import StartRequest

    names = {
        "EXECUTIONS": EXECUTIONS,
        "CHUNKS": CHUNKS,
        "PAGES": PAGES,
        "USERS": USERS,
        "PROMPTS": PROMPTS,
        "TEMPLATE_CONTENT": TEMPLATE_CONTENT,
        # users/{uid}: how many templates the user has, and the one the last create/delete named
        "TEMPLATE_COUNT": TEMPLATE_COUNT,
        "TEMPLATE_LAST": TEMPLATE_LAST,
        "ACCOUNTS": ACCOUNTS,
        "USAGE": USAGE,
        "DAYS": DAYS,
        "BATCHES": BATCHES,
        # workers/{worker}/stops/{executionId}: a Stop told to the worker process running it
        "WORKERS": WORKERS,
        "STOPS": STOPS,
        "FINISH_CANCELLED": FINISH_CANCELLED,
        "Status": enum(Status),
        "LIVE": sorted(s.value for s in LIVE),
        "BatchStatus": enum(BatchStatus),
        "BATCH_TERMINAL": sorted(s.value for s in BATCH_TERMINAL),
        "F": obj(F),
        "C": obj(C),
        "S": obj(S),
        "U": obj(U),
        "E": obj(E),
        "P": obj(P),
        "Acc": obj(Acc),
        "Use": obj(Use),
        "B": obj(B),
        "Count": obj(Count),
        "CostSource": enum(CostSource),
        "OutputFormat": enum(OutputFormat),
        # `error.code` of an execution
        "Code": obj(Code),
        "Callable": enum(Callable),
        # a callable's refusal: `functions/<CallStatus>`, with `details.reason`
        "CallStatus": enum(CallStatus),
        "Reason": enum(Reason),
        # start_execution's request fields (promptq/contract/requests/request.py, StartRequest)
        "Start": {re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper(): name for name in StartRequest.model_fields},
    }
    lines = ["// Generated from promptq/contract by `make web-schema` (devstack/schema_js.py): do not edit.", ""]
    for name, value in names.items():
        literal = json.dumps(value, indent=2)
        lines.append(f"export const {name} = {literal};" if isinstance(value, str) else f"export const {name} = Object.freeze({literal});")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(js_module())
