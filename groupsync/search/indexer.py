"""Writing the index: incremental updates, full rebuilds (in parallel builder processes)
and checks against the archive, with their reports.
"""

from __future__ import annotations

import os
import pickle
import shutil
import sys
import threading
import time
import warnings
from array import array
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from whoosh import index as windex
from whoosh.writing import SegmentWriter

from ..archive import Archive
from ..archive.queries import search as queries
from ..errors import GroupsyncError
from ..files import private_dir, private_umask, tighten
from .analysis import _TOKEN, _nfc, fold
from .codec import MAX_POSITIONS, CompactPositions, TermPostings, _lengths_column
from .documents import _attachments_of, _AttachmentText, _document
from .filters import _load_bytes_column, _load_column
from .schema import (
    CODEC,
    FLAG_DELETED,
    INDEX_FORMAT,
    MailText,
    PairText,
    _key,
    common_words,
    pairs_of,
    schema_with,
)
from .searchers import close_indexes
from .state import _read_state, _State, _write_state

Progress = Callable[[dict[str, Any]], None]


class IndexWriteError(GroupsyncError):
    """The index folder cannot be written: a full disk, a read-only folder."""


@contextmanager
def _writing(index_path: Path) -> Iterator[None]:
    """Whoosh opens its files with ``open()``: private by umask (the builder processes
    fork with it), and a file system's refusal as one error naming the folder."""
    try:
        with private_umask():
            yield
        tighten(index_path)
    except OSError as ex:
        raise IndexWriteError(
            f"cannot write the search index {index_path}: {ex.strerror or ex}; "
            "run `groupsync index` once it can be written"
        ) from None


# -- reports ------------------------------------------------------------------------------


@dataclass
class IndexReport:
    """What an index update did. ``mode``: created, rebuilt, updated or current."""

    index_path: str
    mode: str
    from_seq: int
    to_seq: int
    indexed: int = 0
    removed: int = 0
    kept_deleted: int = 0
    documents: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CheckReport:
    """Where an index and its archive disagree; ``ok`` when they do not."""

    index_path: str
    exists: bool
    index_seq: int
    archive_seq: int
    documents: int = 0
    posts: int = 0
    missing: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    # of the missing, stale and extra: posts changed after the index's change_seq, which
    # the next update indexes (a sync killed between its commit and the index's)
    pending: list[str] = field(default_factory=list)
    error: str | None = None  # the index could not be read

    @property
    def behind(self) -> int:
        return max(0, self.archive_seq - self.index_seq)

    @property
    def ok(self) -> bool:
        return (
            self.exists
            and self.error is None
            and not (self.missing or self.stale or self.extra or self.duplicates)
        )

    @property
    def damaged(self) -> bool:
        """Differences an update would not heal: the index must be rebuilt."""
        lagging = len(self.missing) + len(self.stale) + len(self.extra) - len(self.pending)
        return self.exists and (
            self.error is not None
            or bool(lagging or self.duplicates)
            or self.index_seq > self.archive_seq
        )

    def as_dict(self, sample: int | None = 20) -> dict[str, Any]:
        out: dict[str, Any] = {
            "index_path": self.index_path,
            "exists": self.exists,
            "ok": self.ok,
            "index_seq": self.index_seq,
            "archive_seq": self.archive_seq,
            "behind": self.behind,
            "documents": self.documents,
            "posts": self.posts,
        }
        for name in ("missing", "stale", "extra", "duplicates"):
            ids = getattr(self, name)
            out[name] = len(ids)
            out[f"{name}_ids"] = ids if sample is None else ids[:sample]
        return out


# -- writing ------------------------------------------------------------------------------
#
# Whoosh buffers every posting as a tuple in a sorting pool that spills to disk and merges
# runs in Python. _TermPool keeps a segment's text as arrays of word ids instead (about 4
# bytes a word; numpy sorts them into postings when the segment is written, a term at a
# time); a builder starts a new segment when it is full. A rebuild runs one builder per
# process; the parent reads the archive, sends batches of documents round-robin (each
# segment stays in group and date order) and writes the table of contents listing every
# builder's segments.

_LOCK = threading.Lock()
# Bytes of postings the builders hold (shared among them) before a new segment: each
# segment repeats the dictionary entry of every word it holds, so fewer, larger segments
# make a smaller index (on mail-like text, 6 segments for 100,000 posts held three times
# the words of one; docs/performance.md)
POOL_LIMIT = 768 * 1024 * 1024
BATCH = 256
SAMPLE_POSTS = 2_000  # posts whose words choose an index's common words


class _TermPool:
    """A posting pool for one segment.

    Documents added through :class:`_SegmentWriter` keep each text field's words as word
    ids in one array per field (in document order), sorted into postings with numpy when
    the segment is written (:meth:`term_postings`): no Python per posting. Postings
    added one at a time (an ``ID`` field, or a merge's ``add_reader``) are kept per term:
    docnums, weights and joined values.
    """

    def __init__(self, tempstore: Any = None, segment: Any = None, **_kwargs: Any) -> None:
        self.terms: dict[tuple[str, bytes], tuple[array, array, bytearray, array]] = {}
        self.fieldnames: set[str] = set()
        self.size = 0
        # the words of the text fields: raw token -> word id (0: a token folding to "")
        self.words: list[str] = [""]
        self.word_ids: dict[str, int] = {"": 0}
        self.raw_ids: dict[str, int] = {}
        # per text field: the word ids of its documents, each document's docnum and count
        self.texts: dict[str, tuple[array, array, array]] = {}
        # per pair field (PairText): each pair's position (a word's is its place in texts)
        self.placed: dict[str, array] = {}
        self.text_fields: frozenset[str] = frozenset()
        self._ranked: tuple[Any, list[str]] | None = None
        self._last: tuple[str, list[int]] | None = None

    def add(self, item: tuple[str, bytes, int, float, bytes | None]) -> None:
        fieldname, tbytes, docnum, weight, value = item
        if fieldname in self.text_fields:  # a merge's postings (or a boosted document)
            self._to_terms()
        key = (fieldname, tbytes)
        entry = self.terms.get(key)
        if entry is None:
            entry = self.terms[key] = (array("I"), array("f"), bytearray(), array("I"))
            self.fieldnames.add(fieldname)
            self.size += 400 + len(tbytes)
        ids, weights, values, ends = entry
        ids.append(docnum)
        weights.append(weight)
        if value:
            values += value
        ends.append(len(values))
        self.size += 12 + (len(value) if value else 0)

    def add_text(self, fieldname: str, docnum: int, text: str) -> int:
        """Add a text field's words (as :func:`terms_of` reads them, the first
        ``MAX_POSITIONS``); its length (the words that are not empty)."""
        ids = self._ids_of(text)
        length = len(ids) - ids.count(0)
        if length:
            entry = self.texts.get(fieldname)
            if entry is None:
                entry = self.texts[fieldname] = (array("I"), array("I"), array("I"))
            words, docnums, counts = entry
            words.extend(ids)
            docnums.append(docnum)
            counts.append(len(ids))
            self.size += 14 * len(ids) + 8
        return length

    def _ids_of(self, text: str) -> list[int]:
        """The word ids of a text's first ``MAX_POSITIONS`` tokens (0: folds to nothing);
        the last text's are kept, for its pair field next."""
        if self._last is not None and self._last[0] is text:
            return self._last[1]
        tokens = _TOKEN.findall(_nfc(text))
        found = list(map(self.raw_ids.get, tokens))
        if None in found:
            found = [self._word(t) if i is None else i for t, i in zip(tokens, found, strict=True)]
        ids: list[int] = found  # type: ignore[assignment] # no None left
        del ids[MAX_POSITIONS:]
        self._last = (text, ids)
        return ids

    def add_pairs(self, fieldname: str, docnum: int, text: str, common: frozenset[str]) -> None:
        """Add a pair field's terms (:class:`PairText`): each pair of neighbouring words of
        ``text`` that are both in ``common``, at the first word's position."""
        if not common:
            return
        at, pairs = pairs_of(list(map(self.words.__getitem__, self._ids_of(text))), common)
        if not at:
            return
        ids = list(map(self._term, pairs))
        entry = self.texts.get(fieldname)
        if entry is None:
            entry = self.texts[fieldname] = (array("I"), array("I"), array("I"))
            self.placed[fieldname] = array("I")
        words, docnums, counts = entry
        words.extend(ids)
        self.placed[fieldname].extend(at)
        docnums.append(docnum)
        counts.append(len(ids))
        self.size += 18 * len(ids) + 8

    def _term(self, term: str) -> int:
        found = self.word_ids.get(term)
        if found is None:
            found = self.word_ids[term] = len(self.words)
            self.words.append(term)
            self.size += 100 + len(term)
        return found

    def _word(self, token: str) -> int:
        term = fold(token)
        found = self.word_ids.get(term)
        if found is None:
            found = self.word_ids[term] = len(self.words)
            self.words.append(term)
            self.size += 100 + len(term)
        self.raw_ids[token] = found
        return found

    def _to_terms(self) -> None:
        """Move the text fields' words into per-term postings, and send later documents
        Whoosh's way: a merge adds postings one at a time, and each term's docnums must
        stay in order."""
        texts, self.texts = self.texts, {}
        self.text_fields = frozenset()
        placed, self.placed = self.placed, {}
        for fieldname, (words, docnums, counts) in texts.items():
            start = 0
            at = placed.get(fieldname)
            for docnum, count in zip(docnums, counts, strict=True):
                positions: dict[int, array] = {}
                places = range(count) if at is None else at[start : start + count]
                for pos, word in zip(places, words[start : start + count], strict=True):
                    if word:
                        positions.setdefault(word, array("H")).append(pos)
                start += count
                for word, found in positions.items():
                    if sys.byteorder != "little":  # pragma: no cover - big-endian hosts
                        found.byteswap()
                    self.add((fieldname, self.words[word].encode("utf-8"), docnum,
                              float(len(found)), found.tobytes()))  # fmt: skip

    def term_postings(self, fieldname: str) -> Iterator[TermPostings]:
        """A text field's postings, sorted by term and document (numpy), in slices of
        about ``SLICE`` occurrences (whole terms), so that sorting a field of 10 million
        words holds a few arrays of its size, not a dozen."""
        import numpy as np

        words_a, docnums_a, counts_a = self.texts[fieldname]
        words = np.frombuffer(words_a, np.uint32)
        ranks, sorted_words = self._ranks()
        keys = ranks[words]  # rank 0 is the empty word (it sorts first): not indexed
        counts = np.frombuffer(counts_a, np.uint32).astype(np.int64)
        firsts = np.cumsum(counts) - counts  # each document's first word
        docnums = np.frombuffer(docnums_a, np.uint32).astype(np.int32)
        below = np.cumsum(np.bincount(keys, minlength=len(sorted_words)))  # ranks <= r
        low = 1
        while low < len(sorted_words):
            high = int(np.searchsorted(below, below[low - 1] + SLICE, side="right"))
            # at most 65,536 words a slice: their ranks less ``low`` sort as 16-bit
            # integers (numpy's stable sort is a radix sort for those, 7x faster)
            high = min(max(high, low + 1), len(sorted_words), low + 0x10000)
            chosen = np.flatnonzero((keys >= low) & (keys < high))
            low = high
            if len(chosen):
                within = np.searchsorted(firsts, chosen, side="right") - 1
                docs = docnums[within]
                if fieldname in self.placed:
                    pos = np.frombuffer(self.placed[fieldname], np.uint32)[chosen].astype(np.int32)
                else:
                    pos = (chosen - firsts[within]).astype(np.int32)
                yield _postings(sorted_words, chosen, keys, docs, pos, low)

    def _ranks(self) -> tuple[Any, list[str]]:
        """Each word id's rank in byte order (UTF-8 keeps code point order), and the
        words in that order; once per segment (every text field shares the words)."""
        import numpy as np

        if self._ranked is not None and len(self._ranked[1]) == len(self.words):
            return self._ranked
        order = sorted(range(len(self.words)), key=self.words.__getitem__)
        ranks = np.empty(len(order), np.int32)
        ranks[np.array(order, dtype=np.int64)] = np.arange(len(order), dtype=np.int32)
        self._ranked = ranks, [self.words[i] for i in order]
        return self._ranked

    def iter_postings(
        self, fieldname: str | None = None
    ) -> Iterator[tuple[str, bytes, int, float, bytes]]:
        keys = sorted(k for k in self.terms if fieldname is None or k[0] == fieldname)
        for key in keys:
            fieldname_, tbytes = key
            ids, weights, values, ends = self.terms[key]
            data = bytes(values)
            start = 0
            for docnum, weight, end in zip(ids, weights, ends, strict=True):
                yield fieldname_, tbytes, docnum, weight, data[start:end]
                start = end

    def save(self) -> None:
        pass

    def cleanup(self) -> None:
        self.terms.clear()
        self.texts.clear()
        self.placed.clear()
        self._ranked = None
        self._last = None
        self.size = 0


SLICE = 1 << 21


def _postings(
    words: list[str], chosen: Any, keys: Any, docs: Any, pos: Any, low: int
) -> TermPostings:
    """The postings of the ``chosen`` occurrences (indexes, in document order; ``docs``
    and ``pos``: theirs) of some words (``keys``: ranks into ``words``, here from
    ``low`` to ``low`` + 65,535), sorted by word, document and position."""
    import numpy as np

    keys = keys[chosen]
    order = np.argsort((keys - low).astype(np.uint16), kind="stable")
    keys, docs, pos = keys[order], docs[order], pos[order]
    del order
    count = len(keys)
    starts = np.empty(count, bool)
    starts[0] = True
    np.not_equal(keys[1:], keys[:-1], out=starts[1:])
    starts[1:] |= docs[1:] != docs[:-1]
    posting_starts = np.flatnonzero(starts)
    del starts
    gaps = pos.copy()
    gaps[1:] -= pos[:-1]
    gaps[posting_starts] = pos[posting_starts]
    freqs = np.diff(np.append(posting_starts, count)).astype(np.int32)
    posting_keys = keys[posting_starts]
    term_starts = np.flatnonzero(np.concatenate(([True], posting_keys[1:] != posting_keys[:-1])))
    terms = [words[k].encode("utf-8") for k in posting_keys[term_starts].tolist()]
    return TermPostings(
        terms, np.append(term_starts, len(posting_starts)), docs[posting_starts], freqs, gaps
    )


class _SegmentWriter(SegmentWriter):
    """Whoosh's segment writer with a leaner path for our documents: text fields go to
    the pool as word ids and are written a term at a time; the per-document writer gets
    the same lengths and columns, in the same order, as Whoosh's ``add_document``."""

    def __init__(self, ix: windex.Index, **kwargs: Any) -> None:
        super().__init__(ix, **kwargs)
        self.pool = _TermPool()
        self._kinds = _field_kinds(self.schema)
        self.pool.text_fields = frozenset(
            n for n, k in self._kinds.items() if k in ("text", "pairs")
        )

    def add_document(self, **fields: Any) -> None:
        kinds = self._kinds
        pool = self.pool
        if not pool.text_fields or not all(
            name in kinds and (kinds[name] not in ("text", "pairs") or isinstance(value, str))
            for name, value in fields.items()
        ):
            return super().add_document(**fields)  # boosts, lists of words, after a merge
        self._check_state()
        schema = self.schema
        perdoc = self.perdocwriter
        docnum = self.docnum
        perdoc.start_doc(docnum)
        try:
            for name in sorted(fields):
                value = fields[name]
                if value is None:
                    continue
                field = schema[name]
                kind = kinds[name]
                if kind == "text":
                    perdoc.add_field(name, field, None, pool.add_text(name, docnum, value))
                elif kind == "pairs":
                    pool.add_pairs(name, docnum, value, field.common)
                    perdoc.add_field(name, field, None, 0)
                elif kind == "id":
                    for tbytes, _freq, weight, vbytes in field.index(value):
                        pool.add((name, tbytes, docnum, weight, vbytes))
                    perdoc.add_field(name, field, None, 0)
                else:
                    perdoc.add_field(name, field, None, 0)
                    column = field.column_type
                    perdoc.add_column_value(name, column, field.to_column_value(value))
        except Exception:
            perdoc.cancel_doc()
            raise
        perdoc.finish_doc()
        self._added = True
        self.docnum += 1

    def _flush_segment(self) -> None:
        pool = self.pool
        if not pool.texts:
            return super()._flush_segment()
        self.perdocwriter.close()
        lengths = self.per_document_reader()
        try:
            writer = self.fieldwriter
            for name in sorted(pool.fieldnames | set(pool.texts)):
                if name in pool.texts:
                    lens = _lengths_column(lengths, name)
                    for postings in pool.term_postings(name):
                        writer.add_term_postings(name, self.schema[name], lens, postings)
                    writer.finish_field()
                else:
                    writer.add_postings(self.schema, lengths, pool.iter_postings(name))
            writer.close()
        finally:
            lengths.close()


def _field_kinds(schema: Any) -> dict[str, str]:
    """Each field as the lean path adds it: "text" (our analysed text, positions),
    "id" (whole values, Whoosh's own ``index``), "column"; other fields go Whoosh's way."""
    kinds: dict[str, str] = {}
    for name in schema.names():
        field = schema[name]
        if field.stored or field.vector or field.separate_spelling():
            continue
        if not field.indexed:
            if field.column_type is not None:
                kinds[name] = "column"
        elif field.column_type is not None:
            continue
        elif isinstance(field, PairText) and type(field).index is PairText.index:
            kinds[name] = "pairs"
        elif isinstance(field.format, CompactPositions) and field.scorable:
            if field.format.field_boost == 1.0 and type(field).index is MailText.index:
                kinds[name] = "text"
        elif not field.scorable:
            kinds[name] = "id"
    return kinds


def _segment_writer(ix: windex.Index, **kwargs: Any) -> Any:
    """A segment writer with the compact codec and the packed pool."""
    # Not compound: Whoosh reads a compound segment's postings into a BytesIO copy (the
    # whole file in memory); separate files are read where they lie.
    return _SegmentWriter(ix, codec=CODEC, compound=False, **kwargs)


def _merge_policy(writer: Any, segments: list[Any]) -> list[Any]:
    """Merge small segments when they pile up; never the big ones a rebuild made.

    Bounds the work of one update (merging goes through every posting in Python).
    """
    from whoosh.reading import SegmentReader

    small = sorted(
        (s for s in segments if s.doc_count_all() <= SMALL_SEGMENT), key=lambda s: s.doc_count_all()
    )
    if len(small) < 4:
        return segments
    merged: list[Any] = []
    total = 0
    for segment in small:
        if total + segment.doc_count_all() > 2 * SMALL_SEGMENT and len(merged) >= 2:
            break
        merged.append(segment)
        total += segment.doc_count_all()
    for segment in merged:
        reader = SegmentReader(writer.storage, writer.schema, segment)
        try:
            writer.add_reader(reader)
        finally:
            reader.close()
    return [s for s in segments if s not in merged]


SMALL_SEGMENT = 10_000


def _build_segments(
    ix: windex.Index,
    batches: Iterable[list[dict[str, Any]]],
    limit: int,
    done: Callable[[int], None] | None = None,
) -> list[Any]:
    """Index batches of documents into new segments of ``ix``; the segments, not committed."""
    segments = []
    writer = _segment_writer(ix, _lk=False)
    try:
        for batch in batches:
            for doc in batch:
                writer.add_document(**doc)
            if done:
                done(len(batch))
            if writer.pool.size > limit:
                segments.append(writer._finalize_segment())
                writer = _segment_writer(ix, _lk=False, docbase=0)
        if writer._added:
            segments.append(writer._finalize_segment())
        else:
            writer._close_segment()
    except BaseException:
        writer._close_segment()
        raise
    return segments


def _builder_main(path: str, jobs: Any, results: Any, counter: Any, limit: int) -> None:
    """A builder process: documents from ``jobs`` into segments sent back on ``results``."""

    def batches() -> Iterator[list[dict[str, Any]]]:
        while True:
            batch = jobs.get()
            if batch is None:
                return
            yield pickle.loads(batch)

    def done(n: int) -> None:
        with counter.get_lock():
            counter.value += n

    try:
        ix = windex.open_dir(path)
        try:
            segments = _build_segments(ix, batches(), limit, done)
        finally:
            ix.close()
        results.put(("ok", pickle.dumps(segments)))
    except BaseException as ex:  # noqa: BLE001 - reported to the parent, which raises
        results.put(("error", f"{type(ex).__name__}: {ex}"))


def _commit_segments(ix: windex.Index, segments: list[Any]) -> None:
    """Write a table of contents naming ``segments`` (a fresh index's only ones)."""
    writer = _segment_writer(ix, timeout=60.0)
    try:
        writer._close_segment()
        writer._commit_toc(list(writer.segments) + segments)
    finally:
        writer._finish()


def _build_parallel(
    ix: windex.Index,
    path: Path,
    docs: Iterator[dict[str, Any]],
    procs: int,
    progress: Callable[[int], None] | None,
) -> list[Any]:
    import multiprocessing
    import queue as queue_mod

    # fork where there is one: spawn would import the caller's main module again
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context: Any = multiprocessing.get_context(method)  # typeshed's BaseContext has no Process
    counter = context.Value("q", 0)
    results = context.Queue()
    jobs = [context.Queue(maxsize=8) for _ in range(procs)]
    workers = [
        context.Process(
            target=_builder_main,
            args=(str(path), jobs[k], results, counter, POOL_LIMIT // procs),
            daemon=True,
        )
        for k in range(procs)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        for worker in workers:
            worker.start()
    try:
        for n, batch in enumerate(_batched(docs, BATCH)):
            job = pickle.dumps(batch, pickle.HIGHEST_PROTOCOL)
            target = jobs[n % procs]
            while True:
                try:
                    target.put(job, timeout=0.5)
                    break
                except queue_mod.Full:
                    _check_alive(workers, results)
                    if progress:
                        progress(counter.value)
            if progress:
                progress(counter.value)
        for q in jobs:
            q.put(None)
        segments: list[Any] = []
        for _ in workers:
            while True:
                try:
                    status, payload = results.get(timeout=0.5)
                    break
                except queue_mod.Empty:
                    _check_alive(workers, None)
                    if progress:
                        progress(counter.value)
            if status != "ok":
                raise GroupsyncError(f"indexing failed in a builder process: {payload}")
            segments.extend(pickle.loads(payload))
        return segments
    finally:
        for worker in workers:
            worker.join(timeout=5)
            if worker.is_alive():
                worker.kill()
                worker.join()
            worker.close()
        for q in [*jobs, results]:
            q.close()
            q.join_thread()


def _check_alive(workers: list[Any], results: Any) -> None:
    """Raise if a builder ended while documents were still being sent (``results`` given)
    or died (any time)."""
    import queue as queue_mod

    for worker in workers:
        if worker.is_alive():
            continue
        if worker.exitcode not in (0, None):
            raise GroupsyncError(f"a search index builder process died ({worker.exitcode})")
        if results is not None:
            try:
                _status, payload = results.get(timeout=1.0)
            except queue_mod.Empty:
                payload = "it ended early"
            raise GroupsyncError(f"indexing failed in a builder process: {payload}")


def _batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def update_index(
    archive: Archive,
    index_path: str | Path,
    *,
    keep_deleted: bool | None = None,
    progress: Progress | None = None,
    procs: int = 1,
) -> IndexReport:
    """Bring the index up to the archive: every post changed since the recorded change_seq.

    Creates the index (a full build, in ``procs`` processes) if there is none, or if it
    was built by another version of this module. ``keep_deleted``: keep tombstoned posts
    in the index, marked (None keeps what the index was built with; a change re-indexes
    the deleted posts). One Whoosh commit, then the state file.
    """
    index_path = Path(index_path)
    state = _read_state(index_path)
    if state is None or state.format != INDEX_FORMAT or not windex.exists_in(str(index_path)):
        keep = bool(keep_deleted)
        return rebuild_index(
            archive, index_path, keep_deleted=keep, progress=progress, procs=procs
        )
    target = archive.change_seq()
    if target < state.change_seq:  # the archive was replaced or restored from a backup
        return rebuild_index(
            archive, index_path, keep_deleted=state.keep_deleted, progress=progress, procs=procs
        )
    keep = state.keep_deleted if keep_deleted is None else keep_deleted
    report = IndexReport(str(index_path), "current", state.change_seq, target)
    if target == state.change_seq and keep == state.keep_deleted:
        return report
    started = time.monotonic()
    rows = queries.changed_document_rows(
        archive, state.change_seq, target, keep != state.keep_deleted
    )
    extract = _AttachmentText(archive)
    with _writing(index_path), _LOCK:
        ix = windex.open_dir(str(index_path))
        try:
            writer = _segment_writer(ix, timeout=60.0)
            try:
                purged = queries.purged_among(archive, [r[0] for r in rows])
                live = [r[0] for r in rows if (r[14] is None or keep) and r[0] not in purged]
                attachments = _attachments_of(archive, live)
                with writer.reader() as reader:
                    present = _docnums_by_key(reader, {_key(r[0]) for r in rows})
                for n, row in enumerate(rows, 1):
                    post_id, deleted = row[0], row[14] is not None
                    for docnum in present.get(_key(post_id), ()):
                        writer.delete_document(docnum)
                    if (deleted and not keep) or post_id in purged:
                        report.removed += 1
                    else:
                        doc = _document(row, attachments.get(post_id, []), extract)
                        writer.add_document(**doc)
                        report.indexed += 1
                        report.kept_deleted += deleted
                    if progress and (n % 500 == 0 or n == len(rows)):
                        progress({"stage": "index", "done": n, "total": len(rows)})
                writer.commit(mergetype=_merge_policy)
            except BaseException:
                writer.cancel()
                raise
            report.documents = ix.doc_count()
        finally:
            ix.close()
        _write_state(
            index_path, _State(change_seq=target, keep_deleted=keep, built=state.built)
        )
    report.mode = "updated"
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _docnums_by_key(reader: Any, wanted: set[bytes] | None) -> dict[bytes, list[int]]:
    """Live documents by post key (all of them, or those of the ``wanted`` keys)."""
    found: dict[bytes, list[int]] = {}
    for leaf, offset in _leaves(reader):
        keys = _load_bytes_column(leaf, "key", 8)
        deleted = leaf.deleted_docs_set if leaf.has_deletions() else ()
        for docnum in range(leaf.doc_count_all()):
            key = keys[docnum * 8 : docnum * 8 + 8]
            if (wanted is None or key in wanted) and docnum not in deleted:
                found.setdefault(key, []).append(offset + docnum)
    return found


def _leaves(reader: Any) -> list[tuple[Any, int]]:
    if reader.is_atomic():
        return [(reader, 0)] if reader.segment() is not None else []
    return list(zip(reader.readers, reader.doc_offsets, strict=True))


def rebuild_index(
    archive: Archive,
    index_path: str | Path,
    *,
    procs: int = 2,
    keep_deleted: bool | None = None,
    progress: Progress | None = None,
) -> IndexReport:
    """Build the index from scratch in a temporary folder, then swap it in.

    Posts go in by group and date, so a group or a date range is a few runs of
    neighbouring documents (filters then skip whole posting blocks). ``procs`` > 1
    indexes in that many processes, one or more segments each.
    """
    index_path = Path(index_path)
    old = _read_state(index_path)
    keep = (old.keep_deleted if old else False) if keep_deleted is None else keep_deleted
    with _writing(index_path):
        return _rebuild(archive, index_path, procs, keep, old is not None, progress)


def _rebuild(
    archive: Archive,
    index_path: Path,
    procs: int,
    keep: bool,
    existed: bool,
    progress: Progress | None,
) -> IndexReport:
    started = time.monotonic()
    target = archive.change_seq()
    private_dir(index_path.parent)
    for stale in index_path.parent.glob(f"{index_path.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    temp = private_dir(index_path.parent / f"{index_path.name}.tmp-{os.getpid()}", exist_ok=False)
    report = IndexReport(str(index_path), "rebuilt" if existed else "created", 0, target)
    try:
        total = queries.count_documents(archive, target, keep)
        attachments = _attachments_of(archive, None)
        extract = _AttachmentText(archive)
        rows = queries.document_rows(archive, target, keep)

        def docs() -> Iterator[dict[str, Any]]:
            for row in rows:
                report.indexed += 1
                report.kept_deleted += row[14] is not None
                yield _document(row, attachments.get(row[0], []), extract)

        last = [0.0]

        def tick(done: int) -> None:
            now = time.monotonic()
            if progress and (now - last[0] >= 0.2 or done >= total):
                last[0] = now
                progress({"stage": "index", "done": min(done, total), "total": total})

        # the pairs of common words are of this archive's commonest words, counted in its
        # newest posts, and kept in the index's schema (every segment pairs the same words)
        common = common_words(queries.sample_texts(archive, SAMPLE_POSTS))
        ix = windex.create_in(str(temp), schema_with(common))
        try:
            procs = max(1, min(procs, os.cpu_count() or 1, -(-total // (BATCH * 4)) or 1))
            if procs > 1:
                segments = _build_parallel(ix, temp, docs(), procs, tick)
            else:
                count = [0]

                def done(n: int) -> None:
                    count[0] += n
                    tick(count[0])

                segments = _build_segments(ix, _batched(docs(), BATCH), POOL_LIMIT, done)
            _commit_segments(ix, segments)
            report.documents = ix.doc_count()
        finally:
            ix.close()
        built = f"{time.time():.6f}-{os.getpid()}"
        _write_state(temp, _State(change_seq=target, keep_deleted=keep, built=built))
        with _LOCK:
            close_indexes(index_path)
            if index_path.exists():
                trash = index_path.parent / f"{index_path.name}.old-{os.getpid()}"
                os.replace(index_path, trash)
                os.replace(temp, index_path)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.replace(temp, index_path)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    report.seconds = round(time.monotonic() - started, 3)
    if progress:
        progress({"stage": "done", "done": report.indexed, "total": report.indexed})
    return report


# -- checking -----------------------------------------------------------------------------


def check_index(archive: Archive, index_path: str | Path) -> CheckReport:
    """Compare every document of the index with the archive's posts (id and changeKey)."""
    index_path = Path(index_path)
    state = _read_state(index_path)
    report = CheckReport(
        str(index_path),
        exists=state is not None,
        index_seq=state.change_seq if state else 0,
        archive_seq=archive.change_seq(),
    )
    keep = state.keep_deleted if state else False
    indexed: dict[bytes, list[tuple[int, bool]]] = {}
    if report.exists:
        try:
            report.exists = windex.exists_in(str(index_path))
            if report.exists:
                _read_documents(index_path, indexed, report)
        except Exception as ex:  # a damaged index fails in Whoosh's own ways
            report.error = f"{type(ex).__name__}: {ex}"
            return report
    for post_id, seq, deleted in queries.post_change_states(archive):
        report.posts += 1
        found = indexed.pop(_key(post_id), None)
        if found and len(found) > 1:
            report.duplicates.append(post_id)
        differs = None
        if deleted and not keep:
            if found:
                differs = report.extra
        elif not found:
            differs = report.missing
        elif found[0] != (seq, bool(deleted)):
            differs = report.stale
        if differs is not None:
            differs.append(post_id)
            if (seq or 0) > report.index_seq:
                report.pending.append(post_id)
    report.extra.extend(key.hex() for key in indexed)
    return report


def _read_documents(
    index_path: Path, indexed: dict[bytes, list[tuple[int, bool]]], report: CheckReport
) -> None:
    """Every live document's key, seq and deleted flag, from the index's columns."""
    ix = windex.open_dir(str(index_path))
    try:
        with ix.reader() as reader:
            for leaf, _offset in _leaves(reader):
                keys = _load_bytes_column(leaf, "key", 8)
                seqs = _load_column(leaf, "seq", "I")
                flags = _load_column(leaf, "flags", "B")
                deleted = leaf.deleted_docs_set if leaf.has_deletions() else ()
                for d in range(leaf.doc_count_all()):
                    if d not in deleted:
                        key = keys[d * 8 : d * 8 + 8]
                        entry = (seqs[d], bool(flags[d] & FLAG_DELETED))
                        indexed.setdefault(key, []).append(entry)
                        report.documents += 1
    finally:
        ix.close()
