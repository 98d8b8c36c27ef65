"""A group named by id, nickname, address or display name: groupsync.groupref."""

from __future__ import annotations

import pytest

from groupsync.archive import Archive
from groupsync.errors import AmbiguousGroupError, GroupRefError
from groupsync.groupref import MAX_CANDIDATES, fold_name, resolve_group

from .conftest import HOSTILE_NAME, NAMED


@pytest.mark.parametrize(
    "text,key",
    [
        ("Engineering", "engineering"),  # live exact: not the deleted twin, not "Engineering Ops"
        ("ENGINEERING", "engineering"),
        ("  engineering  ", "engineering"),
        ("ｅｎｇｉｎｅｅｒｉｎｇ", "engineering"),  # fullwidth forms fold (NFKD)
        ("eng-ops", "engineering_ops"),  # nickname
        ("ENG-OPS@contoso.com", "engineering_ops"),  # address
        ("engineering o", "engineering_ops"),  # the one group this prefix fits
        ("equipe paris", "paris"),  # accents do not count
        ("ÉQUIPE", "paris"),  # a prefix of its name and its nickname: still one group
        ("équipe-paris@", "paris"),
        (NAMED["paris"], "paris"),  # its id, though another group's name spells it
        (NAMED["paris"].upper(), "paris"),
        ("spelled", "id_spelled"),
        ("evil", "hostile"),  # an exact nickname beats a prefix of "Evil twin"
        ("mark", "marketing"),  # a live group's prefix beats a deleted one's
        ("marketing a", "marketing_old"),  # only a deleted group fits: that one
        ("engineering-2019", "engineering_old"),
    ],
)
def test_names_resolve_to_one_group(named_groups, text, key):
    assert resolve_group(named_groups, text) == NAMED[key]


@pytest.mark.parametrize(
    "text,keys",
    [
        ("design", {"design", "design_upper"}),  # two exact display names
        ("ev", {"hostile", "evil_twin"}),  # a prefix of two
        ("e", {"engineering", "engineering_ops", "paris", "hostile", "evil_twin"}),
    ],
)
def test_an_ambiguous_name_lists_its_candidates(named_groups, text, keys):
    with pytest.raises(AmbiguousGroupError) as info:
        resolve_group(named_groups, text)
    error = info.value
    assert error.exit_code == 2
    assert set(error.candidates) == {NAMED[k] for k in keys}
    head, *lines = str(error).split("\n")
    assert head.startswith(f"'{text}' fits {len(keys)} archived groups")
    assert len(lines) == len(keys)
    for line, group_id in zip(lines, error.candidates, strict=True):
        assert line.startswith(f"  '{group_id}'")
    assert all(c == "\n" or c.isprintable() for c in str(error))


def test_candidates_are_escaped_never_raw(named_groups):
    with pytest.raises(AmbiguousGroupError) as info:
        resolve_group(named_groups, "ev")
    text = str(info.value)
    assert HOSTILE_NAME not in text and "\x1b" not in text and "\u202e" not in text
    assert "'\\x1b[2J\\u202eEvil <b>\\x07'  'evil@contoso.com'" in text


@pytest.mark.parametrize("text", ["zzz", "", "   ", "\u0301", "engineering ops team"])
def test_nothing_matches(named_groups, text):
    with pytest.raises(GroupRefError) as info:
        resolve_group(named_groups, text)
    assert not isinstance(info.value, AmbiguousGroupError)
    assert info.value.exit_code == 2
    assert str(info.value).startswith("no archived group matches '")


def test_a_hostile_name_in_the_error_is_escaped(named_groups):
    with pytest.raises(GroupRefError, match=r"^no archived group matches '\\x1b\[31mred\\u202e'$"):
        resolve_group(named_groups, "\x1b[31mred\u202e")


def test_a_guid_not_archived_is_taken_as_an_id(named_groups):
    guid = "00000000-0000-4000-8000-00000000ABCD"
    assert resolve_group(named_groups, guid) == guid.lower()
    assert resolve_group(None, f" {guid} ") == guid.lower()


def test_without_an_archive_a_name_is_a_clear_error():
    with pytest.raises(GroupRefError, match="no archived group matches 'engineering'.*no archive"):
        resolve_group(None, "engineering")


def test_a_long_list_of_candidates_is_cut():
    with Archive.open_for_writing(":memory:") as archive:
        for n in range(MAX_CANDIDATES + 5):
            group_id = f"7a000000-0000-4000-8000-{n:012d}"
            archive.save_group({"id": group_id, "displayName": f"Team {n}"}, "2025-01-01")
        with pytest.raises(AmbiguousGroupError) as info:
            resolve_group(archive, "team")
    lines = str(info.value).split("\n")
    assert len(info.value.candidates) == MAX_CANDIDATES + 5
    assert len(lines) == 1 + MAX_CANDIDATES + 1 and lines[-1] == "  … and 5 more"


@pytest.mark.parametrize(
    "text,folded",
    [("Équipe  Paris", "equipe paris"), ("STRASSE", "strasse"), ("Straße", "strasse"),
     ("ﬁle", "file"), ("İstanbul", "istanbul"), ("ΐ", "ι")],
)  # fmt: skip
def test_fold_name(text, folded):
    assert fold_name(text) == folded
