"""Ids from outside checked before a request or a write, and text made safe to print."""

from __future__ import annotations

import pytest

from groupsync.errors import InvalidIdError
from groupsync.ids import MAX_ID_LENGTH, check_id, is_guid, printable

from .conftest import BAD_IDS


@pytest.mark.parametrize(
    "value",
    [
        "b8f3e8ed-9bff-4e7e-acca-272a78b653ec",
        "AAQkADQwYTQ2NjljLWQzZDEtNGQ2YS05MGZmLWMwNDE0Njg1MGYzMwMkABAA692plPlFHpe60z_Ry9ZGXxAA464Rh4OFN97ODyy1IcAIhQ==",
        "a+b=c-d_e",
        "c-nope",
        "A" * MAX_ID_LENGTH,
        "100%",  # a percent sign alone encodes nothing
    ],
)
def test_graph_ids_pass_unchanged(value):
    assert check_id(value) is value


@pytest.mark.parametrize("value", BAD_IDS.values(), ids=BAD_IDS.keys())
def test_bad_ids_are_one_printable_line(value):
    with pytest.raises(InvalidIdError) as info:
        check_id(value, "thread id")
    message = str(info.value)
    assert info.value.exit_code == 2
    assert message.startswith("thread id '") and "is not a valid id: " in message
    assert message.isprintable() and len(message) < 200


def test_an_id_that_is_not_text_is_refused():
    with pytest.raises(InvalidIdError, match="must be text"):
        check_id(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text,guid",
    [("b8f3e8ed-9bff-4e7e-acca-272a78b653ec", True), ("B8F3E8ED-9BFF-4E7E-ACCA-272A78B653EC", True),
     ("b8f3e8ed9bff4e7eacca272a78b653ec", False), ("b8f3e8ed-9bff-4e7e-acca-272a78b653ec\n", False),
     ("b8f3e8ed-9bff-4e7e-acca-٢٧٢a78b653ec", False), ("engineering", False)],
)  # fmt: skip
def test_is_guid(text, guid):
    assert is_guid(text) is guid


@pytest.mark.parametrize(
    "text,shown",
    [("Équipe Paris", "'Équipe Paris'"), ("a\x1b[2Jb", "'a\\x1b[2Jb'"),
     ("\u202eevil", "'\\u202eevil'"), ("a\\x1b", "'a\\\\x1b'"),
     ("\U000e0041", "'\\U000e0041'"), ("x" * 100, "'" + "x" * 80 + "…'")],
)  # fmt: skip
def test_printable(text, shown):
    assert printable(text) == shown
