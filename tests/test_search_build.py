"""The lean indexing path (word ids in the pool, postings written a term at a time) writes
the bytes Whoosh's own path writes: every segment file, postings, term infos, lengths and
columns; and updates that merge segments keep every posting."""

from __future__ import annotations

import random
from array import array
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from whoosh import index as windex
from whoosh.filedb.filestore import RamStorage
from whoosh.writing import SegmentWriter

from groupsync.search import codec, indexer
from groupsync.search.filters import _load_bytes_column
from groupsync.search.schema import CODEC, SCHEMA, _key, schema_with

_WORDS = ["invoice", "Résumé", "resume", "naïve", "Kraków", "東京", "🚀", "OPS-1234", "#1024670",
          "the", "a", "of", "budget", "ß", "straße", "x" * 300, "İstanbul", "ǅemal"]  # fmt: skip


def _documents(count: int, seed: int = 7) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    docs: list[dict[str, Any]] = []
    for n in range(count):
        words = [rnd.choice(_WORDS) + (str(rnd.randrange(40)) if rnd.random() < 0.3 else "")
                 for _ in range(rnd.randrange(0, 60))]  # fmt: skip
        doc: dict[str, Any] = {
            "key": _key(f"post-{n}"),
            "seq": n + 1,
            "thread": rnd.getrandbits(64),
            "group": f"group-{n % 3}",
            "received": 1_700_000_000 + n,
            "flags": n % 4,
            "body": " ".join(words),
            "from": f"Sender {n % 5}\nsender{n % 5}@example.com",
        }
        if n % 2:
            doc["topic"] = f"Re: budget {n % 9} — naïve"
        if n % 7 == 0:
            doc["to"] = "Zoë Ångström\nzoe@example.com"
        if n % 11 == 0:
            doc["category"] = "Red category"
        if n % 13 == 0:
            doc["attachment"] = "" if n % 26 else "budget " * 300  # frequencies past a byte
        if n % 17 == 0:
            doc["filename"] = "report.pdf\n東京.txt"
        docs.append(doc)
    # a word far from the previous one (gaps past a byte), one past 65,000 words (cut),
    # a word only in the first and the last document (a docnum delta past a byte)
    docs[3]["body"] = "start " + "filler " * 1000 + "start end"
    docs[5]["body"] = " ".join(f"w{n % 700}" for n in range(codec.MAX_POSITIONS + 500))
    docs[0]["body"] += " rareword"
    docs[-1]["body"] += " rareword"
    for doc in docs:  # and their pairs of common words, as _document gives them
        doc["body_pairs"] = doc["body"]
        if "attachment" in doc:
            doc["attachment_pairs"] = doc["attachment"]
    return docs


# the common words of the documents' pair fields (PairText)
_COMMON = ["the", "a", "of", "budget", "filler", "w1", "w2", "resume"]


def _segment_files(path: Path, ix: Any) -> dict[str, bytes]:
    (segment,) = ix._segments()
    return {
        f.name.split(".", 1)[1]: f.read_bytes() for f in path.iterdir() if segment.segid in f.name
    }


def _build(path: Path, docs: list[dict[str, Any]], whooshs: bool) -> dict[str, bytes]:
    path.mkdir()
    ix = windex.create_in(str(path), schema_with(_COMMON))
    try:
        writer = indexer._segment_writer(ix)
        for doc in docs:
            if whooshs:
                SegmentWriter.add_document(writer, **doc)
            else:
                writer.add_document(**doc)
        writer.commit()
        return _segment_files(path, ix)
    finally:
        ix.close()


@pytest.mark.parametrize("slice_", [indexer.SLICE, 500])
def test_the_lean_path_writes_the_files_whooshs_path_writes(tmp_path, monkeypatch, slice_):
    """With each field sorted whole, and in slices of about 500 words."""
    monkeypatch.setattr(indexer, "SLICE", slice_)
    docs = _documents(1200)  # common words in more than one block of 512
    theirs = _build(tmp_path / "whoosh", docs, whooshs=True)
    ours = _build(tmp_path / "lean", docs, whooshs=False)
    assert {"pst", "trm", "_body_len.col", "key.col", "seq.col"} <= set(theirs)
    assert b"budget budget" in theirs["trm"]  # pairs were written
    assert sorted(ours) == sorted(theirs)
    for name, data in theirs.items():
        assert ours[name] == data, name


_TERM_POSTINGS = st.lists(
    st.lists(  # one term: its postings, each a docnum step and its positions
        st.tuples(
            st.sampled_from([1, 2, 255, 256, 300, 65_535, 65_536, 70_000]),
            st.lists(st.integers(0, codec.MAX_POSITIONS - 1), min_size=1, max_size=3,
                     unique=True).map(sorted),
        ),  # fmt: skip
        min_size=1,
        max_size=700,
    ),
    min_size=1,
    max_size=4,
)


def _write_field(write: Any) -> dict[str, bytes]:
    storage = RamStorage()
    segment = CODEC.new_segment(storage, "t")
    writer = CODEC.field_writer(storage, segment)
    write(writer)
    writer.close()
    return {name.rsplit(".", 1)[1]: storage.open_file(name).read() for name in storage.list()}


@settings(max_examples=25, deadline=None)
@given(_TERM_POSTINGS, st.integers(0, 255))
def test_term_at_a_time_blocks_are_whooshs_blocks(terms, repeat):
    """Block cuts, docnum steps past a byte and two, frequencies past a byte (``repeat``
    more positions in one posting), gaps past a byte: the same bytes either way."""
    import numpy as np

    field = SCHEMA["body"]
    items: list[tuple[str, bytes, int, float, bytes]] = []
    for t, postings in enumerate(terms):
        docnum = 0
        for n, (step, positions) in enumerate(postings):
            docnum += step
            if n == 0 and t == 0:
                positions = sorted({*positions, *range(1000, 1000 + repeat)})
            value = codec._le(array("H", positions)).tobytes()
            items.append(("body", f"term{t}".encode(), docnum, float(len(positions)), value))

    def whooshs(writer: Any) -> None:
        writer.add_postings(SCHEMA, None, iter(items))
        writer.finish_field()

    def ours(writer: Any) -> None:
        starts = [0]
        docs, freqs, gaps = [], [], []
        for n, (_f, term, docnum, _w, value) in enumerate(items):
            if n and term != items[n - 1][1]:
                starts.append(n)
            positions = list(codec._unpacked("H", value))
            docs.append(docnum)
            freqs.append(len(positions))
            gaps.extend(b - a for a, b in zip([0, *positions], positions, strict=False))
        starts.append(len(items))
        terms_ = [items[s][1] for s in starts[:-1]]
        half = len(terms_) // 2  # in two calls, as a field's slices are
        for part in (slice(0, half), slice(half, len(terms_))):
            if part.start == part.stop:
                continue
            pstart, pend = starts[part.start], starts[part.stop]
            sub = codec.TermPostings(
                terms_[part], np.array(starts[part.start : part.stop + 1]) - pstart,
                np.array(docs[pstart:pend]), np.array(freqs[pstart:pend]),
                np.array(gaps[sum(freqs[:pstart]) : sum(freqs[:pend])]),
            )  # fmt: skip
            writer.add_term_postings("body", field, b"", sub)
        writer.finish_field()

    assert _write_field(ours) == _write_field(whooshs)


def _all_postings(path: Path) -> set[tuple[str, bytes, bytes, float, bytes]]:
    """Every posting of an index, by post key rather than docnum."""
    ix = windex.open_dir(str(path))
    try:
        with ix.reader() as reader:
            out = set()
            keys: dict[int, bytes] = {}
            for leaf, offset in indexer._leaves(reader):
                column = _load_bytes_column(leaf, "key", 8)
                for d in range(leaf.doc_count_all()):
                    keys[offset + d] = column[d * 8 : d * 8 + 8]
            for fieldname, text, docnum, weight, value in reader.iter_postings():
                out.add((fieldname, text, keys[docnum], weight, value))
            return out
    finally:
        ix.close()


def test_updates_that_merge_segments_keep_every_posting(tmp_path):
    """Small segments merged into a segment that also has new documents (the pool turns
    its words into per-term postings before the merge's postings arrive)."""
    docs = _documents(700, seed=3)
    one = tmp_path / "one"
    one.mkdir()
    ix = windex.create_in(str(one), schema_with(_COMMON))
    writer = indexer._segment_writer(ix)
    for doc in docs:
        writer.add_document(**doc)
    writer.commit()
    ix.close()

    parts = tmp_path / "parts"
    parts.mkdir()
    ix = windex.create_in(str(parts), schema_with(_COMMON))
    try:
        for start in range(0, 700, 100):  # seven small segments, then merges
            writer = indexer._segment_writer(ix)
            for doc in docs[start : start + 100]:
                writer.add_document(**doc)
            writer.commit(mergetype=indexer._merge_policy)
        segments = ix._segments()
    finally:
        ix.close()
    assert len(segments) < 7
    postings = _all_postings(one)
    assert any(field == "body_pairs" for field, *_rest in postings)  # pairs merged too
    assert _all_postings(parts) == postings


def test_documents_after_a_merged_reader_keep_every_posting(tmp_path):
    """A writer given another index's postings first, then documents of its own."""
    docs = _documents(120, seed=5)
    paths = {name: tmp_path / name for name in ("first", "both", "all")}
    for path in paths.values():
        path.mkdir()
    for name, part in (("first", docs[:60]), ("all", docs)):
        ix = windex.create_in(str(paths[name]), schema_with(_COMMON))
        writer = indexer._segment_writer(ix)
        for doc in part:
            writer.add_document(**doc)
        writer.commit()
        ix.close()
    first = windex.open_dir(str(paths["first"]))
    ix = windex.create_in(str(paths["both"]), schema_with(_COMMON))
    try:
        writer = indexer._segment_writer(ix)
        with first.reader() as reader:
            writer.add_reader(reader)
        for doc in docs[60:]:
            writer.add_document(**doc)
        assert not writer.pool.texts  # Whoosh's way after the reader's postings
        writer.commit()
    finally:
        ix.close()
        first.close()
    assert _all_postings(paths["both"]) == _all_postings(paths["all"])
