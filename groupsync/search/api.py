"""Searching: :func:`search` runs a query against an archive's index and returns a page of
:class:`SearchHit` in :class:`SearchResults`.
"""

from __future__ import annotations

import heapq
import html as html_lib
import itertools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from whoosh import query as wquery

from ..archive import Archive
from ..archive.queries import search as queries
from ..errors import GroupsyncError
from ..files import can_write
from .evaluator import _evaluate
from .filters import DocFilter, Filtered
from .highlight import _lead, _snippet
from .indexer import Progress, update_index
from .query import QueryError, _Resolver, parse_query
from .schema import FLAG_DELETED, INDEX_FORMAT, _key
from .searchers import _engine
from .state import _read_state, _State

# -- searching ----------------------------------------------------------------------------


@dataclass
class SearchHit:
    """One post found. ``snippet`` is HTML-escaped text with matches in ``<mark>``;
    ``snippet_text`` the same text with matches between ``**``; ``parts`` the snippet as
    (text, matched) pairs, for front ends that mark matches their own way."""

    post_id: str
    thread_id: str
    conversation_id: str | None
    group_id: str
    group_name: str | None
    topic: str | None
    sender: dict[str, str | None]
    receivedDateTime: str | None  # noqa: N815 - Graph's name, as in the archive
    score: float | None
    snippet: str
    snippet_text: str
    has_attachments: bool
    deleted_at: str | None = None
    parts: list[tuple[str, bool]] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["parts"]
        return out


@dataclass
class SearchResults:
    """A page of hits. ``total`` counts every match; ``parsed`` is the query as run."""

    query: str
    parsed: str
    total: int
    offset: int
    limit: int
    sort: str
    hits: list[SearchHit]
    behind: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"value": [h.as_dict() for h in self.hits], "total": self.total}


SORTS = ("relevance", "date")


def search(
    archive: Archive,
    index_path: str | Path,
    query: str,
    *,
    limit: int = 20,
    offset: int = 0,
    group: str | None = None,
    sort: str = "relevance",
    include_deleted: bool = False,
    catch_up: bool | None = None,
    progress: Progress | None = None,
) -> SearchResults:
    """Search the archive's posts; see the README for the query syntax.

    The index is first caught up with the archive when the archive moved on (after a crash
    between a sync's database commit and its index commit, say), unless ``catch_up`` is
    False or (when None) the archive was opened read-only, or the index folder cannot be
    written (an evidence copy on a read-only mount): then the results say how many
    changes the index is behind. ``group`` (a name or id) narrows like ``group:``.
    """
    if sort not in SORTS:
        raise QueryError(f"sort is one of {', '.join(SORTS)}, not {sort!r}")
    if limit < 1 or offset < 0:
        raise QueryError("limit must be at least 1 and offset not negative")
    index_path = Path(index_path)
    if catch_up is None:
        catch_up = not getattr(archive, "readonly", False)
    catch_up = catch_up and can_write(index_path)
    resolver = _Resolver(archive)
    parsed = parse_query(query, resolver)
    narrow = None if group is None else DocFilter(groups=resolver(group))
    state = _read_state(index_path)
    archive_seq = archive.change_seq()
    notes: list[str] = []
    if state is None or state.format != INDEX_FORMAT or state.change_seq != archive_seq:
        if catch_up:
            update_index(archive, index_path, progress=progress)
            state = _read_state(index_path)
        elif state is None or state.format != INDEX_FORMAT:
            raise GroupsyncError(f"no usable search index at {index_path}; run groupsync index")
    assert state is not None
    behind = max(0, archive_seq - state.change_seq)
    if behind:
        notes.append(f"index is {behind} changes behind; run groupsync index")

    filt = parsed.filter
    if narrow is not None:
        filt = narrow if filt is None else filt.intersect(narrow)
    if not include_deleted:
        hide = DocFilter(not_flags=FLAG_DELETED)
        filt = hide if filt is None else filt.intersect(hide)

    engine = _engine(index_path, state)
    scoring = parsed.query is not None and _scores(parsed.query)
    by_date = sort == "date" or not scoring
    with engine.lock:
        searcher = engine.current()
        ranked, total, terms = _rank(searcher, parsed.query, filt, offset + limit, by_date)
        seqs = ranked[offset:]
    hits = _hits(archive, state, seqs, terms)
    shown = parsed.query if parsed.query is not None else filt
    if parsed.query is not None and filt is not None:
        shown = Filtered(parsed.query, filt)
    return SearchResults(
        query=query,
        parsed=str(shown),
        total=total,
        offset=offset,
        limit=limit,
        sort="date" if by_date else "relevance",
        hits=hits,
        behind=behind,
        notes=notes,
    )


class IndexNotCurrentError(GroupsyncError):
    """The index cannot say every post a query matches: missing, behind the archive, or
    built without the posts deleted upstream (which the archive still holds)."""


def check_query(archive: Archive, query: str) -> None:
    """Parse ``query`` as ``search`` would: a ``QueryError`` if it is not valid."""
    parse_query(query, _Resolver(archive))


def all_matching_posts(archive: Archive, index_path: str | Path, query: str) -> list[str]:
    """The id of every post ``query`` matches, deleted ones too, in no order: what a legal
    hold by query covers.

    Refuses (``IndexNotCurrentError``) an index that is missing, behind the archive, or
    built without deleted posts, since what it does not hold it cannot match; the caller
    catches it up first (``update_index(..., keep_deleted=True)``) when it may write.
    """
    index_path = Path(index_path)
    parsed = parse_query(query, _Resolver(archive))
    state = _read_state(index_path)
    if state is None or state.format != INDEX_FORMAT:
        raise IndexNotCurrentError(
            f"no usable search index at {index_path}: run groupsync index --keep-deleted-in-index"
        )
    behind = archive.change_seq() - state.change_seq
    if behind:
        raise IndexNotCurrentError(
            f"the search index at {index_path} is {behind} change(s) behind the archive: "
            "run groupsync index"
        )
    if not state.keep_deleted:
        raise IndexNotCurrentError(
            f"the search index at {index_path} leaves out posts deleted upstream: run "
            "groupsync index --keep-deleted-in-index"
        )
    engine = _engine(index_path, state)
    seqs: list[int] = []
    with engine.lock:
        searcher = engine.current()
        for _offset, found, data, _leaf, _words in _evaluate(searcher, parsed.query, parsed.filter):
            seqs.extend(data.seq[d] for d in found)
    return queries.post_ids_at(archive, seqs)


def _scores(q: wquery.Query) -> bool:
    """Whether a query has anything that scores (not only filters)."""
    if isinstance(q, DocFilter):
        return False
    if q.is_leaf():
        return True
    return any(_scores(child) for child in q.children())


def _rank(
    searcher: Any, q: wquery.Query | None, filt: DocFilter | None, want: int, by_date: bool
) -> tuple[list[tuple[tuple[int, bytes], float | None]], int, frozenset[str]]:
    """The best ``want`` matches as ((seq, key), score), how many matched in all, and the
    words that matched (for highlighting).

    Relevance: highest score first, then lowest docnum (as Whoosh orders ties). Date:
    newest first.
    """
    candidates: list[tuple[Any, Any, int, float | None]] = []
    total = 0
    matched: set[str] = set()
    for offset, found, data, leaf, words in _evaluate(searcher, q, filt):
        matched.update(words)
        total += len(found)
        if not found:
            continue
        if by_date:
            received = data.received
            dates = list(map(received.__getitem__, found))
            for d in _best(list(found), dates, want):
                candidates.append(((received[d], -(offset + d)), (data, leaf), d, None))
        else:
            for d in _best(list(found), list(found.values()), want):
                v = found[d]
                candidates.append(((v, -(offset + d)), (data, leaf), d, v))
    candidates.sort(key=lambda c: c[0], reverse=True)
    out = []
    for _sort_key, (data, leaf), local, score in candidates[:want]:
        out.append(((data.seq[local], data.key(leaf, local)), score))
    return out, total, frozenset(matched)


def _best(docs: list[int], keys: list[Any], want: int) -> list[int]:
    """The ``want`` docs with the largest keys (ties: lowest docnum), without sorting all."""
    if len(docs) > want * 8:
        threshold = _kth_largest(keys, want)
        keep = list(map(threshold.__le__, keys))
        docs = list(itertools.compress(docs, keep))
        keys = list(itertools.compress(keys, keep))
    ranked = sorted(zip(keys, docs, strict=True), key=lambda kd: (-kd[0], kd[1]))
    return [d for _k, d in ranked[:want]]


def _kth_largest(keys: list[Any], k: int) -> Any:
    return heapq.nlargest(k, keys)[-1]


def _hits(
    archive: Archive,
    state: _State,
    seqs: list[tuple[tuple[int, bytes], float | None]],
    terms: frozenset[str],
) -> list[SearchHit]:
    rows: dict[int, tuple] = {}
    wanted = [seq for (seq, _key), _score in seqs]
    for row in queries.hit_rows(archive, wanted):
        rows[row[0]] = row
    unresolved = {key for (seq, key), _ in seqs if seq not in rows}
    by_key: dict[bytes, tuple] = {}
    if unresolved:  # the post changed after the index saw it (the index is behind)
        for row in queries.hit_rows_after(archive, state.change_seq):
            key = _key(row[1])
            if key in unresolved:
                by_key[key] = row
    hits = []
    for (seq, key), score in seqs:
        found = rows.get(seq) or by_key.get(key)
        if found is not None:
            hits.append(_hit(found, score, terms))
    return hits


def _hit(row: tuple, score: float | None, terms: frozenset[str]) -> SearchHit:
    (_seq, post_id, thread_id, conversation_id, group_id, group_name, topic, sender_name,
     sender_address, from_name, from_address, received, has_attachments, deleted_at,
     body_text) = row  # fmt: skip
    parts = _snippet(body_text or "", terms) or _snippet(topic or "", terms)
    if not parts:
        parts = [(_lead(body_text or topic or ""), False)]
    sender = {"name": sender_name or from_name, "address": sender_address or from_address}
    return SearchHit(
        post_id=post_id,
        thread_id=thread_id,
        conversation_id=conversation_id,
        group_id=group_id,
        group_name=group_name,
        topic=topic,
        sender=sender,
        receivedDateTime=received,
        score=None if score is None else round(score, 4),
        snippet="".join(
            f"<mark>{html_lib.escape(t)}</mark>" if hit else html_lib.escape(t) for t, hit in parts
        ),
        snippet_text="".join(f"**{t}**" if hit else t for t, hit in parts),
        has_attachments=bool(has_attachments),
        deleted_at=deleted_at,
        parts=parts,
    )
