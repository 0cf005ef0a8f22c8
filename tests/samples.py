"""Request pieces the tests share: JSON Schemas and tools as apps send them."""

from __future__ import annotations

# An order: items with prices (a $ref into $defs).
ORDER_SCHEMA = {
    "type": "object",
    "properties": {"items": {"type": "array", "items": {"$ref": "#/$defs/item"}}},
    "required": ["items"],
    "$defs": {"item": {"type": "object", "properties": {"price": {"type": "number"}}, "required": ["price"]}},
}
# An answer with its reasoning, strict (additionalProperties: false), one property by $ref.
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"reasoning": {"type": "string"}, "answer": {"type": "integer"}, "zeta": {"$ref": "#/$defs/z"}},
    "required": ["reasoning", "answer"],
    "additionalProperties": False,
    "$defs": {"z": {"type": "boolean"}},
}
WEATHER_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
