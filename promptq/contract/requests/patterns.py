"""A schema's patterns (``pattern``, ``patternProperties``, ``format: regex``) on RE2, whose
matching is linear in the text whatever the pattern: ``"^(a+)+$"`` against 45 characters, which
Python's ``re`` backtracks through for days (0.6 s at 24, doubling with each), is a microsecond here. RE2 has no backreferences and no
lookaround: a pattern that needs them is refused where the request is checked. Pure; no I/O.

jsonschema's keywords that match patterns (``pattern``, ``patternProperties``, and the
``additionalProperties`` and ``unevaluatedProperties`` that skip what they match) are replaced,
in each dialect's validator, by these, which do what jsonschema's do with RE2 instead of ``re``.
"""

from __future__ import annotations

import functools
from typing import Any, Iterator

import re2
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator
from referencing.jsonschema import lookup_recursive_ref

MAX_MEM = 8 << 20  # bytes per pattern, its program and its matching caches (RE2's default)
# RE2 instructions all a schema's patterns compile to together: ~0.3 µs each to compile and ~11
# bytes to keep, so a schema's patterns cost the callable at most ~0.1 s and ~3 MB. A pattern of
# names such as ``^[\p{L} .-]{1,80}$`` is 96,000 (every Unicode letter, 80 times); most are < 100.
PROGRAM_BUDGET = 250_000
CACHED = 8  # compiled patterns a process keeps for matching (each up to MAX_MEM)

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is the caller's answer, not a line on stderr
_OPTIONS.max_mem = MAX_MEM


class PatternError(ValueError):
    """A pattern RE2 cannot run (``str``: why, in RE2's words)."""


class TooLarge(PatternError):
    """A schema's patterns, together, beyond ``PROGRAM_BUDGET``."""


def refusal(pattern: object, err: PatternError) -> str:
    """What a refusal of the pattern says, after where it is."""
    if isinstance(err, TooLarge):
        return str(err)
    hint = "simplify it" if "too large" in str(err) else "patterns run on RE2: no backreferences, no lookaround"
    return f"{str(pattern)[:80]!r} is not a pattern RE2 runs ({err}); {hint}"


def _compile(pattern: str) -> Any:
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as err:
        reason = err.args[0].decode("utf-8", "replace") if err.args and isinstance(err.args[0], bytes) else str(err)
        raise PatternError(reason) from None
    except UnicodeEncodeError:
        raise PatternError("not valid Unicode text (it holds a lone surrogate)") from None
    finally:
        re2.purge()  # re2.compile's own cache keeps 128 (up to 1 GiB by its docs); ``compiled`` keeps CACHED


@functools.lru_cache(maxsize=CACHED)
def compiled(pattern: str) -> Any:
    """The pattern compiled by RE2 (UTF-8), or ``PatternError``."""
    return _compile(pattern)


def search(pattern: str, text: str) -> bool:
    """Whether the pattern matches somewhere in the text (as ``re.search``, ECMA-262's reading)."""
    return compiled(pattern).search(text.encode("utf-8", "surrogatepass")) is not None


class Budget:
    """A schema's patterns, each compiled once (and not kept), against ``PROGRAM_BUDGET``."""

    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}
        self.total = 0

    def check(self, pattern: object) -> bool:
        """True, or ``PatternError``: RE2 cannot run it, or the schema's patterns are too large together."""
        if not isinstance(pattern, str) or pattern in self.sizes:
            return True
        self.sizes[pattern] = _compile(pattern).programsize
        self.total += self.sizes[pattern]
        if self.total > PROGRAM_BUDGET:
            raise TooLarge(f"the schema's patterns compile to more than {PROGRAM_BUDGET} RE2 instructions together; simplify them")
        return True


# --- jsonschema's keywords, on RE2 -----------------------------------------------------------


def pattern(validator: Validator, patrn: str, instance: Any, schema: dict) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not search(patrn, instance):
        yield ValidationError(f"{instance!r} does not match {patrn!r}")


def pattern_properties(validator: Validator, patterns: dict, instance: Any, schema: dict) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for patrn, subschema in patterns.items():
        for key, value in instance.items():
            if search(patrn, key):
                yield from validator.descend(value, subschema, path=key, schema_path=patrn)


def _extras_msg(extras: list) -> tuple[str, str]:
    return ", ".join(repr(extra) for extra in extras), "was" if len(extras) == 1 else "were"


def additional_properties(validator: Validator, additional: Any, instance: Any, schema: dict) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    properties, patterns = schema.get("properties", {}), list(schema.get("patternProperties", {}))
    extras = {key for key in instance if key not in properties and not any(search(p, key) for p in patterns)}
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        if "patternProperties" in schema:
            verb = "does" if len(extras) == 1 else "do"
            joined = ", ".join(repr(each) for each in sorted(extras))
            yield ValidationError(f"{joined} {verb} not match any of the regexes: {', '.join(repr(p) for p in sorted(patterns))}")
        else:
            yield ValidationError("Additional properties are not allowed (%s %s unexpected)" % _extras_msg(sorted(extras, key=str)))


def _valid(validator: Validator, instance: Any, subschema: Any) -> bool:
    return next(validator.descend(instance, subschema), None) is None


def _own_keys(validator: Validator, instance: dict, schema: dict, legacy: bool) -> list:
    """The keys ``properties``, ``additionalProperties`` and ``unevaluatedProperties`` evaluate
    (Draft 2019-09 and 2020-12 read them differently, as jsonschema does)."""
    keys: list = []
    if not legacy:
        if validator.is_type(schema.get("properties"), "object"):
            keys += schema["properties"].keys() & instance.keys()
        for keyword in ("additionalProperties", "unevaluatedProperties"):
            if (subschema := schema.get(keyword)) is not None:
                keys += [key for key, value in instance.items() if _valid(validator, value, subschema)]
        return keys
    for keyword in ("properties", "additionalProperties", "unevaluatedProperties"):
        value = schema.get(keyword)
        if validator.is_type(value, "boolean") and value:
            keys += instance.keys()
        elif isinstance(value, dict):
            keys += [key for key in value if key in instance]
    return keys


def _evaluated_keys(validator: Validator, instance: dict, schema: Any, legacy: bool) -> list:
    """jsonschema's ``find_evaluated_property_keys_by_schema`` (both of them), on RE2."""
    if validator.is_type(schema, "boolean"):
        return []
    keys: list = []
    resolver = validator._resolver  # type: ignore[attr-defined]  # as jsonschema's own keyword does
    refs = [resolver.lookup(schema[k]) for k in ("$ref",) + (() if legacy else ("$dynamicRef",)) if schema.get(k) is not None]
    refs += [lookup_recursive_ref(resolver)] if legacy and "$recursiveRef" in schema else []
    for resolved in refs:
        keys += _evaluated_keys(validator.evolve(schema=resolved.contents, _resolver=resolved.resolver), instance, resolved.contents, legacy)
    keys += _own_keys(validator, instance, schema, legacy)
    for patrn in schema.get("patternProperties", {}):
        keys += [key for key in instance if search(patrn, key)]
    for key, subschema in schema.get("dependentSchemas", {}).items():
        keys += _evaluated_keys(validator, instance, subschema, legacy) if key in instance else []
    for keyword in ("allOf", "oneOf", "anyOf"):
        for subschema in schema.get(keyword, []):
            keys += _evaluated_keys(validator, instance, subschema, legacy) if _valid(validator, instance, subschema) else []
    if "if" in schema:
        if validator.evolve(schema=schema["if"]).is_valid(instance):
            keys += _evaluated_keys(validator, instance, schema["if"], legacy)
            keys += _evaluated_keys(validator, instance, schema["then"], legacy) if "then" in schema else []
        elif "else" in schema:
            keys += _evaluated_keys(validator, instance, schema["else"], legacy)
    return keys


def unevaluated_properties(legacy: bool):
    """``unevaluatedProperties`` of Draft 2019-09 (``legacy``) or 2020-12."""

    def keyword(validator: Validator, unevaluated: Any, instance: Any, schema: dict) -> Iterator[ValidationError]:
        if not validator.is_type(instance, "object"):
            return
        evaluated = _evaluated_keys(validator, instance, schema, legacy)
        rest = [key for key in instance if key not in evaluated for _ in validator.descend(instance[key], unevaluated, path=key, schema_path=key)]
        if rest and unevaluated is False:
            yield ValidationError("Unevaluated properties are not allowed (%s %s unexpected)" % _extras_msg(sorted(rest, key=str)))
        elif rest:
            yield ValidationError("Unevaluated properties are not valid under the given schema (%s %s unevaluated and invalid)" % _extras_msg(rest))

    return keyword
