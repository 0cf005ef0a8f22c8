"""The typed shapes of the documents name exactly the fields of their ``*Field`` classes: a
field added to one and not the other is caught here, not by a reader in production."""

from __future__ import annotations

import typing

import pytest

from promptq.contract import BatchField, ExecutionField, JobField
from promptq.contract.shapes import BatchDoc, ExecutionDoc, JobDoc


def _names(fields: type) -> set[str]:
    return {v for k, v in vars(fields).items() if k.isupper() and isinstance(v, str)}


@pytest.mark.parametrize(("shape", "fields"), [(ExecutionDoc, ExecutionField), (JobDoc, JobField), (BatchDoc, BatchField)])
def test_a_shape_names_every_field_of_its_document_and_no_other(shape: type, fields: type) -> None:
    keys = set(typing.get_type_hints(shape))
    names = _names(fields)
    assert keys - names == set(), f"{shape.__name__} has keys no {fields.__name__} names"
    assert names - keys == set(), f"{fields.__name__} names fields {shape.__name__} lacks"


def test_every_key_may_be_missing() -> None:
    """Documents written before a field existed lack it: no key is required."""
    for shape in (ExecutionDoc, JobDoc, BatchDoc):
        assert shape.__required_keys__ == frozenset(), shape.__name__
