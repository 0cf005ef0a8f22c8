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
    AccountField,
    BatchField,
    BatchStatus,
    ChunkField,
    Callable,
    CallStatus,
    Code,
    CostSource,
    Count,
    ErrorField,
    ExecutionField,
    OutputFormat,
    PageField,
    Reason,
    StopField,
    Status,
    UsageField,
    DayField,
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
        "ExecutionField": obj(ExecutionField),
        "ChunkField": obj(ChunkField),
        "StopField": obj(StopField),
        "UsageField": obj(UsageField),
        "ErrorField": obj(ErrorField),
        "PageField": obj(PageField),
        "AccountField": obj(AccountField),
        "DayField": obj(DayField),
        "BatchField": obj(BatchField),
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
    lines.append("// The names of @promptq/web 0.2 (one letter each), kept for apps written against them: deprecated.")
    lines += [f"export const {old} = {new};" for old, new in DEPRECATED.items()]
    return "\n".join(lines) + "\n"


# Before 0.3 the field names' classes were one letter (F, C, ...): apps may import them still.
DEPRECATED = {
    "F": "ExecutionField",
    "C": "ChunkField",
    "S": "StopField",
    "U": "UsageField",
    "E": "ErrorField",
    "P": "PageField",
    "Acc": "AccountField",
    "Use": "DayField",
    "B": "BatchField",
}


if __name__ == "__main__":
    import sys

    sys.stdout.write(js_module())
