"""Searching: :func:`search` runs a query against an archive's index and returns a page of
:class:`SearchHit` in :class:`SearchResults`.
"""

from __future__ import annotations

import collections
import contextlib
import heapq
import html as html_lib
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict, Unpack

from whoosh import query as wquery

from ..archive import Archive
from ..archive.queries import search as queries
from ..errors import GroupsyncError
from ..files import can_write
from .analysis import _TOKEN, fold
from .documents import _AttachmentText
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
    # the attachment the snippet comes from, when only an attachment matched
    in_attachment: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["parts"]
        return out


@dataclass(kw_only=True)
class _Page:
    """What a page of results says besides its entries: the query as asked and as run
    (``parsed``), how many match (``total``), the page and its order, how many changes the
    index is behind, and a correction of the query when nothing matched."""

    query: str
    parsed: str
    total: int
    offset: int
    limit: int
    sort: str
    behind: int = 0
    notes: list[str] = field(default_factory=list)
    suggestion: str | None = None


@dataclass(kw_only=True)
class SearchResults(_Page):
    """A page of hits. ``total`` counts every match."""

    hits: list[SearchHit]

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": [h.as_dict() for h in self.hits], "total": self.total}
        if self.suggestion:
            out["suggestion"] = self.suggestion
        return out


@dataclass
class ThreadHit:
    """One thread found: its best-matching post (``hit``, with the snippet), how many of
    its posts match, and when the newest of them was received."""

    hit: SearchHit
    matching_posts: int
    newest_match: str | None

    def as_dict(self) -> dict[str, Any]:
        post = self.hit.as_dict()
        return {
            "thread_id": post.pop("thread_id"),
            "conversation_id": post.pop("conversation_id"),
            "group_id": post.pop("group_id"),
            "group_name": post.pop("group_name"),
            "topic": post.pop("topic"),
            "matching_posts": self.matching_posts,
            "newest_match": self.newest_match,
            "best_post": post,
        }


@dataclass(kw_only=True)
class ThreadResults(_Page):
    """A page of threads. ``total`` counts the threads that match, ``posts`` their
    matching posts."""

    posts: int
    threads: list[ThreadHit]

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "value": [t.as_dict() for t in self.threads],
            "total": self.total,
            "posts": self.posts,
        }
        if self.suggestion:
            out["suggestion"] = self.suggestion
        return out


SORTS = ("relevance", "date")


class SearchOptions(TypedDict, total=False):
    """The keyword options of every search function, as :class:`SearchRequest` holds them."""

    limit: int
    offset: int
    group: str | None
    sort: str
    include_deleted: bool
    catch_up: bool | None
    progress: Progress | None


@dataclass(frozen=True)
class SearchRequest:
    """A query and its options, checked once and passed through every search function:
    ``limit`` and ``offset`` page the results; ``group`` (a name or id) narrows like
    ``group:``; ``catch_up`` and ``progress`` as :func:`search` says."""

    query: str
    limit: int = 20
    offset: int = 0
    group: str | None = None
    sort: str = "relevance"
    include_deleted: bool = False
    catch_up: bool | None = None
    progress: Progress | None = None

    def __post_init__(self) -> None:
        if self.sort not in SORTS:
            raise QueryError(f"sort is one of {', '.join(SORTS)}, not {self.sort!r}")
        if self.limit < 1 or self.offset < 0:
            raise QueryError("limit must be at least 1 and offset not negative")

    @property
    def end(self) -> int:
        """How many hits (or threads) the page needs ranked: those it skips, then its own."""
        return self.offset + self.limit


@dataclass
class _Source:
    """An archive to search, its index caught up as far as it may be (``label`` names it
    when several are searched together)."""

    label: str
    archive: Archive
    index_path: Path
    state: _State
    behind: int


@dataclass
class _Plan:
    """What every search needs: the request, the parsed query, its filter, the sources and
    the order."""

    request: SearchRequest
    parsed: Any
    filt: DocFilter | None
    sources: list[_Source]
    by_date: bool
    shown: str

    def page(self) -> dict[str, Any]:
        """The fields a page of results (posts or threads) takes from the plan."""
        notes = [(f"{s.label}: " if s.label else "")
                 + f"index is {s.behind} changes behind; run groupsync index"
                 for s in self.sources if s.behind]  # fmt: skip
        return {
            "query": self.request.query,
            "parsed": self.shown,
            "offset": self.request.offset,
            "limit": self.request.limit,
            "sort": "date" if self.by_date else "relevance",
            "behind": sum(s.behind for s in self.sources),
            "notes": notes,
        }


def _plan(
    archives: Sequence[tuple[str, Archive, str | Path]],
    request: SearchRequest,
    resolver: _Resolver,
) -> _Plan:
    """Parse the query (``group:`` resolved by ``resolver``) and catch each index up (see
    :func:`search`)."""
    parsed = parse_query(request.query, resolver)
    narrow = None if request.group is None else DocFilter(groups=resolver(request.group))
    sources = [_source(label, archive, Path(path), request)
               for label, archive, path in archives]  # fmt: skip
    filt, scoring, shown = _narrowed(parsed, narrow, request.include_deleted)
    return _Plan(request, parsed, filt, sources, request.sort == "date" or not scoring, shown)


def _source(label: str, archive: Archive, index_path: Path, request: SearchRequest) -> _Source:
    state, behind = _current_state(archive, index_path, request.catch_up, request.progress,
                                   label)  # fmt: skip
    return _Source(label, archive, index_path, state, behind)


def _current_state(
    archive: Archive, index_path: Path, catch_up: bool | None, progress: Progress | None,
    label: str = "",
) -> tuple[_State, int]:
    """The index's state, caught up with the archive first unless ``catch_up`` is False
    (when None: unless the archive was opened read-only) or the index folder cannot be
    written; and how many changes it is still behind."""
    if catch_up is None:
        catch_up = not getattr(archive, "readonly", False)
    catch_up = catch_up and can_write(index_path)
    state = _read_state(index_path)
    archive_seq = archive.change_seq()
    if state is None or state.format != INDEX_FORMAT or state.change_seq != archive_seq:
        if catch_up:
            update_index(archive, index_path, progress=progress)
            state = _read_state(index_path)
        elif state is None or state.format != INDEX_FORMAT:
            where = f" ({label})" if label else ""
            raise GroupsyncError(
                f"no usable search index at {index_path}{where}; run groupsync index"
            )
    assert state is not None
    return state, max(0, archive_seq - state.change_seq)


def _narrowed(
    parsed: Any, narrow: DocFilter | None, include_deleted: bool
) -> tuple[DocFilter | None, bool, str]:
    """The query's filter with ``narrow`` and the deleted posts' flag applied; whether the
    query scores at all; and the query as shown back to people."""
    filt = parsed.filter
    if narrow is not None:
        filt = narrow if filt is None else filt.intersect(narrow)
    if not include_deleted:
        hide = DocFilter(not_flags=FLAG_DELETED)
        filt = hide if filt is None else filt.intersect(hide)
    scoring = parsed.query is not None and _scores(parsed.query)
    shown = parsed.query if parsed.query is not None else filt
    if parsed.query is not None and filt is not None:
        shown = Filtered(parsed.query, filt)
    return filt, scoring, str(shown)


@contextlib.contextmanager
def _searching(
    archive: Archive, index_path: str | Path, query: str, options: SearchOptions
) -> Iterator[tuple[_Plan, _Source, Any]]:
    """One archive's plan, its source and its index's searcher, held under the index's lock."""
    plan = _plan([("", archive, index_path)], SearchRequest(query, **options), _Resolver(archive))
    source = plan.sources[0]
    engine = _engine(source.index_path, source.state)
    with engine.lock:
        yield plan, source, engine.current()


def search(
    archive: Archive, index_path: str | Path, query: str, **options: Unpack[SearchOptions]
) -> SearchResults:
    """Search the archive's posts; see the README for the query syntax. One hit per post
    (:func:`search_threads` groups them by thread). The options are :class:`SearchRequest`'s.

    The index is first caught up with the archive when the archive moved on (after a crash
    between a sync's database commit and its index commit, say), unless ``catch_up`` is
    False or (when None) the archive was opened read-only, or the index folder cannot be
    written (an evidence copy on a read-only mount): then the results say how many
    changes the index is behind. ``group`` (a name or id) narrows like ``group:``. When
    nothing matches, ``suggestion`` is the query with its words corrected from the index.
    """
    suggestion = None
    with _searching(archive, index_path, query, options) as (plan, source, searcher):
        offset, want = plan.request.offset, plan.request.end
        ranked, total, terms = _rank(searcher, plan.parsed.query, plan.filt, want, plan.by_date)
        seqs = ranked[offset:]
        if not total:
            suggestion = _suggest(searcher, plan.parsed.query, query)
    hits = _hits(archive, source.state, seqs, terms)
    return SearchResults(**plan.page(), total=total, hits=hits, suggestion=suggestion)


def search_threads(
    archive: Archive, index_path: str | Path, query: str, **options: Unpack[SearchOptions]
) -> ThreadResults:
    """:func:`search`, one entry per thread: its best post (by score, or the newest when
    sorted by date) with its snippet, how many of its posts match and the newest match's
    date. ``limit`` and ``offset`` count threads."""
    suggestion = None
    with _searching(archive, index_path, query, options) as (plan, source, searcher):
        offset, want = plan.request.offset, plan.request.end
        ranked, threads, posts, terms = _rank_threads(
            searcher, plan.parsed.query, plan.filt, want, plan.by_date
        )
        ranked = ranked[offset:]
        if not posts:
            suggestion = _suggest(searcher, plan.parsed.query, query)
    best = _hits(archive, source.state, [(ref, score) for ref, score, _n, _t in ranked], terms)
    found = [
        ThreadHit(hit, count, _iso(newest))
        for (_ref, _score, count, newest), hit in zip(
            ranked, _align(best, [ref[1] for ref, _s, _n, _t in ranked]), strict=True
        )
        if hit is not None
    ]
    return ThreadResults(**plan.page(), total=threads, posts=posts, threads=found,
                         suggestion=suggestion)  # fmt: skip


def _align(hits: list[SearchHit], keys: list[bytes]) -> list[SearchHit | None]:
    """The hits in the order of their post keys (a post gone from the archive: None)."""
    by_key = {_key(h.post_id): h for h in hits}
    return [by_key.get(k) for k in keys]


def _iso(epoch: int | None) -> str | None:
    if not epoch:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


def _rank_threads(
    searcher: Any, q: wquery.Query | None, filt: DocFilter | None, want: int, by_date: bool
) -> tuple[list[tuple[tuple[int, bytes], float | None, int, int]], int, int, frozenset[str]]:
    """The best ``want`` threads, each as its best post ((seq, key), score), its number of
    matching posts and its newest match's date; how many threads and posts matched; the
    words that matched.

    A thread ranks by its best post (highest score, or newest when ``by_date``). The top
    threads are found among the top posts, taking more posts until they hold ``want``
    threads: a thread's best post is in any top-k list that holds one of its posts.
    """
    matched: set[str] = set()
    segments = []
    for offset, found, data, leaf, words in _evaluate(searcher, q, filt):
        matched.update(words)
        if found:
            docs = list(found)
            threads = data.threads(leaf)
            tkeys = list(map(threads.__getitem__, docs))
            values = list(map(data.received.__getitem__, docs)) if by_date else list(found.values())
            segments.append((offset, docs, tkeys, values, data, leaf))
    counts: collections.Counter[int] = collections.Counter()
    for segment in segments:
        counts.update(segment[2])
    posts = sum(len(segment[1]) for segment in segments)
    want = min(want, len(counts))
    chosen: dict[int, tuple[Any, int, tuple[Any, Any, int]]] = {}  # thread: value, doc, where
    k = want * 4
    while want and len(chosen) < want:
        candidates = []
        for offset, docs, tkeys, values, data, leaf in segments:
            for d in _best_positions(values, k):
                candidates.append((values[d], -(offset + docs[d]), tkeys[d], data, leaf, docs[d]))
        candidates.sort(key=lambda c: (c[0], c[1]), reverse=True)
        chosen = {}
        for value, neg, tkey, data, leaf, doc in candidates:
            if tkey not in chosen:
                chosen[tkey] = (value, -neg, (data, leaf, doc))
                if len(chosen) == want:
                    break
        if len(candidates) >= posts:
            break
        k *= 4
    newest: dict[int, int] = {}
    if chosen:
        wanted = set(chosen)
        for _offset, docs, tkeys, _values, data, _leaf in segments:
            keep = list(map(wanted.__contains__, tkeys))
            received = data.received
            for d, t in zip(itertools.compress(docs, keep), itertools.compress(tkeys, keep),
                            strict=True):  # fmt: skip
                when = received[d]
                if when > newest.get(t, -1):
                    newest[t] = when
    out = []
    for tkey, (value, _global, (data, leaf, doc)) in chosen.items():
        ref = (data.seq[doc], data.key(leaf, doc))
        out.append((ref, None if by_date else value, counts[tkey], newest.get(tkey, 0)))
    return out, len(counts), posts, frozenset(matched)


def _best_positions(values: list[Any], k: int) -> list[int]:
    """Positions of the ``k`` largest values (ties at the threshold all kept)."""
    if len(values) <= k:
        return list(range(len(values)))
    threshold = _kth_largest(values, k)
    return list(itertools.compress(range(len(values)), map(threshold.__le__, values)))


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
    in_attachments = _InAttachments(archive)
    for (seq, key), score in seqs:
        found = rows.get(seq) or by_key.get(key)
        if found is not None:
            hits.append(_hit(found, score, terms, in_attachments))
    return hits


class _InAttachments:
    """A snippet from a post's attachments (their names, then their text), for a post
    that matched in neither its body nor its topic."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.extract = _AttachmentText(archive)

    def __call__(self, post_id: str, terms: frozenset[str]) -> tuple[str, list] | None:
        attachments = list(queries.live_attachments(self.archive, [post_id]))
        for _post, name, *_rest in attachments:
            if name and _snippet(name, terms):
                return name, []
        for _post, name, content_type, sha256, size in attachments:
            parts = _snippet(self.extract(name, content_type, sha256, size), terms)
            if parts:
                return name or "(no name)", parts
        return None


def _hit(
    row: tuple, score: float | None, terms: frozenset[str], in_attachments: _InAttachments
) -> SearchHit:
    (_seq, post_id, thread_id, conversation_id, group_id, group_name, topic, sender_name,
     sender_address, from_name, from_address, received, has_attachments, deleted_at,
     body_text) = row  # fmt: skip
    parts = _snippet(body_text or "", terms) or _snippet(topic or "", terms)
    attachment = None
    if not parts and has_attachments and terms:
        found = in_attachments(post_id, terms)
        if found is not None:
            attachment, inside = found
            parts = [(f"In attachment {attachment}" + (": " if inside else ""), False), *inside]
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
        in_attachment=attachment,
    )


def _suggest(searcher: Any, q: wquery.Query | None, text: str) -> str | None:
    """The query with each word that is in neither a body nor a topic replaced by the
    nearest word that is (Whoosh's spelling corrector: edit distance, then frequency)."""
    if q is None:
        return None
    reader = searcher.reader()
    words = {
        leaf.text
        for leaf in q.leaves()
        if isinstance(leaf, wquery.Term) and leaf.fieldname in _SPELLED
        and isinstance(leaf.text, str)
    }  # fmt: skip
    fixes: dict[str, str] = {}
    for word in sorted(words):
        if any((name, word) in reader for name in _SPELLED) or len(word) < 3:
            continue
        if any(c.isdigit() for c in word):  # a number or a code: no spelling to correct
            continue
        # Whoosh ranks every word within maxdist alike (then by frequency): one edit first
        for maxdist, name in itertools.product((1, 2), _SPELLED):
            found = searcher.corrector(name).suggest(word, limit=1, maxdist=maxdist, prefix=1)
            if found:
                fixes[word] = found[0]
                break
    if not fixes:
        return None
    out, last = [], 0
    for match in _TOKEN.finditer(text):
        fix = fixes.get(fold(match.group()))
        if fix is not None:
            out.append(text[last : match.start()] + fix)
            last = match.end()
    return "".join(out) + text[last:]


_SPELLED = ("body", "topic")


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
