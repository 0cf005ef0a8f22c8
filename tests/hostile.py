"""Hypothesis strategies for hostile start_execution requests: JSON values of every kind for
every field (wrong types, huge and tiny numbers, unicode edge cases, nesting), mixed with
plausible ones so that the validator's deeper checks are reached too."""

from __future__ import annotations

from hypothesis import strategies as st

EDGE_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\u200b",
        "\u200b\u200d\ufeff",
        "\ud800",
        "a\udfffb",
        "\x00",
        "\u202e",
        "👍🏽",
        "e\u0301",
        "__x__",
        "__name__",
        "{a}",
        "{{",
        "}}",
        "{" * 50,
        "x" * 5000,
        "😀" * 3000,
        "sk-or-v1-" + "a" * 40,
        "NaN",
        "null",
        "a/b",
        "openai/gpt-4o-mini",
    ]
)
NUMBERS = st.one_of(
    st.integers(),
    st.integers(min_value=2**62, max_value=2**80),
    st.integers(min_value=-(2**80), max_value=-(2**62)),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 1e308, 5e-324]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=40), EDGE_TEXT)
JSON = st.recursive(
    SCALARS, lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)), max_leaves=12
)

# Issue 17's vocabulary: content parts with every kind of URL, tool calls, response formats and
# JSON Schemas (random keywords and values), reasoning, provider, tools.
URLS = st.one_of(
    st.sampled_from(
        [
            "https://example.com/a.png",
            "http://example.com/a.png",
            "gs://b/users/u/a.png",
            "https://",
            "data:image/png;base64,AAAA",
            "data:application/pdf;base64,AAAA",
            "data:image/png;base64,%%%",
            "data:,",
            "javascript:alert(1)",
            "ftp://x",
            "data:image/svg+xml;base64,AAAA",
        ]
    ),
    EDGE_TEXT,
    JSON,
)
PART = st.one_of(
    JSON,
    st.fixed_dictionaries({"type": st.just("text"), "text": st.one_of(st.text(max_size=20), EDGE_TEXT, JSON)}),
    st.fixed_dictionaries({"type": st.just("image_url"), "image_url": st.one_of(JSON, st.fixed_dictionaries({"url": URLS}))}),
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["file", "input_audio", ""]),
            "file": st.one_of(JSON, st.fixed_dictionaries({"file_data": URLS}, optional={"filename": st.one_of(st.text(max_size=10), JSON)})),
        }
    ),
)
FUNCTION = st.fixed_dictionaries({"name": st.sampled_from(["f", "bad name"]), "arguments": st.one_of(st.text(max_size=10), JSON)})
CALL = st.one_of(
    JSON,
    st.fixed_dictionaries(
        {"id": st.one_of(st.sampled_from(["call_1", "c 2", ""]), JSON), "type": st.just("function"), "function": st.one_of(JSON, FUNCTION)}
    ),
)
SCHEMA = st.dictionaries(
    st.sampled_from(["type", "properties", "$ref", "enum", "items", "pattern", "minLength", "$schema", "required"]),
    st.one_of(JSON, st.sampled_from(["object", "string", "#/x", "#", "https://x", "("])),
    max_size=3,
)
VOCABULARY = st.one_of(
    st.builds(
        lambda schema, name: {"type": "json_schema", "json_schema": {"name": name, "schema": schema}},
        st.one_of(SCHEMA, JSON),
        st.sampled_from(["a", "bad name"]),
    ),
    st.sampled_from(
        [
            {"type": "json_object"},
            {"type": "xml"},
            {"effort": "low"},
            {"effort": "low", "max_tokens": 5},
            {"order": ["openai"]},
            {"max_price": {"prompt": -1}},
            "auto",
            "none",
            {"type": "function", "function": {"name": "f"}},
            True,
        ]
    ),
    st.lists(
        st.one_of(
            JSON,
            st.builds(
                lambda name, parameters: {"type": "function", "function": {"name": name, "parameters": parameters}},
                st.sampled_from(["f", "f", "bad name"]),
                st.one_of(SCHEMA, JSON),
            ),
        ),
        max_size=3,
    ),
)
MESSAGE = st.fixed_dictionaries(
    {
        "role": st.one_of(st.sampled_from(["system", "user", "assistant", "tool"]), JSON),
        "content": st.one_of(st.text(max_size=60), EDGE_TEXT, JSON, st.lists(PART, max_size=3)),
    },
    optional={"tool_calls": st.one_of(JSON, st.lists(CALL, max_size=2)), "tool_call_id": st.one_of(st.sampled_from(["call_1", "call_2"]), JSON)},
)
PARAMS = st.dictionaries(
    st.sampled_from(
        [
            "temperature",
            "top_p",
            "max_tokens",
            "stop",
            "seed",
            "frequency_penalty",
            "response_format",
            "reasoning",
            "provider",
            "tools",
            "tool_choice",
            "parallel_tool_calls",
        ]
    ),
    st.one_of(NUMBERS, JSON, st.lists(st.one_of(st.text(max_size=10), EDGE_TEXT), max_size=6), EDGE_TEXT, VOCABULARY),
    max_size=4,
)
VARIABLES = st.dictionaries(
    st.one_of(st.sampled_from(["name", "city", "a"]), st.text(max_size=10), EDGE_TEXT),
    st.one_of(st.text(max_size=30), NUMBERS, EDGE_TEXT, JSON),
    max_size=4,
)

FIELDS = {
    "prompt": st.one_of(st.text(min_size=1, max_size=80), EDGE_TEXT, JSON),
    "messages": st.one_of(st.lists(MESSAGE, max_size=4), JSON),
    "promptId": st.one_of(st.sampled_from(["t", "missing", "__x__", "a.b", "x" * 129]), st.text(max_size=10), JSON),
    "variables": st.one_of(VARIABLES, JSON),
    "model": st.one_of(st.sampled_from(["fake/tokens=1,rate=0", "openai/gpt-4o-mini", "bad id", ""]), EDGE_TEXT, JSON),
    "models": st.one_of(st.lists(st.sampled_from(["fake/tokens=1,rate=0", "a/b", "bad id"]), max_size=7), JSON),
    "params": st.one_of(PARAMS, JSON),
    "idempotencyKey": st.one_of(st.text(max_size=20), EDGE_TEXT, JSON),
    "unknownField": JSON,
}


@st.composite
def requests(draw):
    """A request object with a random subset of the fields (sometimes not an object at all)."""
    if draw(st.integers(0, 30)) == 0:
        return draw(JSON)
    names = draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=5, unique=True))
    return {name: draw(FIELDS[name]) for name in names}


@st.composite
def plausible_requests(draw):
    """Well-formed requests whose values are the hostile part: unicode edges, numbers at the
    limits of their ranges, templates and their variables."""
    kind = draw(st.sampled_from(["prompt", "messages", "promptId"]))
    data: dict = {}
    if kind == "prompt":
        data["prompt"] = draw(st.one_of(st.text(min_size=1, max_size=200), EDGE_TEXT))
    elif kind == "messages":
        data["messages"] = draw(
            st.lists(
                st.fixed_dictionaries(
                    {"role": st.sampled_from(["system", "user", "assistant"]), "content": st.one_of(st.text(max_size=80), EDGE_TEXT)}
                ),
                min_size=1,
                max_size=3,
            )
        )
    else:
        data["promptId"] = "t"
        data["variables"] = {"name": draw(st.one_of(st.text(max_size=50), NUMBERS, EDGE_TEXT))}
    if draw(st.booleans()):
        data["model"] = "fake/tokens=1,rate=0"
    if draw(st.booleans()):
        data["params"] = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "temperature": st.floats(min_value=0, max_value=2),
                    "top_p": st.floats(min_value=0.01, max_value=1),
                    "max_tokens": st.integers(1, 40_000),
                    "seed": st.one_of(st.integers(-(2**63), 2**63 - 1), NUMBERS),
                    "stop": st.one_of(st.text(min_size=1, max_size=10), st.lists(st.text(min_size=1, max_size=5), max_size=5)),
                },
            )
        )
    return data


def any_requests():
    return st.one_of(requests(), plausible_requests())
