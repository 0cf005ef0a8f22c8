"""What applying a JSON Schema may cost, read from the schema alone: its subschemas counted as a
validator meets them (each ``$ref`` / ``$dynamicRef`` / ``$recursiveRef`` followed to what it
points at; a reference back into a subschema being expanded, a recursive schema's cycle, counted
once), the patterns it applies, and the keywords whose work grows faster than the answer.

Linear in the schema: every subschema is expanded once and its size kept, so a chain of
``allOf`` that doubles at each level costs one step per level here (2^40 for the validator).
Pure; no I/O. The callables refuse a schema that expands too far; the worker's answer check
(``promptq.domain.answer``) decides from it where to validate.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator
from urllib.parse import unquote

CAP = 10**12  # counts stop growing here (a doubling chain would reach 2^20000)

# Where a keyword holds subschemas: one, a list of them, or a map of them (every dialect's).
ONE: tuple[str, ...] = ("not", "if", "then", "else", "contains", "propertyNames", "items", "additionalItems")
ONE += ("additionalProperties", "unevaluatedItems", "unevaluatedProperties")
LISTS = ("allOf", "anyOf", "oneOf", "prefixItems", "items")
MAPS = ("properties", "patternProperties", "dependentSchemas", "dependencies")
DEFS = ("$defs", "definitions")  # subschemas that apply only where a reference points at them
REFS = ("$ref", "$dynamicRef", "$recursiveRef")


@dataclasses.dataclass(frozen=True)
class Shape:
    subschemas: int  # as expanded (at most CAP)
    weight: int  # the work per answer value: subschemas, plus the values their keywords hold (`enum`, `required`...)
    recursive: bool  # a reference leads back into itself (a tree): the work grows with the answer's depth
    patterns: tuple[tuple[tuple, str], ...]  # (where, pattern) of each pattern it applies
    unique_items: bool  # `uniqueItems`: pairs of items compared
    unevaluated: bool  # `unevaluated*`: subschemas applied again to find what was evaluated
    opaque: bool  # a reference this reading follows only roughly: outside the schema, dynamic, or into a nested `$id`


def _children(node: Any, maps: tuple = MAPS) -> Iterator[tuple[tuple, Any]]:
    """A schema's direct subschemas, each with the keys that lead to it."""
    if not isinstance(node, dict):
        return
    for key in ONE:
        if isinstance(node.get(key), (dict, bool)):
            yield (key,), node[key]
    for key in LISTS:
        if isinstance(node.get(key), list):
            yield from (((key, i), child) for i, child in enumerate(node[key]) if isinstance(child, (dict, bool)))
    for key in maps:
        if isinstance(node.get(key), dict):
            yield from (((key, name), child) for name, child in node[key].items() if isinstance(child, (dict, bool)))


_SUBSCHEMAS = frozenset(ONE + LISTS + MAPS + DEFS + REFS)


def _own(node: dict) -> int:
    """The JSON values a subschema's keywords hold besides its subschemas (``enum``, ``const``,
    ``required``...): what a validator may compare an answer's value with."""
    return sum(_values(value) for key, value in node.items() if key not in _SUBSCHEMAS)


def _values(value: Any) -> int:
    """How many JSON values a value holds (itself included)."""
    count, stack = 0, [value]
    while stack:
        count += 1
        node = stack.pop()
        stack.extend(node.values() if isinstance(node, dict) else node if isinstance(node, list) else ())
    return count


class _Union(list):
    """The subschemas a dynamic reference may lead to: measured once, whatever the references to it."""


class _Index:
    """Every subschema's place, the resource it belongs to (a ``$id`` starts one) and the anchors."""

    def __init__(self, root: Any):
        self.root = root
        self.place: dict[int, tuple[tuple, Any]] = {}  # id(subschema) -> (path, its resource)
        self.anchors: dict[tuple[int, str], Any] = {}  # (id(resource), name) -> subschema
        self.dynamic: dict[str, list] = {}  # $dynamicAnchor name -> subschemas
        self.recursive: list = []  # resources with $recursiveAnchor: true
        self.unions: dict[str, _Union] = {}
        self.nested = False  # a `$id` below the root starts a resource of its own
        id_keys = ("$id", "id") if "draft-04" in str(root.get("$schema", "") if isinstance(root, dict) else "") else ("$id",)
        stack: list[tuple[tuple, Any, Any]] = [((), root, root)]
        while stack:
            path, node, resource = stack.pop()
            if isinstance(node, dict):
                resource = self._enter(node, resource, id_keys)
            self.place[id(node)] = (path, resource)
            stack.extend((path + keys, child, resource) for keys, child in _children(node, MAPS + DEFS))

    def _enter(self, node: dict, resource: Any, id_keys: tuple) -> Any:
        for key in id_keys:
            if isinstance(node.get(key), str) and node[key].startswith("#"):
                self.anchors[(id(resource), node[key][1:])] = node
            elif isinstance(node.get(key), str):
                resource = node
                self.nested = self.nested or node is not self.root
        for key in ("$anchor", "$dynamicAnchor"):
            if isinstance(node.get(key), str):
                self.anchors[(id(resource), node[key])] = node
        if isinstance(node.get("$dynamicAnchor"), str):
            self.dynamic.setdefault(node["$dynamicAnchor"], []).append(node)
        if node.get("$recursiveAnchor") is True and resource is node:
            self.recursive.append(node)
        return resource

    def resource_of(self, node: Any, near: Any) -> Any:
        return self.place[id(node)][1] if id(node) in self.place else near

    def path_of(self, node: Any, fallback: tuple) -> tuple:
        return self.place[id(node)][0] if id(node) in self.place else fallback

    def targets(self, key: str, ref: Any, resource: Any) -> list[tuple[Any, tuple]] | None:
        """What a reference may lead to, and where that is (None: not a reference this reading follows)."""
        if key == "$recursiveRef":
            return [(resource, self.path_of(resource, ())), (self.unions.setdefault("#", _Union(self.recursive)), ())]
        if not isinstance(ref, str) or not ref.startswith("#"):
            return None
        fragment = unquote(ref[1:])
        if key == "$dynamicRef" and fragment in self.dynamic:
            return [(self.unions.setdefault("/" + fragment, _Union(self.dynamic[fragment])), ())]
        if not fragment.startswith("/"):
            found = resource if fragment == "" else self.anchors.get((id(resource), fragment))
            return None if found is None else [(found, self.path_of(found, ()))]
        node, path = resource, self.path_of(resource, ())
        for token in fragment[1:].split("/"):
            token = token.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and token in node:
                node, path = node[token], (*path, token)
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node, path = node[int(token)], (*path, int(token))
            else:
                return None
        return [(node, path)]


def shape(schema: Any) -> Shape:
    """What the schema may cost to apply (see the module's docstring)."""
    return _Walk(_Index(schema)).run()


class _Walk:
    """The expansion, depth first without recursion (a chain of references may be long)."""

    def __init__(self, index: _Index):
        self.index = index
        self.size: dict[int, tuple[int, int]] = {}  # id(subschema) -> (subschemas, weight), once expanded
        self.open: set[int] = set()  # the subschemas being expanded
        self.recursive = self.unique = self.unevaluated = False
        self.opaque = index.nested
        self.patterns: list[tuple[tuple, str]] = []

    def run(self) -> Shape:
        root = self.index.root
        stack = [self._frame(root, (), root)]
        while True:
            node, path, resource, pending, total = stack[-1]
            step = next(pending, None)
            if step is not None:
                child = self._measured(*step)
                if isinstance(child, list):
                    stack.append(child)
                else:
                    total[0], total[1] = min(total[0] + child[0], CAP), min(total[1] + child[1], CAP)
                continue
            stack.pop()
            self.open.discard(id(node))
            self.size[id(node)] = (total[0], total[1])
            if not stack:
                return Shape(total[0], total[1], self.recursive, tuple(self.patterns), self.unique, self.unevaluated, self.opaque)
            parent = stack[-1][4]
            parent[0], parent[1] = min(parent[0] + total[0], CAP), min(parent[1] + total[1], CAP)

    def _measured(self, node: Any, path: tuple, resource: Any) -> tuple[int, int] | list:
        """A subschema's size if known (a cycle's re-entry: 1), else the frame that expands it."""
        if not isinstance(node, (dict, _Union)):
            return (1, 1)
        if id(node) in self.open:
            self.recursive = True
            return (1, 1)
        if id(node) in self.size:
            return self.size[id(node)]
        return self._frame(node, path, resource)

    def _frame(self, node: Any, path: tuple, resource: Any) -> list:
        self.open.add(id(node))
        if isinstance(node, _Union):
            steps = ((target, self.index.path_of(target, path), self.index.resource_of(target, resource)) for target in node)
            return [node, path, resource, steps, [0, 0]]
        own = 1
        if isinstance(node, dict):
            own += _own(node)
            self._note(node, path)
        return [node, path, resource, self._steps(node, path, resource), [1, own]]

    def _note(self, node: dict, path: tuple) -> None:
        if isinstance(node.get("pattern"), str):
            self.patterns.append(((*path, "pattern"), node["pattern"]))
        if isinstance(node.get("patternProperties"), dict):
            self.patterns.extend(((*path, "patternProperties", key), key) for key in node["patternProperties"])
        self.unique = self.unique or node.get("uniqueItems") is True
        self.unevaluated = self.unevaluated or "unevaluatedProperties" in node or "unevaluatedItems" in node

    def _steps(self, node: Any, path: tuple, resource: Any) -> Iterator[tuple[Any, tuple, Any]]:
        """What a subschema leads to: its subschemas, then what its references point at."""
        index = self.index
        for keys, child in _children(node):
            yield child, path + keys, index.resource_of(child, resource)
        for key in REFS if isinstance(node, dict) else ():
            if key not in node:
                continue
            targets = index.targets(key, node[key], resource)
            self.opaque = self.opaque or targets is None or key != "$ref"
            for target, where in targets or ():
                yield target, where, index.resource_of(target, resource)
