"""The compact posting blocks round-trip: what the index writes is what a search reads, for
both position encodings (gaps per posting, and block-wide keys when weights are boosted)."""

from __future__ import annotations

from array import array

import pytest
from hypothesis import given
from hypothesis import strategies as st

from groupsync import search
from groupsync.archive import Archive
from groupsync.search import codec

_POSTINGS = st.lists(
    st.lists(st.integers(0, codec.MAX_POSITIONS - 1), min_size=1, max_size=40, unique=True).map(
        sorted
    ),
    min_size=1,
    max_size=60,
)


def _block(positions: list[list[int]], gap: int, boost: float):
    ids = array("I", [n * gap + 3 for n in range(len(positions))])
    weights = array("f", [len(p) * boost for p in positions])
    values = [codec._le(array("H", p)).tobytes() for p in positions]
    return ids, weights, values


@given(_POSTINGS, st.sampled_from([1, 7, 300]), st.sampled_from([1.0, 2.0]))
def test_a_positional_block_round_trips(positions, gap, boost):
    ids, weights, values = _block(positions, gap, boost)
    data = codec._pack_block(ids, weights, values, codec.CompactPositions())
    got_ids, got_weights, keys = codec._unpack_raw(data, with_values=True)
    assert list(got_ids) == list(ids)
    expected = [doc << codec._SHIFT | p for doc, ps in zip(ids, positions, strict=True) for p in ps]
    assert list(keys) == expected
    block_ids, block_weights, block_values = codec._unpack_block(data, None)
    assert list(block_ids) == list(ids) and list(block_values) == values
    assert list(block_weights) == list(weights)


def test_gaps_are_bytes_when_they_fit():
    small = _block([[0, 3, 9], [1, 250]], 1, 1.0)
    large = _block([[0, 3, 9], [1, 2500]], 1, 1.0)
    fmt = codec.CompactPositions()
    assert len(codec._pack_block(*small, fmt)) < len(codec._pack_block(*large, fmt))


@pytest.mark.parametrize(
    "phrase",
    ['"checkout latency"', '"the team"', '"of the"', '"in the"', '"the the"', '"to the team"',
     '"p95 latency is"', '"is the"', '"a b"', '"latency back to normal"'],
)  # fmt: skip
def test_phrases_match_whooshs_own_matchers(indexed_sample, phrase):
    """Phrases, common words and repeated ones too, find the posts Whoosh's matchers find
    (the evaluator intersects sorted keys block by block)."""
    from whoosh import index as windex

    db, index = indexed_sample
    with Archive(db, readonly=True) as archive:
        parsed = search.parse_query(phrase, search.query._Resolver(archive))
    ix = windex.open_dir(str(index))
    try:
        with ix.searcher() as searcher:
            ours: set[int] = set()
            for offset, found, *_rest in search.evaluator._evaluate(searcher, parsed.query, None):
                ours.update(offset + d for d in found)
            theirs = set(searcher.search(parsed.query, limit=None).docs())
    finally:
        ix.close()
    assert ours == theirs
