"""Filters over the index's columns (group, date, flags) and the Whoosh queries and
matchers that apply them: :class:`DocFilter` and :class:`Filtered`.
"""

from __future__ import annotations

import bisect
import itertools
import operator
from array import array
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from whoosh import query as wquery
from whoosh.matching import Matcher, NullMatcher, ReadTooFar

from .codec import _lengths_column
from .schema import FLAG_ATTACHMENT, FLAG_DELETED

# -- filters over columns -----------------------------------------------------------------


class _SegmentData:
    """Per-segment columns for filters and date order, loaded once per segment."""

    def __init__(self, reader: Any) -> None:
        self.doccount = reader.doc_count_all()
        self.received = _load_column(reader, "received", "I")
        self.flags = _load_column(reader, "flags", "B")
        self.seq = _load_column(reader, "seq", "I")
        self.groups: dict[str, array] = {}
        self.deleted = frozenset(reader.deleted_docs_set) if reader.has_deletions() else None
        self._keys: bytes | None = None
        self._threads: array | None = None
        self._by_date: tuple[array, array] | None = None
        self._flagged: dict[int, frozenset[int]] = {}
        self._selected: dict[tuple, tuple[array | None, frozenset[int]]] = {}
        self._lengths: dict[tuple[str, int], array] = {}

    def key(self, reader: Any, docnum: int) -> bytes:
        if self._keys is None:
            self._keys = _load_bytes_column(reader, "key", 8)
        return self._keys[docnum * 8 : docnum * 8 + 8]

    def threads(self, reader: Any) -> array:
        """The thread digest of every document (see ``schema._thread_key``)."""
        if self._threads is None:
            self._threads = _load_column(reader, "thread", "Q")
        return self._threads

    def group_docs(self, reader: Any, group_id: str) -> array:
        docs = self.groups.get(group_id)
        if docs is None:
            docs = array("i")
            if ("group", group_id) in reader:
                docs.extend(reader.postings("group", group_id).all_ids())
            self.groups[group_id] = docs
        return docs

    def flagged(self, flag: int) -> frozenset[int]:
        docs = self._flagged.get(flag)
        if docs is None:
            docs = self._flagged[flag] = frozenset(d for d, f in enumerate(self.flags) if f & flag)
        return docs

    def dated(self, lo: int | None, hi: int | None) -> array:
        """Sorted docnums received in [lo, hi), by bisection over the date order."""
        if self._by_date is None:
            ranked = sorted(range(self.doccount), key=self.received.__getitem__)
            dates = array("I", map(self.received.__getitem__, ranked))
            self._by_date = dates, array("i", ranked)
        dates, order = self._by_date
        start = 0 if lo is None else bisect.bisect_left(dates, lo)
        stop = len(dates) if hi is None else bisect.bisect_left(dates, hi)
        return array("i", sorted(order[start:stop]))

    def length_keys(self, reader: Any, fieldname: str, shift: int = 8) -> array:
        """A field's length byte of each document, shifted left (BM25 table keys)."""
        found = self._lengths.get((fieldname, shift))
        if found is None:
            lens = _lengths_column(reader._perdoc, fieldname)
            found = array("H", map(operator.lshift, lens, itertools.repeat(shift)))
            found.extend(itertools.repeat(0, self.doccount - len(found)))
            self._lengths[(fieldname, shift)] = found
        return found

    def select(self, reader: Any, filt: DocFilter) -> tuple[array | None, frozenset[int]]:
        """The documents a filter lets through: a sorted array (None: all but those in the
        second item, a set of excluded documents)."""
        key = filt._key()
        found = self._selected.get(key)
        if found is not None:
            return found
        excluded: set[int] = set(self.deleted or ())
        if filt.not_flags:
            excluded |= self.flagged(filt.not_flags)
        allowed: array | None = None
        if filt.groups is not None:
            merged: list[int] = []
            for group_id in filt.groups:
                merged.extend(self.group_docs(reader, group_id))
            allowed = array("i", sorted(merged) if len(filt.groups) > 1 else merged)
        if filt.lo is not None or filt.hi is not None:
            lo = 0 if filt.lo is None else filt.lo
            hi = 1 << 40 if filt.hi is None else filt.hi
            if allowed is None:
                allowed = self.dated(filt.lo, filt.hi)
            else:
                received = self.received
                allowed = array("i", (d for d in allowed if lo <= received[d] < hi))
        if filt.flags:
            having = self.flagged(filt.flags)
            if allowed is None:
                allowed = array("i", sorted(having))
            else:
                allowed = array("i", (d for d in allowed if d in having))
        if allowed is not None and excluded:
            allowed = array("i", (d for d in allowed if d not in excluded))
        result = (allowed, frozenset(excluded))
        if len(self._selected) > 64:
            self._selected.clear()
        self._selected[key] = result
        return result


def _load_bytes_column(reader: Any, name: str, width: int) -> bytes:
    """A fixed-width bytes column as one bytes object (``width`` bytes per document)."""
    doccount = reader.doc_count_all()
    creader = reader.column_reader(name, translate=False)
    try:
        dbfile, basepos, count = creader._dbfile, creader._basepos, creader._count
        data = bytes(dbfile.get(basepos, count * width)) if count else b""
        return data + bytes(width) * (doccount - count)
    except AttributeError:
        return b"".join(creader[d] for d in range(doccount))


def _load_column(reader: Any, name: str, typecode: str) -> array:
    """A numeric column as an array, read in one go (Whoosh reads it value by value)."""
    doccount = reader.doc_count_all()
    creader = reader.column_reader(name, translate=False)
    out = array(typecode)
    try:
        dbfile, basepos, count = creader._dbfile, creader._basepos, creader._count
        if count:
            out.frombytes(bytes(dbfile.get(basepos, count * out.itemsize)))
            if out.itemsize > 1:
                out.byteswap()  # stored big-endian
        out.extend([creader._default] * (doccount - len(out)))
    except AttributeError:  # another column implementation: the slow, general way
        out = array(typecode, (creader[d] for d in range(doccount)))
    return out


_SEGMENTS: dict[tuple[str, int], _SegmentData] = {}


def _segment_data(reader: Any) -> _SegmentData:
    segment = reader.segment()
    key = (segment.segment_id(), segment.deleted_count())
    data = _SEGMENTS.get(key)
    if data is None:
        if len(_SEGMENTS) > 64:
            _SEGMENTS.clear()
        data = _SEGMENTS[key] = _SegmentData(reader)
    return data


class DocFilter(wquery.Query):
    """Posts of some groups, in a date range, with flags: a query that scores nothing.

    Matches come from the group postings and the ``received``/``flags`` columns, not from
    term expansion, so a date range costs the same whatever its width.
    """

    boost = 1.0

    def __init__(
        self,
        groups: frozenset[str] | None = None,
        lo: int | None = None,
        hi: int | None = None,
        flags: int = 0,
        not_flags: int = 0,
    ) -> None:
        self.groups = groups
        self.lo = lo
        self.hi = hi
        self.flags = flags
        self.not_flags = not_flags

    def _key(self) -> tuple:
        groups = tuple(sorted(self.groups)) if self.groups is not None else None
        return (groups, self.lo, self.hi, self.flags, self.not_flags)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DocFilter) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        parts = []
        if self.groups is not None:
            parts.append(f"group in {sorted(self.groups)}")
        if self.lo is not None:
            parts.append(f"received >= {_iso(self.lo)}")
        if self.hi is not None:
            parts.append(f"received < {_iso(self.hi)}")
        if self.flags & FLAG_ATTACHMENT:
            parts.append("has attachment")
        if self.not_flags & FLAG_DELETED:
            parts.append("not deleted")
        return f"Filter({', '.join(parts) or 'all'})"

    __str__ = __repr__

    def intersect(self, other: DocFilter) -> DocFilter:
        if self.groups is None:
            groups = other.groups
        elif other.groups is None:
            groups = self.groups
        else:
            groups = self.groups & other.groups
        return DocFilter(
            groups,
            _pick(max, self.lo, other.lo),
            _pick(min, self.hi, other.hi),
            self.flags | other.flags,
            self.not_flags | other.not_flags,
        )

    def is_leaf(self) -> bool:
        return True

    def field(self) -> None:
        return None

    def copy(self) -> DocFilter:
        return DocFilter(self.groups, self.lo, self.hi, self.flags, self.not_flags)

    def with_boost(self, boost: float) -> DocFilter:
        return self

    def normalize(self) -> wquery.Query:
        return self

    def estimate_size(self, ixreader: Any) -> int:
        return ixreader.doc_count_all()

    def estimate_min_size(self, ixreader: Any) -> int:
        return 0

    def docs_in(self, reader: Any) -> array:
        """Sorted docnums of one segment that pass."""
        data = _segment_data(reader)
        allowed, excluded = data.select(reader, self)
        if allowed is not None:
            return allowed
        return array("i", (d for d in range(data.doccount) if d not in excluded))

    def matcher(self, searcher: Any, context: Any = None) -> Matcher:
        docs = self.docs_in(searcher.reader())
        return _DocsMatcher(docs) if len(docs) else NullMatcher()

    def docs(self, searcher: Any) -> Iterator[int]:
        return iter(self.docs_in(searcher.reader()))


class Filtered(wquery.Query):
    """``query`` restricted to the documents of ``filter``; scores are the query's.

    (Whoosh's Require matcher trips over its own assertion when block-quality skipping
    lands on a match, so this has its own matcher.)
    """

    boost = 1.0

    def __init__(self, query: wquery.Query, filter: DocFilter) -> None:  # noqa: A002
        self.query = query
        self.filter = filter

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Filtered)
            and self.query == other.query
            and self.filter == other.filter
        )

    def __hash__(self) -> int:
        return hash((self.query, self.filter))

    def __repr__(self) -> str:
        return f"Filtered({self.query!r}, {self.filter!r})"

    def __str__(self) -> str:
        return f"{self.query} WHERE {self.filter}"

    def is_leaf(self) -> bool:
        return False

    def children(self) -> list[wquery.Query]:
        return [self.query]

    def apply(self, fn: Callable[[wquery.Query], wquery.Query]) -> Filtered:
        return Filtered(fn(self.query), self.filter)

    def field(self) -> None:
        return None

    def estimate_size(self, ixreader: Any) -> int:
        return self.query.estimate_size(ixreader)

    def estimate_min_size(self, ixreader: Any) -> int:
        return 0

    def matcher(self, searcher: Any, context: Any = None) -> Matcher:
        docs = self.filter.docs_in(searcher.reader())
        if not len(docs):
            return NullMatcher()
        inner = self.query.matcher(searcher, context)
        if not inner.is_active():
            return NullMatcher()
        return _FilteredMatcher(inner, docs)


class _FilteredMatcher(Matcher):
    """Leapfrogs a matcher with a sorted array of allowed docnums (skip_to both ways)."""

    def __init__(self, child: Matcher, docs: array, j: int = 0) -> None:
        self.child = child
        self.docs = docs
        self.j = j
        self._find()

    def _find(self) -> bool:
        """Move to the next allowed match; True if the child entered a new block."""
        child, docs = self.child, self.docs
        moved = False
        while child.is_active():
            target = child.id()
            j = self.j
            if j < len(docs) and docs[j] < target:
                j = self.j = bisect.bisect_left(docs, target, j)
            if j >= len(docs):
                self.j = j
                return moved
            if docs[j] == target:
                return moved
            moved = bool(child.skip_to(docs[j])) or moved
        return moved

    def is_active(self) -> bool:
        return self.child.is_active() and self.j < len(self.docs)

    def id(self) -> int:
        return self.child.id()

    def next(self) -> bool:
        moved = self.child.next()
        return self._find() or bool(moved)

    def skip_to(self, target: int) -> bool:
        if not self.is_active():
            raise ReadTooFar
        moved = self.child.skip_to(target)
        return self._find() or bool(moved)

    def all_ids(self) -> Iterator[int]:
        while self.is_active():
            yield self.child.id()
            self.next()

    def copy(self) -> _FilteredMatcher:
        return _FilteredMatcher(self.child.copy(), self.docs, self.j)

    def replace(self, minquality: float = 0) -> Matcher:
        if not self.is_active():
            return NullMatcher()
        child = self.child.replace(minquality)
        if not child.is_active():
            return NullMatcher()
        if child is not self.child:
            return _FilteredMatcher(child, self.docs, self.j)
        return self

    def supports(self, astype: str) -> bool:
        return self.child.supports(astype)

    def value(self) -> Any:
        return self.child.value()

    def value_as(self, astype: str) -> Any:
        return self.child.value_as(astype)

    def weight(self) -> float:
        return self.child.weight()

    def score(self) -> float:
        return self.child.score()

    def spans(self) -> list:
        return self.child.spans()

    def term(self) -> Any:
        return self.child.term()

    def children(self) -> list[Matcher]:
        return [self.child]

    def supports_block_quality(self) -> bool:
        return self.child.supports_block_quality()

    def max_quality(self) -> float:
        return self.child.max_quality()

    def block_quality(self) -> float:
        return self.child.block_quality()

    def skip_to_quality(self, minquality: float) -> int:
        skipped = self.child.skip_to_quality(minquality)
        self._find()
        return skipped

    def reset(self) -> None:
        self.child.reset()
        self.j = 0
        self._find()


def _pick(fn: Callable[[int, int], int], a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return fn(a, b)


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d")


class _DocsMatcher(Matcher):
    """A sorted array of docnums; scores 0 and skips by bisection."""

    def __init__(self, ids: array, i: int = 0) -> None:
        self._ids = ids
        self._i = i

    def is_active(self) -> bool:
        return self._i < len(self._ids)

    def id(self) -> int:
        return self._ids[self._i]

    def next(self) -> bool:
        self._i += 1
        return False

    def skip_to(self, target: int) -> None:
        if self._ids[self._i] < target:
            self._i = bisect.bisect_left(self._ids, target, self._i)

    def all_ids(self) -> Iterator[int]:
        return iter(self._ids[self._i :])

    def copy(self) -> _DocsMatcher:
        return _DocsMatcher(self._ids, self._i)

    def replace(self, minquality: float = 0) -> Matcher:
        return self if self.is_active() else NullMatcher()

    def supports(self, astype: str) -> bool:
        return False

    def weight(self) -> float:
        return 0.0

    def score(self) -> float:
        return 0.0

    def supports_block_quality(self) -> bool:
        return False

    def max_quality(self) -> float:
        return 0.0

    def block_quality(self) -> float:
        return 0.0

    def reset(self) -> None:
        self._i = 0

    def term(self) -> None:
        return None

    def value(self) -> None:
        return None

    def spans(self) -> list:
        return []
