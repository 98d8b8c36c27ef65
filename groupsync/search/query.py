"""The mail-client query language: parsed by Whoosh's parser, then ``group:``, ``after:``,
``before:`` and ``has:`` rewritten into :class:`~groupsync.search.filters.DocFilter`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from whoosh import qparser
from whoosh import query as wquery

from ..archive import Archive
from ..errors import GroupRefError, GroupsyncError
from ..groupref import resolve_group
from .filters import DocFilter
from .schema import (
    ALIASES,
    DEFAULT_FIELDS,
    FIELD_BOOSTS,
    FIELD_NAMES,
    FLAG_ATTACHMENT,
    SCHEMA,
    field_list,
)


class QueryError(GroupsyncError):
    """A search query that cannot be run: bad syntax, a date that is no date, no such group,
    or more than the limits below allow."""

    exit_code = 2


# Limits that keep a hostile query's work to a fraction of a second (README, "groupsync
# search", Limits). Whoosh's parser tries each of its patterns at every character of a word,
# so one long word alone took seconds of CPU before the length limit (docs/performance.md).
MAX_QUERY_CHARS = 1000
MAX_QUERY_WORDS = 50  # words and field:values; AND, OR, NOT and parentheses do not count
MAX_QUERY_DEPTH = 10  # nested parentheses
MAX_EXPANDING_TERMS = 4  # prefix (budg*), wildcard (b?dget) and fuzzy (budget~) terms
MAX_FUZZY_DISTANCE = 2  # budget~2 at most
_OPERATORS = frozenset({"AND", "OR", "NOT", "ANDNOT", "ANDMAYBE"})


# -- query parsing ------------------------------------------------------------------------


def _parser() -> qparser.QueryParser:
    parser = qparser.MultifieldParser(DEFAULT_FIELDS, SCHEMA, fieldboosts=FIELD_BOOSTS)
    parser.add_plugin(qparser.FuzzyTermPlugin())
    # "-word" excludes, but only at the start of a word: "follow-up" stays a phrase
    parser.add_plugin(qparser.PlusMinusPlugin(r"(?:(?<=[\s(])|^)\+", r"(?:(?<=[\s(])|^)-"))
    parser.add_plugin(qparser.FieldAliasPlugin(ALIASES))
    parser.remove_plugin_class(qparser.BoostPlugin)
    parser.remove_plugin_class(qparser.RangePlugin)
    return parser


_PARSER = _parser()
_PSEUDO = {"group", "after", "before", "has"}
_DATE = re.compile(r"^(\d{4})(?:[-/](\d{1,2})(?:[-/](\d{1,2}))?)?$")


def _check_limits(text: str) -> None:
    """Refuse, before any parsing, a query bigger than the documented limits, or one that is
    no Unicode text (bytes that were not UTF-8 on a command line arrive as lone surrogates,
    which the index cannot encode)."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise QueryError("the query is not valid UTF-8 text") from None
    if len(text) > MAX_QUERY_CHARS:
        raise QueryError(
            f"the query is {len(text):,} characters long; at most {MAX_QUERY_CHARS:,} are allowed"
        )
    words = [w for w in text.replace("(", " ").replace(")", " ").split() if w not in _OPERATORS]
    if len(words) > MAX_QUERY_WORDS:
        raise QueryError(f"the query has {len(words)} words; at most {MAX_QUERY_WORDS} are allowed")


def _check_syntax(text: str) -> None:
    if not text.strip():
        raise QueryError("empty query")
    if text.count('"') % 2:
        raise QueryError("unbalanced quotes in the query")
    depth = 0
    in_quotes = False
    for char in text:
        if char == '"':
            in_quotes = not in_quotes
        elif not in_quotes and char == "(":
            depth += 1
            if depth > MAX_QUERY_DEPTH:
                raise QueryError(f"parentheses nest at most {MAX_QUERY_DEPTH} deep in a query")
        elif not in_quotes and char == ")":
            depth -= 1
            if depth < 0:
                raise QueryError("a ')' without its '(' in the query")
    if depth:
        raise QueryError("a '(' without its ')' in the query")
    words = text.split()
    if words[0] in ("AND", "OR", "ANDNOT", "ANDMAYBE") or words[-1] in (
        "AND", "OR", "NOT", "ANDNOT", "ANDMAYBE"
    ):  # fmt: skip
        raise QueryError(
            f"'{words[0] if words[0] in ('AND', 'OR') else words[-1]}' needs a term on each side"
        )


# A colon outside quotes: after a word at the start of a term (a field, if a value follows
# without a space), or anywhere else (text: 10:30, https://).
_COLON = re.compile(r"(?P<field>(?:^|(?<=[\s(]))[+-]?[^\W\d]\w*):|:")


def _read_fields(text: str) -> str:
    """Only known fields are fields. ``name:value`` with a known name (any case) stays a
    field; ``word:`` followed by a space, a ``)`` or the end, a URL's ``https://`` and every
    other colon become text (``Re: upload``, ``Closes: #123``, ``note: foo`` search their
    words); an unknown ``name:value`` is an error listing the fields."""
    chunks = text.split('"')
    for n in range(0, len(chunks), 2):  # the even chunks are outside quotes
        chunk = chunks[n]
        quoted_next = n + 1 < len(chunks)

        def read(match: re.Match[str], chunk: str = chunk, quoted_next: bool = quoted_next) -> str:
            field = match.group("field")
            if field is None:
                return " "
            rest = chunk[match.end() : match.end() + 2]
            valued = quoted_next if not rest else not (rest[0].isspace() or rest[0] == ")")
            if not valued or rest == "//":
                return field + " "
            sign = field[0] if field[0] in "+-" else ""
            name = field[len(sign) :]
            if name.lower() not in FIELD_NAMES:
                shown = name if len(name) <= 40 else name[:39] + "…"
                raise QueryError(f"no field {shown}: in search; the fields are {field_list()}")
            return f"{sign}{name.lower()}:"

        chunks[n] = _COLON.sub(read, chunk)
    return '"'.join(chunks)


def _day(value: str, what: str) -> int:
    match = _DATE.match(value.strip())
    if not match:
        raise QueryError(f"{what}: wants a date like 2024-05-01 or 2024-05, not {value!r}")
    year, month, day = int(match.group(1)), int(match.group(2) or 1), int(match.group(3) or 1)
    try:
        return int(datetime(year, month, day, tzinfo=UTC).timestamp())
    except ValueError:
        raise QueryError(f"{what}: {value!r} is not a date") from None


class _Resolver:
    """``group:`` and ``--group`` values to group ids by the CLI's rule
    (:func:`groupsync.groupref.resolve_group`): a name that fits several groups is an
    error listing them, never their union."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive

    def __call__(self, value: str) -> frozenset[str]:
        try:
            return frozenset([resolve_group(self.archive, value)])
        except GroupRefError as ex:
            error = QueryError(str(ex))
            error.multiline = ex.multiline  # the candidates, one line each
            raise error from None


def _term_text(q: wquery.Query) -> str | None:
    if isinstance(q, wquery.Term):
        return str(q.text)
    if isinstance(q, wquery.Phrase):
        return " ".join(q.words)
    return None


def _rewrite(q: wquery.Query, groups: _Resolver) -> wquery.Query:
    """Turn the pseudo fields (group, after, before, has) into document filters."""
    name = getattr(q, "fieldname", None)
    if name in _PSEUDO:
        text = _term_text(q)
        if text is None:
            raise QueryError(f"{name}: takes a plain value (no wildcards or fuzziness)")
        if name == "group":
            return DocFilter(groups=groups(text))
        if name == "after":
            return DocFilter(lo=_day(text, "after"))
        if name == "before":
            return DocFilter(hi=_day(text, "before"))
        if text.lower() in ("attachment", "attachments", "attach", "file", "files"):
            return DocFilter(flags=FLAG_ATTACHMENT)
        raise QueryError(f"has: knows only has:attachment, not has:{text}")
    if q.is_leaf():
        return q
    return q.apply(lambda child: _rewrite(child, groups))


def _merge_filters(q: wquery.Query) -> tuple[wquery.Query | None, DocFilter | None]:
    """Split the top level into what scores and one filter (the AND of the filters)."""
    if isinstance(q, DocFilter):
        return None, q
    if not isinstance(q, wquery.And):
        return q, None
    scoring: list[wquery.Query] = []
    merged: DocFilter | None = None
    for child in q.subqueries:
        if isinstance(child, DocFilter):
            merged = child if merged is None else merged.intersect(child)
        else:
            scoring.append(child)
    if not scoring:
        return None, merged
    return (scoring[0] if len(scoring) == 1 else wquery.And(scoring)), merged


def _check_expanding(q: wquery.Query) -> None:
    """Prefix, wildcard and fuzzy terms each stand for up to ``MAX_EXPANSION`` words in
    every field searched: allow a few per query, not a long ``OR`` chain of them."""
    texts = set()
    for leaf in q.leaves():
        if isinstance(leaf, wquery.FuzzyTerm) and leaf.maxdist > MAX_FUZZY_DISTANCE:
            raise QueryError(f"a fuzzy term allows at most ~{MAX_FUZZY_DISTANCE} edits")
        if isinstance(leaf, (wquery.Prefix, wquery.Wildcard, wquery.FuzzyTerm)):
            texts.add((type(leaf).__name__, leaf.text))
    if len(texts) > MAX_EXPANDING_TERMS:
        raise QueryError(
            f"the query has {len(texts)} prefix, wildcard or fuzzy terms; at most "
            f"{MAX_EXPANDING_TERMS} are allowed"
        )


@dataclass(frozen=True)
class _Parsed:
    query: wquery.Query | None
    filter: DocFilter | None


_PSEUDO_VALUE = re.compile(r'(?<![\w"])(after|before|group|has):(?!")([^\s()"]+)')
_WILDCARD = re.compile(r"(?:^|[\s(:])[*?]+(?=$|[\s)])")


def parse_query(text: str, groups: _Resolver) -> _Parsed:
    """Parse with Whoosh's parser, then check and rewrite what it made of our fields."""
    _check_limits(text)
    _check_syntax(text)
    if _WILDCARD.search(text):
        raise QueryError("a wildcard needs at least one letter before it, like budg*")
    text = _read_fields(text)
    # values of the pseudo fields are taken whole (dates have hyphens, names dots)
    text = _PSEUDO_VALUE.sub(r'\1:"\2"', text)
    try:
        q = _PARSER.parse(text)
    except Exception as ex:  # noqa: BLE001 - Whoosh's parser raises assorted errors
        raise QueryError(f"cannot parse the query: {ex}") from None
    q = _rewrite(q, groups).normalize()
    if q is wquery.NullQuery or isinstance(q, wquery.qcore._NullQuery):
        raise QueryError("the query has no words to search for")
    _check_expanding(q)
    scoring, filt = _merge_filters(q)
    return _Parsed(scoring, filt)
