"""The block-at-a-time query evaluator (:class:`_Bulk`): a query becomes {docnum: score}
per segment, with Whoosh's BM25F, falling back to Whoosh's matchers for other shapes.
"""

from __future__ import annotations

import bisect
import collections
import itertools
import operator
import os
import threading
from array import array
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from whoosh import query as wquery
from whoosh import scoring as wscoring
from whoosh.util.numeric import byte_to_length

from .codec import _SHIFT, MAX_PHRASE, _CompactLeafMatcher
from .filters import DocFilter, Filtered, _segment_data, _SegmentData
from .query import QueryError
from .schema import PAIRS

# -- bulk evaluation ----------------------------------------------------------------------
#
# Whoosh walks posting lists one document at a time through a tree of Python matchers:
# fine for rare words, slow when a word is in most posts (docs/performance.md). The
# common query shapes are evaluated here a whole posting block at a time instead, with
# C-speed builtins (array, map, set, dict): a query becomes {docnum: score} per segment.
# Scores are Whoosh's BM25F (same idf, average lengths and length bytes) summed the way its
# And/Or matchers sum them; a phrase is found by intersecting sets of (doc, position)
# keys. Anything else falls back to Whoosh's own matcher for that part of the query.

MAX_EXPANSION = 1024  # words a prefix, wildcard or fuzzy term may stand for
# Postings one query may score, all its words, fields and segments together (a phrase's
# word positions count a quarter each, Whoosh's own matcher's documents four times: their
# cost per item differs so). Sized so that any query the parser's limits let through takes
# at most about 2 s of CPU on the benchmark VM (docs/performance.md, "Search limits").
# ``GROUPSYNC_SEARCH_MAX_POSTINGS`` sets it for a bigger archive on a faster machine.
MAX_POSTINGS = int(os.environ.get("GROUPSYNC_SEARCH_MAX_POSTINGS", "3500000"))


class _Budget:
    """The postings a query may still score, shared by every segment's evaluator."""

    def __init__(self, postings: int | None = None) -> None:
        self.left = MAX_POSTINGS if postings is None else postings
        self.spent = 0

    def spend(self, postings: int) -> None:
        self.spent += postings
        self.left -= postings
        if self.left < 0:
            raise QueryError(
                "the query would take too long: it matches too many posts in too many "
                "ways; use fewer words, rarer words, or longer prefixes"
            )


class _Allowed:
    """The documents a part of a query may match in one segment (sorted, and as a set)."""

    def __init__(self, docs: Iterable[int], is_sorted: bool = False) -> None:
        self.docs = docs if is_sorted and isinstance(docs, array) else array("i", sorted(docs))
        self._set: set[int] | frozenset[int] | None = None

    @property
    def members(self) -> set[int] | frozenset[int]:
        if self._set is None:
            self._set = set(self.docs)
        return self._set

    def any_between(self, after: int, upto: int) -> bool:
        docs = self.docs
        return bisect.bisect_right(docs, upto) > bisect.bisect_right(docs, after)

    def __len__(self) -> int:
        return len(self.docs)


class _Bulk:
    """Evaluates queries over one segment (``leaf``), with global statistics from ``top``."""

    def __init__(self, top: Any, leaf: Any, budget: _Budget | None = None) -> None:
        self.top = top
        self.leaf = leaf
        self.budget = budget or _Budget()
        self.reader = leaf.reader()
        self.schema = self.reader.schema
        self.doccount = self.reader.doc_count_all()
        self.matched: set[str] = set()  # words to highlight (not those under a NOT)
        self._negated = 0
        self._bm25 = top.weighting if isinstance(top.weighting, wscoring.BM25F) else None

    # -- dispatch --

    def run(self, q: wquery.Query, allowed: _Allowed | None) -> dict[int, float]:
        if allowed is not None and not len(allowed):
            return {}
        boost = getattr(q, "boost", 1.0)
        if isinstance(q, wquery.Term):
            return self.term(q.fieldname, q.text, boost, allowed)
        if isinstance(q, wquery.Phrase) and q.slop == 1:
            return self.phrase(q.fieldname, list(q.words), boost, allowed)
        if isinstance(q, DocFilter):
            docs: Iterable[int] = q.docs_in(self.reader)
            if allowed is not None:
                docs = [d for d in docs if d in allowed.members]
            return dict.fromkeys(docs, 0.0)
        if isinstance(q, Filtered):
            docs = self.run(q.filter, allowed)
            return self.run(q.query, _Allowed(docs))
        if isinstance(q, (wquery.Prefix, wquery.Wildcard, wquery.FuzzyTerm)):
            return self.expanded(q, boost, allowed)
        if isinstance(q, wquery.And):
            return _boosted(self.conjunction(list(q.subqueries), allowed), boost)
        if isinstance(q, wquery.Or) and not isinstance(q, wquery.DisjunctionMax):
            return _boosted(self.disjunction(list(q.subqueries), allowed), boost)
        if isinstance(q, wquery.AndNot):
            positive = self.run(q.a, allowed)
            if not positive:
                return positive
            negative = self.negated(q.b, self._narrow(positive, allowed))
            return {d: v for d, v in positive.items() if d not in negative}
        if isinstance(q, wquery.Not):
            negative = self.negated(q.query, allowed)
            docs = allowed.docs if allowed is not None else range(self.doccount)
            return {d: 1.0 for d in docs if d not in negative}
        if isinstance(q, wquery.Require):
            required = self.run(q.b, allowed)
            return self.run(q.a, self._narrow(required, allowed)) if required else {}
        if isinstance(q, wquery.AndMaybe):
            base = self.run(q.a, allowed)
            if not base:
                return base
            extra = self.run(q.b, self._narrow(base, allowed))
            return {d: v + extra.get(d, 0.0) for d, v in base.items()}
        if isinstance(q, wquery.Every) and q.fieldname in (None, "", "*"):
            docs = allowed.docs if allowed is not None else range(self.doccount)
            return dict.fromkeys(docs, 1.0)
        if q is wquery.NullQuery or isinstance(q, wquery.qcore._NullQuery):
            return {}
        return self.generic(q, allowed)

    def negated(self, q: wquery.Query, allowed: _Allowed | None) -> dict[int, float]:
        self._negated += 1
        try:
            return self.run(q, allowed)
        finally:
            self._negated -= 1

    def _narrow(self, docs: dict[int, float], allowed: _Allowed | None) -> _Allowed | None:
        """Restrict the next part of a query to ``docs`` when that saves reading blocks."""
        if len(docs) * 4 < self.doccount:
            return _Allowed(docs)
        return allowed

    # -- compound queries --

    def conjunction(self, parts: list[wquery.Query], allowed: _Allowed | None) -> dict[int, float]:
        reader = self.reader
        parts = sorted(parts, key=lambda p: _estimate(p, reader))
        result: dict[int, float] | None = None
        for part in parts:
            found = self.run(part, allowed if result is None else self._narrow(result, allowed))
            result = found if result is None else _sum_common(result, found)
            if not result:
                return {}
        return result or {}

    def disjunction(self, parts: list[wquery.Query], allowed: _Allowed | None) -> dict[int, float]:
        found = [self.run(part, allowed) for part in parts]
        found = sorted((f for f in found if f), key=len, reverse=True)
        if not found:
            return {}
        result = found[0]  # a fresh dict from run(): extended in place
        for other in found[1:]:
            sums = _sum_common(result, other)
            result.update(other)
            result.update(sums)
        return result

    # -- terms --

    def _blocks(
        self, fieldname: str, text: str, allowed: _Allowed | None, with_values: bool = False
    ) -> Iterator[tuple[list[int], Any, Any]]:
        """The postings of a term, a block at a time, skipping blocks outside ``allowed``."""
        field = self.schema[fieldname]
        tbytes = field.to_bytes(text) if isinstance(text, str) else text
        if (fieldname, tbytes) not in self.reader:
            return
        m = self.reader._terms.matcher(fieldname, tbytes, field.format)
        if not isinstance(m, _CompactLeafMatcher):  # inlined, or written by another codec
            ids, weights, values = [], [], []
            while m.is_active():
                ids.append(m.id())
                weights.append(int(m.weight()))
                values.append(m.value() or b"")
                m.next()
            yield ids, weights, b"".join(values)
            return
        last = -1
        while m.is_active():
            top = m.block_max_id()
            if allowed is None or allowed.any_between(last, top):
                yield m.raw_block(with_values)
            last = top
            m._next_block()

    def _postings(
        self, fieldname: str, text: str, allowed: _Allowed | None
    ) -> tuple[list[int], list[int]]:
        """Docnums and frequencies of a term within ``allowed``."""
        ids_all: list[int] = []
        tfs_all: list[int] = []
        members = allowed.members if allowed is not None else None
        for ids, weights, _joined in self._blocks(fieldname, text, allowed):
            tfs: Iterable[int] = weights if weights is not None else itertools.repeat(1, len(ids))
            if members is not None:
                keep = list(map(members.__contains__, ids))
                ids = list(itertools.compress(ids, keep))
                tfs = itertools.compress(tfs, keep)
            ids_all.extend(ids)
            tfs_all.extend(tfs)
        return ids_all, tfs_all

    def _scores(
        self, fieldname: str, ids: list[int], tfs: list[int], factor: float
    ) -> dict[int, float]:
        """BM25F for each (doc, tf) as Whoosh computes it, looked up in a table by term
        frequency and length byte."""
        field = self.schema[fieldname]
        if self._bm25 is None or not field.scorable:
            return dict.fromkeys(ids, factor)
        data = _segment_data(self.reader)
        top = max(tfs, default=0)
        avgfl = self.top.avg_field_length(fieldname) or 1
        B = self._bm25._field_B.get(fieldname, self._bm25.B)  # noqa: N806 - BM25's names
        if top < 32:  # the usual case: a small table, scaled by idf once, no multiplications
            lengths = data.length_keys(self.reader, fieldname, 5)
            small = _bm25_small(avgfl, B, self._bm25.K1)
            scaled = list(map(operator.mul, small, itertools.repeat(factor)))
            keys = map(operator.add, tfs, map(lengths.__getitem__, ids))
            return dict(zip(ids, map(scaled.__getitem__, keys), strict=True))
        if top > 255:
            tfs = list(map(min, tfs, _REPEAT_255))
            top = 255
        lengths = data.length_keys(self.reader, fieldname)
        table = _bm25_table(avgfl, B, self._bm25.K1, top)
        scores = map(table.__getitem__, map(operator.add, tfs, map(lengths.__getitem__, ids)))
        return dict(zip(ids, map(operator.mul, scores, itertools.repeat(factor)), strict=True))

    def term(
        self, fieldname: str, text: str, boost: float, allowed: _Allowed | None
    ) -> dict[int, float]:
        if fieldname not in self.schema or not self.schema[fieldname].indexed:
            return {}
        if not self._negated:
            self.matched.add(text)
        factor = self.top.idf(fieldname, text) * boost
        segment = self.reader.segment()
        key = (segment.segment_id(), segment.deleted_count(), fieldname, text, factor)
        cached = _TERM_CACHE.get(key)
        if cached is not None:
            ids_cached, scores = cached
            self.budget.spend(len(ids_cached))
            if allowed is None:
                return dict(zip(ids_cached, scores, strict=True))
            members = allowed.members
            return {d: v for d, v in zip(ids_cached, scores, strict=True) if d in members}
        ids, tfs = self._postings(fieldname, text, allowed)
        self.budget.spend(len(ids))
        if not ids:
            return {}
        found = self._scores(fieldname, ids, tfs, factor)
        if allowed is None:
            _TERM_CACHE.put(key, (array("i", found.keys()), array("d", found.values())))
        return found

    def expanded(self, q: Any, boost: float, allowed: _Allowed | None) -> dict[int, float]:
        fieldname = q.fieldname
        if fieldname not in self.schema:
            return {}
        words = []
        if isinstance(q, wquery.FuzzyTerm):
            expansion: Iterable[Any] = _fuzzy_terms(
                self.reader, fieldname, q.text, q.maxdist, max(1, q.prefixlength)
            )
        else:
            expansion = q._btexts(self.reader)
        for btext in expansion:
            words.append(btext.decode("utf-8") if isinstance(btext, bytes) else btext)
            if len(words) > MAX_EXPANSION:
                raise QueryError(f"{q} stands for too many words; make it longer")
        parts = [wquery.Term(fieldname, w, boost=boost) for w in words]
        return self.disjunction(parts, allowed)

    def phrase(
        self, fieldname: str, words: list[str], boost: float, allowed: _Allowed | None
    ) -> dict[int, float]:
        """Documents with the words at consecutive positions, scored by how often (a pair
        of common words alone is a term's postings; see :meth:`_phrase_units`)."""
        if fieldname not in self.schema or not words:
            return {}
        if len(words) == 1:
            return self.term(fieldname, words[0], boost, allowed)
        if len(words) > MAX_PHRASE:
            raise QueryError(f"a phrase of more than {MAX_PHRASE} words")
        if not self._negated:
            self.matched.update(words)
        field = self.schema[fieldname]
        if not field.format.supports("positions"):
            raise QueryError(f"{fieldname}: does not keep word positions for phrases")
        units = self._phrase_units(fieldname, words)
        if len(units) == 1 and units[0][2] == 0:  # a pair of common words: its postings
            pairs, pair, _offset = units[0]
            ids, tfs = self._postings(pairs, pair, allowed)
            self.budget.spend(len(ids))
            found_docs, found_counts = ids, tfs
        else:
            starts = self._phrase_starts(units, allowed)
            if starts is None:
                return {}
            docs, counts = _runs(starts >> _SHIFT)
            found_docs, found_counts = docs.tolist(), counts.tolist()
            if allowed is not None:
                members = allowed.members
                keep = list(map(members.__contains__, found_docs))
                found_docs = list(itertools.compress(found_docs, keep))
                found_counts = list(itertools.compress(found_counts, keep))
        if not found_docs:
            return {}
        idf = sum(self.top.idf(fieldname, w) for w in words) / len(words)
        return self._scores(fieldname, found_docs, found_counts, idf * boost)

    def _phrase_units(self, fieldname: str, words: list[str]) -> list[tuple[str, str, int]]:
        """What a phrase reads, as (field, term, offset): each pair of neighbouring common
        words as its term in the field's pair field (see :class:`PairText`), each word in
        no such pair as itself. Both find exactly the phrase's occurrences."""
        pairs = PAIRS.get(fieldname)
        common: frozenset[str] = frozenset()
        if pairs is not None and pairs in self.schema:
            common = getattr(self.schema[pairs], "common", frozenset())
        units: list[tuple[str, str, int]] = []
        paired: set[int] = set()
        for i in range(len(words) - 1):
            if words[i] in common and words[i + 1] in common:
                units.append((pairs or "", f"{words[i]} {words[i + 1]}", i))
                paired.update((i, i + 1))
        units.extend((fieldname, w, i) for i, w in enumerate(words) if i not in paired)
        return units

    def _phrase_starts(
        self, units: list[tuple[str, str, int]], allowed: _Allowed | None
    ) -> np.ndarray | None:
        """The (doc, start) keys where every unit stands at its offset, or None: the
        rarest unit's keys, kept sorted, intersected with each next unit's keys shifted
        back by its offset. A unit's blocks are read only where candidates remain, and a
        term twice in the phrase is read once."""
        freq = self.reader.doc_frequency
        units = sorted(units, key=lambda u: freq(u[0], u[1]))
        starts: np.ndarray | None = None
        read: dict[tuple[str, str], np.ndarray] = {}
        for fieldname, term, offset in units:
            keys = read.get((fieldname, term))
            if keys is None:
                narrow = allowed
                if starts is not None and len(starts) * 4 < self.doccount:
                    docs = _runs(starts >> _SHIFT)[0].astype(np.int32)
                    narrow = _Allowed(array("i", docs.tobytes()), is_sorted=True)
                keys = read[(fieldname, term)] = self._position_keys(fieldname, term, narrow)
                self.budget.spend(len(keys) // 4)
            shifted = keys - offset if offset else keys
            starts = shifted if starts is None else _common(starts, shifted)
            if not len(starts):
                return None
        return starts

    def _position_keys(self, fieldname: str, text: str, allowed: _Allowed | None) -> np.ndarray:
        """The keys (docnum << 16 | position) of every occurrence of a term in the blocks
        that hold documents of ``allowed``, ascending."""
        parts: list[np.ndarray] = []
        field = self.schema[fieldname]
        tbytes = field.to_bytes(text)
        if (fieldname, tbytes) in self.reader:
            m = self.reader._terms.matcher(fieldname, tbytes, field.format)
            if isinstance(m, _CompactLeafMatcher):
                last = -1
                while m.is_active():
                    top = m.block_max_id()
                    if allowed is None or allowed.any_between(last, top):
                        keys = m.block_keys()
                        parts.append(keys if keys is not None else _listed_keys(*m.raw_block(True)))
                    last = top
                    m._next_block()
            else:  # inlined, or written by another codec: positions per posting
                while m.is_active():
                    positions = field.format.decode_positions(m.value())
                    parts.append((m.id() << _SHIFT) + np.array(positions, np.int64))
                    m.next()
        return np.concatenate(parts) if parts else _NO_KEYS

    def generic(self, q: wquery.Query, allowed: _Allowed | None) -> dict[int, float]:
        """Whoosh's own matcher, document by document (queries not handled above)."""
        m = q.matcher(self.leaf, self.leaf.context(needs_current=True))
        members = allowed.members if allowed is not None else None
        out: dict[int, float] = {}
        while m.is_active():
            self.budget.spend(4)
            d = m.id()
            if members is None or d in members:
                out[d] = m.score()
            m.next()
        return out


class _TermCache:
    """Recently scored terms of segments, as arrays (12 bytes a posting), least recently
    used out first: a long-running process (the Datasette plugin, paging through results)
    does not decode and score the same common word twice. ``GROUPSYNC_SEARCH_CACHE_MB``
    sets its size (default 64; 0 turns it off)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.entries: collections.OrderedDict[tuple, tuple[array, array]] = (
            collections.OrderedDict()
        )
        self.size = 0
        self.lock = threading.Lock()

    def get(self, key: tuple) -> tuple[array, array] | None:
        with self.lock:
            found = self.entries.get(key)
            if found is not None:
                self.entries.move_to_end(key)
            return found

    def put(self, key: tuple, value: tuple[array, array]) -> None:
        size = len(value[0]) * 12 + 200
        if size > self.limit // 4:
            return
        with self.lock:
            if key in self.entries:
                return
            self.entries[key] = value
            self.size += size
            while self.size > self.limit and self.entries:
                _old, (ids, _scores) = self.entries.popitem(last=False)
                self.size -= len(ids) * 12 + 200

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()
            self.size = 0


_TERM_CACHE = _TermCache(int(float(os.environ.get("GROUPSYNC_SEARCH_CACHE_MB", "64")) * 2**20))
_REPEAT_SHIFT = itertools.repeat(_SHIFT)
_NO_KEYS = np.zeros(0, np.int64)


def _common(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The values in both of two ascending arrays without repeats: each value of the
    shorter one looked up in the longer (a binary search, in C)."""
    if len(a) > len(b):
        a, b = b, a
    if not len(b):
        return b
    at = np.searchsorted(b, a)
    at[at == len(b)] = 0
    return a[b[at] == a]


def _runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of an ascending array and how often each comes (np.unique
    without its sort or hash: the array is sorted already)."""
    if not len(values):
        return values, values
    firsts = np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1])))
    return values[firsts], np.diff(np.append(firsts, len(values)))


def _listed_keys(ids: list[int], weights: Any, values: Any) -> np.ndarray:
    """Keys of a block of another positional encoding: positions per posting, joined."""
    if isinstance(values, list):
        return np.array(values, np.int64)
    tfs = weights if weights is not None else [1] * len(ids)
    docs = np.repeat(np.array(ids, np.int64) << _SHIFT, np.array(tfs, np.int64))
    return docs + np.frombuffer(values, "<u2").astype(np.int64)
_REPEAT_255 = itertools.repeat(255)
_REPEAT_8 = itertools.repeat(8)


def _fuzzy_terms(reader: Any, fieldname: str, text: str, maxdist: int, prefix: int) -> list[str]:
    """Words of a field within ``maxdist`` edits of ``text`` that share its first ``prefix``
    characters (Whoosh's own expansion compares every word of the field in Python)."""
    found = []
    lo, hi = len(text) - maxdist, len(text) + maxdist
    for btext in reader.expand_prefix(fieldname, text[:prefix]):
        word = btext.decode("utf-8") if isinstance(btext, bytes) else btext
        if lo <= len(word) <= hi and _within(text, word, maxdist):
            found.append(word)
    return found


def _within(a: str, b: str, limit: int) -> bool:
    """Damerau-Levenshtein distance (adjacent swaps) of a and b is at most ``limit``."""
    if a == b:
        return True
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = ca != cb
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return False
        previous2, previous = previous, current
    return previous[-1] <= limit


_BM25: dict[tuple[float, float, float], list[float]] = {}


def _bm25_table(avgfl: float, b: float, k1: float, top_tf: int) -> list[float]:
    """BM25 without its idf for key tf + (length byte << 8), rows filled up to ``top_tf``."""
    table = _BM25.get((avgfl, b, k1))
    if table is None:
        if len(_BM25) > 64:
            _BM25.clear()
        table = _BM25[(avgfl, b, k1)] = [0.0] * 0x10000
        table[0] = 0.0  # (tf 0 never occurs: the number of rows filled so far)
    filled = int(table[0])
    for tf in range(filled + 1, top_tf + 1):
        for code in range(256):
            fl = byte_to_length(code) if code else 1
            table[tf + (code << 8)] = (tf * (k1 + 1)) / (tf + k1 * ((1 - b) + b * fl / avgfl))
        table[0] = float(tf)
    return table


_BM25_SMALL: dict[tuple[float, float, float], list[float]] = {}


def _bm25_small(avgfl: float, b: float, k1: float) -> list[float]:
    """BM25 without its idf for key tf + (length byte << 5), for tf under 32."""
    table = _BM25_SMALL.get((avgfl, b, k1))
    if table is None:
        if len(_BM25_SMALL) > 64:
            _BM25_SMALL.clear()
        table = [0.0] * (32 << 8)
        for code in range(256):
            fl = byte_to_length(code) if code else 1
            norm = k1 * ((1 - b) + b * fl / avgfl)
            for tf in range(1, 32):
                table[tf + (code << 5)] = (tf * (k1 + 1)) / (tf + norm)
        _BM25_SMALL[(avgfl, b, k1)] = table
    return table


def _sum_common(
    a: dict[int, float], b: dict[int, float], common: Iterable[int] | None = None
) -> dict[int, float]:
    """{doc: a[doc] + b[doc]} for the documents in both, at C speed."""
    if common is None:  # dict_keys & builds a set of its left side: the smaller one
        common = b.keys() & a.keys() if len(b) < len(a) else a.keys() & b.keys()
    common = list(common)
    return dict(zip(common, map(operator.add, map(a.__getitem__, common),
                                map(b.__getitem__, common)), strict=True))  # fmt: skip


def _boosted(scores: dict[int, float], boost: float) -> dict[int, float]:
    if boost == 1.0:
        return scores
    return {d: v * boost for d, v in scores.items()}


def _estimate(q: wquery.Query, reader: Any) -> int:
    if isinstance(q, DocFilter):
        return reader.doc_count_all() // 2
    try:
        return int(q.estimate_size(reader))
    except Exception:  # noqa: BLE001 - only an ordering hint
        return reader.doc_count_all()


def _evaluate(
    searcher: Any, q: wquery.Query | None, filt: DocFilter | None
) -> Iterator[tuple[int, dict[int, float], _SegmentData, Any, set[str]]]:
    """Per segment: its docnum offset, {local docnum: score} of the matches, its columns,
    its reader and the words matched (for highlighting). A ``QueryError`` when the query
    needs more than ``MAX_POSTINGS``."""
    budget = _Budget()
    for leaf, offset in searcher.leaf_searchers():
        if leaf.reader().segment() is None:  # an index without documents
            continue
        bulk = _Bulk(searcher, leaf, budget)
        reader = leaf.reader()
        data = _segment_data(reader)
        allowed: _Allowed | None = None
        excluded: frozenset[int] = data.deleted or frozenset()
        if filt is not None:
            docs, excluded = data.select(reader, filt)
            allowed = _Allowed(docs, is_sorted=True) if docs is not None else None
        if q is None:
            everything = allowed.docs if allowed is not None else range(bulk.doccount)
            found = dict.fromkeys(everything, 0.0)
        else:
            found = bulk.run(q, allowed)
        if excluded and allowed is None:
            if len(excluded) * 4 < len(found):
                for d in excluded:
                    found.pop(d, None)
            else:
                found = {d: v for d, v in found.items() if d not in excluded}
        yield offset, found, data, reader, bulk.matched
