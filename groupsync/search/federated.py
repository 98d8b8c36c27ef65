"""Searching several archives at once (the shards of a tenant) with one ranking.

BM25F scores depend on collection statistics: a word's document frequency, the number of
documents and each field's average length. Each shard's index has its own, so scores
computed shard by shard do not compare, and their top 20 merged is not the top 20 of
the whole tenant. Here every shard is scored with the statistics of all of them summed
(what one index over every post would hold), through a stand-in for the searcher the
evaluator asks for them; then the shards' best hits are merged by score. A query shape
the evaluator hands to Whoosh's own matchers is scored with its shard's statistics.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Unpack

from ..archive import Archive
from ..ids import printable
from .api import (
    SearchHit,
    SearchOptions,
    SearchRequest,
    SearchResults,
    ThreadHit,
    ThreadResults,
    _hits,
    _iso,
    _Plan,
    _plan,
    _rank,
    _rank_threads,
    _Source,
)
from .query import QueryError, _Resolver
from .searchers import _engine

__all__ = ["ArchiveHit", "search_archives", "search_threads_archives"]


@dataclass
class ArchiveHit(SearchHit):
    """A hit and the archive (its label) it came from."""

    archive: str = ""


class _GlobalStats:
    """The collection statistics of several indexes together, as one index would have
    them (Whoosh's idf: ``log(N / (df + 1)) + 1``; average length: total / N)."""

    def __init__(self, searchers: list[Any]) -> None:
        self.searchers = searchers
        self.doccount = sum(s.doc_count_all() for s in searchers)
        self._idf: dict[tuple[str, Any], float] = {}
        self._avg: dict[str, float | None] = {}

    def idf(self, fieldname: str, text: Any) -> float:
        key = (fieldname, text)
        if key not in self._idf:
            df = sum(s.doc_frequency(fieldname, text) for s in self.searchers)
            self._idf[key] = math.log(self.doccount / (df + 1)) + 1
        return self._idf[key]

    def avg_field_length(self, fieldname: str, default: float | None = None) -> float | None:
        if fieldname not in self._avg:
            first = self.searchers[0]
            if not first.schema[fieldname].scorable:
                return default
            total = sum(s.field_length(fieldname) for s in self.searchers)
            self._avg[fieldname] = total / (self.doccount or 1)
        return self._avg[fieldname]


class _Scoped:
    """One shard's searcher as the evaluator sees it, answering for the collection."""

    def __init__(self, searcher: Any, stats: _GlobalStats) -> None:
        self.searcher = searcher
        self.stats = stats
        self.weighting = searcher.weighting

    def leaf_searchers(self) -> Any:
        return self.searcher.leaf_searchers()

    def idf(self, fieldname: str, text: Any) -> float:
        return self.stats.idf(fieldname, text)

    def avg_field_length(self, fieldname: str, default: float | None = None) -> float | None:
        return self.stats.avg_field_length(fieldname, default)


class _Resolvers:
    """``group:`` against every archive: the group is in one shard (or several copies)."""

    def __init__(self, archives: list[Archive]) -> None:
        self.resolvers = [_Resolver(a) for a in archives]

    def __call__(self, value: str) -> frozenset[str]:
        found: set[str] = set()
        first: QueryError | None = None
        for resolver in self.resolvers:
            try:
                found |= resolver(value)
            except QueryError as ex:
                if getattr(ex, "multiline", False):  # ambiguous inside one archive
                    raise
                first = first or ex
        if not found:
            assert first is not None
            raise first
        if len(found) > 1:
            raise QueryError(
                f"group {printable(value)} names different groups in different archives"
            )
        return frozenset(found)


def _plan_many(
    archives: Sequence[tuple[str, Archive, str | Path]], query: str, options: SearchOptions
) -> _Plan:
    if not archives:
        raise QueryError("no archive to search")
    request = SearchRequest(query, **options)
    resolvers = _Resolvers([a for _l, a, _p in archives])
    return _plan(archives, request, resolvers)  # type: ignore[arg-type]


@contextlib.contextmanager
def _scoped_searchers(sources: list[_Source]) -> Iterator[list[tuple[_Source, Any]]]:
    """Each source with a searcher scored by the statistics of all of them together."""
    engines = sorted(
        ((s, _engine(s.index_path, s.state)) for s in sources), key=lambda se: str(se[1].path)
    )
    with contextlib.ExitStack() as stack:
        for _s, engine in engines:  # always the same order: no lock-order deadlock
            stack.enter_context(engine.lock)
        searchers = [engine.current() for _s, engine in engines]
        stats = _GlobalStats(searchers)
        yield [(source, _Scoped(searcher, stats))
               for (source, _e), searcher in zip(engines, searchers, strict=True)]  # fmt: skip


def _labelled(hit: SearchHit, source: _Source) -> ArchiveHit:
    return ArchiveHit(**{**hit.__dict__, "archive": source.label})


def _order(merged: list[tuple[Any, Any]], by_date: bool, hit: Any) -> None:
    """Sort ``(score, item)`` pairs from several archives as one index would rank them:
    best score first (or newest first), ties by post id; ``hit(item)`` is its post."""
    if by_date:
        merged.sort(key=lambda si: hit(si[1]).post_id)
        merged.sort(key=lambda si: hit(si[1]).receivedDateTime or "", reverse=True)
    else:
        merged.sort(key=lambda si: (-(si[0] or 0.0), hit(si[1]).post_id))


def search_archives(
    archives: Sequence[tuple[str, Archive, str | Path]],
    query: str,
    **options: Unpack[SearchOptions],
) -> SearchResults:
    """Search ``(label, archive, index path)`` triples as one collection; hits are
    :class:`ArchiveHit`, scored with the statistics of all the indexes together.
    ``group`` (a name or id, in any of the archives) narrows like ``group:``."""
    plan = _plan_many(archives, query, options)
    offset, want = plan.request.offset, plan.request.end
    merged: list[tuple[Any, ArchiveHit]] = []
    total = 0
    with _scoped_searchers(plan.sources) as scoped:
        for source, searcher in scoped:
            ranked, found, terms = _rank(searcher, plan.parsed.query, plan.filt, want,
                                         plan.by_date)  # fmt: skip
            total += found
            for item in ranked:  # one by one: a post the index is behind on may be gone
                for hit in _hits(source.archive, source.state, [item], terms):
                    merged.append((item[1], _labelled(hit, source)))
    _order(merged, plan.by_date, lambda hit: hit)
    hits: list[SearchHit] = [hit for _score, hit in merged[offset:want]]
    return SearchResults(**plan.page(), total=total, hits=hits)


def search_threads_archives(
    archives: Sequence[tuple[str, Archive, str | Path]],
    query: str,
    **options: Unpack[SearchOptions],
) -> ThreadResults:
    """:func:`search_archives`, one entry per thread (as ``search_threads``). A thread
    lives in one archive (shards split by group), so each archive's best threads are
    ranked with the shared statistics and merged by their best post."""
    plan = _plan_many(archives, query, options)
    offset, want = plan.request.offset, plan.request.end
    merged: list[tuple[Any, ThreadHit]] = []
    threads = posts = 0
    with _scoped_searchers(plan.sources) as scoped:
        for source, searcher in scoped:
            ranked, found_threads, found_posts, terms = _rank_threads(
                searcher, plan.parsed.query, plan.filt, want, plan.by_date
            )
            threads += found_threads
            posts += found_posts
            for ref, score, count, newest in ranked:
                for hit in _hits(source.archive, source.state, [(ref, score)], terms):
                    merged.append((score, ThreadHit(_labelled(hit, source), count, _iso(newest))))
    _order(merged, plan.by_date, lambda thread: thread.hit)
    threads_page = [thread for _score, thread in merged[offset:want]]
    return ThreadResults(**plan.page(), total=threads, posts=posts, threads=threads_page)

