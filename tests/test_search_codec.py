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


@given(_POSTINGS, st.sampled_from([1, 7, 300]), st.sampled_from([1.0, 2.0]))
def test_a_block_decodes_to_the_same_keys_in_numpy(positions, gap, boost):
    """What a phrase reads (a block's keys as one numpy array) is what the list decoder
    reads, for both position encodings."""
    ids, weights, values = _block(positions, gap, boost)
    data = codec._pack_block(ids, weights, values, codec.CompactPositions())
    assert codec.block_keys_array(data).tolist() == codec._unpack_raw(data, True)[2]


_COMMON = ["the", "of", "and", "to"]
_WORDS = st.sampled_from([*_COMMON, "team", "latency", "budget", "of"])


def _phrase_scores(texts: list[str], words: list[str], common: list[str]) -> dict[int, float]:
    import tempfile

    from whoosh import index as windex
    from whoosh import query as wquery

    from groupsync.search import indexer
    from groupsync.search.schema import schema_with

    with tempfile.TemporaryDirectory() as folder:
        ix = windex.create_in(folder, schema_with(common))
        writer = indexer._segment_writer(ix)
        for text in texts:
            writer.add_document(body=text, body_pairs=text, flags=0, seq=0, received=0)
        writer.commit()
        try:
            with ix.searcher() as searcher:
                query = wquery.Phrase("body", words)
                return {
                    offset + d: score
                    for offset, found, *_rest in search.evaluator._evaluate(searcher, query, None)
                    for d, score in found.items()
                }
        finally:
            ix.close()
            # Hypothesis seeds ``random``, so Whoosh's random segment names come again in
            # later examples: forget what was cached under them
            search.filters._SEGMENTS.clear()
            search.evaluator._TERM_CACHE.clear()


@given(st.lists(st.lists(_WORDS, max_size=30), min_size=1, max_size=12), st.data())
def test_pairs_of_common_words_find_what_positions_find(texts, data):
    """A phrase read from pairs of common words (PairText) finds the same posts with the
    same scores as one read from each word's positions: the pairs are only a shortcut.
    Phrases are cut from the texts (so that they are found) or drawn at random."""
    source = data.draw(st.sampled_from(texts))
    start = data.draw(st.integers(0, max(0, len(source) - 2)))
    cut = source[start : start + data.draw(st.integers(2, 5))]
    words = cut if len(cut) >= 2 else data.draw(st.lists(_WORDS, min_size=2, max_size=4))
    joined = [" ".join(t) for t in texts]
    ours = _phrase_scores(joined, words, _COMMON)
    assert ours == _phrase_scores(joined, words, [])
    assert ours or len(cut) < 2


@given(
    st.lists(st.integers(0, 3), min_size=1, max_size=codec.INLINE_LIMIT).map(
        lambda steps: [sum(steps[: i + 1]) + i for i in range(len(steps))]
    ),
    st.sampled_from(["one", "whole", "float"]),
    st.booleans(),
    st.booleans(),
)
def test_a_term_info_round_trips(ids, weighting, with_values, inlined):
    """A dictionary entry reads back as written: statistics, and the postings of a term
    kept inline (weights of one, whole or fractional; with and without values)."""
    weights = [1.0 if weighting == "one" else n + 2.0 if weighting == "whole" else n + 0.5
               for n in range(len(ids))]  # fmt: skip
    values = [codec._le(array("H", range(n + 1))).tobytes() for n in range(len(ids))]
    info = codec.CompactTermInfo()
    info._weight, info._df = sum(weights), len(ids)
    info._minlength, info._maxlength, info._maxweight = 3, 900, max(weights)
    info._minid, info._maxid = ids[0], ids[-1]
    if inlined:
        info.set_inlined(ids, weights, values if with_values else [])
    else:
        info.set_extent(123_456_789, 4_321)
    back = codec.CompactTermInfo.from_bytes(info.to_bytes())
    assert (back.weight(), back.doc_frequency(), back.max_weight()) == (
        info.weight(), info.doc_frequency(), info.max_weight())  # fmt: skip
    assert (back.min_id(), back.max_id()) == (ids[0], ids[-1])
    assert back.max_length() == 903 and back.min_length() == 3  # as length bytes
    if inlined:
        got_ids, got_weights, got_values = back.inlined_postings()
        assert list(got_ids) == ids and list(got_weights) == weights
        assert (list(got_values) if got_values else []) == (values if with_values else [])
    else:
        assert not back.is_inlined() and back.extent() == (123_456_789, 4_321)
