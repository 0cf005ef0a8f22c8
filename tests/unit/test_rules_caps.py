"""infra/firestore.rules caps what a client may store of its own (templates: their size and
number) with the numbers promptq/contract names; the rules are tested both ways on the emulator
(tests/emulator/test_rules.py)."""

from __future__ import annotations

import re
from pathlib import Path

from promptq.contract import MAX_TEMPLATE_CHARS, MAX_TEMPLATES, TEMPLATE_CONTENT, TEMPLATE_COUNT, TEMPLATE_LAST

RULES = (Path(__file__).resolve().parents[2] / "infra/firestore.rules").read_text()


def test_the_rules_hold_the_schemas_template_caps():
    assert re.findall(r"content\.size\(\) <= (\d+)", RULES) == [str(MAX_TEMPLATE_CHARS)]
    assert re.findall(r"templatesAfter\(uid\)\.prompts <= (\d+)", RULES) == [str(MAX_TEMPLATES)]
    assert f"hasOnly(['{TEMPLATE_CONTENT}'])" in RULES and f"hasOnly(['{TEMPLATE_COUNT}', '{TEMPLATE_LAST}'])" in RULES
    assert f".{TEMPLATE_LAST} == promptId" in RULES
