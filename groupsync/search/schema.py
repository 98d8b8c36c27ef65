"""The index schema: the fields of a post's document, the flags column, the default
fields and aliases of the query language, the codec, and the post key.
"""

from __future__ import annotations

import hashlib
import itertools
import operator
from collections.abc import Iterable

from whoosh import columns as wcolumns
from whoosh import fields as wfields

from .analysis import MailTokenizer, fold, terms_of
from .codec import (
    INLINE_LIMIT,
    MAX_POSITIONS,
    CompactCodec,
    CompactPositions,
    positional_values,
)

INDEX_FORMAT = 6  # bump when the schema or the analysis changes: indexes rebuild themselves


class MailText(wfields.TEXT):
    """A text field analysed by :func:`terms_of`, positions kept for phrases."""

    # Whoosh pickles this class into the index's table of contents: it keeps the name it
    # had before search.py became a package, so indexes open with either layout.
    __module__ = "groupsync.search"

    def __init__(self) -> None:
        super().__init__(analyzer=MailTokenizer(), phrase=True)
        self.format = CompactPositions()
        self.multitoken_query = "phrase"

    def index(self, value, **kwargs):  # type: ignore[no-untyped-def]
        for term, freq, weight, vbytes in self.format.word_values(value, self.analyzer):
            yield term.encode("utf-8"), freq, weight, vbytes


def _text_field() -> MailText:
    return MailText()


class PairText(wfields.TEXT):
    """Pairs of neighbouring words that are both among an index's commonest (``common``),
    as terms ``"of the"`` at the first word's position: a phrase of common words is then
    read from a pair's postings, not from millions of positions of each word (the idea of
    Lucene's CommonGrams, limited to pairs of two common words, which keeps the dictionary
    small). Not scored and not searched by people: the evaluator's phrases use it.
    """

    # Whoosh pickles this class (and ``common``) into the index's table of contents, so
    # an index keeps the words it was built with.
    __module__ = "groupsync.search"

    def __init__(self, common: Iterable[str] = ()) -> None:
        super().__init__(analyzer=MailTokenizer(), phrase=True)
        self.format = CompactPositions()
        self.scorable = False
        self.common = frozenset(common)

    def index(self, value, **kwargs):  # type: ignore[no-untyped-def]
        common = self.common
        if not common:
            return
        terms = terms_of(value) if isinstance(value, str) else [fold(v) for v in value]
        at, pairs = pairs_of(terms[:MAX_POSITIONS], common)
        for pair, freq, weight, value in positional_values(zip(at, pairs, strict=True)):
            yield pair.encode("utf-8"), freq, weight, value


def pairs_of(terms: list[str], common: frozenset[str]) -> tuple[list[int], list[str]]:
    """Where two neighbouring terms are both in ``common``, and those pairs as terms
    (``"of the"``): the one rule of both indexing paths (PairText's and the pool's)."""
    flags = list(map(common.__contains__, terms))
    at = list(itertools.compress(range(len(terms)), map(operator.and_, flags, flags[1:])))
    return at, [f"{terms[i]} {terms[i + 1]}" for i in at]


# The fields whose phrases use pairs of common words, and their pair fields.
PAIRS = {"body": "body_pairs", "attachment": "attachment_pairs"}
COMMON_WORDS = 48  # how many of an index's commonest words make pairs (docs/performance.md)
# The commonest words of English, in frequency order: the pairs of an archive with too
# little text to count its own.
_ENGLISH = (
    "the of and to a in is it you that he was for on are with as i his they be at one have "
    "this from or had by not word but what some we can out other were all there when up use "
    "your how said an each she which do their time if will way about many then them"
)
ENGLISH_COMMON = _ENGLISH.split()


def common_words(texts: Iterable[str], count: int = COMMON_WORDS) -> list[str]:
    """The ``count`` commonest words of ``texts`` (a sample of the archive), or of English
    when the sample is too small to tell (under 20,000 words)."""
    counts: dict[str, int] = {}
    total = 0
    for text in texts:
        for term in terms_of(text):
            counts[term] = counts.get(term, 0) + 1
            total += 1
    if total < 20_000:
        return ENGLISH_COMMON[:count]
    return sorted(counts, key=lambda t: (-counts[t], t))[:count]


def schema_with(common: Iterable[str]) -> wfields.Schema:
    """The schema with pair fields over the words ``common``: what a new index keeps."""
    schema = SCHEMA.copy()
    for name in PAIRS.values():
        schema.remove(name)
        schema.add(name, PairText(common))
    return schema


FLAG_ATTACHMENT = 1
FLAG_DELETED = 2

# Field names are what people type: from:, to:, topic:, category:, filename:. group:,
# after:, before: and has: are in the schema only so that the parser knows them; they
# become filters over the ``group`` postings and the ``received`` and ``flags`` columns.
# Nothing of the archive is stored: ``seq`` (the post's change_seq, unique and indexed in
# the archive) leads from a hit to its post; ``key`` (a digest of the post id) finds the
# document of a post when it changes; ``thread`` (a digest of the thread id) groups hits by
# thread.
SCHEMA = wfields.Schema(
    group=wfields.ID(),
    topic=_text_field(),
    body=_text_field(),
    attachment=_text_field(),
    filename=_text_field(),
    category=_text_field(),
    to=_text_field(),
    has=wfields.ID(),
    after=wfields.ID(),
    before=wfields.ID(),
    key=wfields.COLUMN(wcolumns.FixedBytesColumn(8, default=bytes(8))),
    seq=wfields.COLUMN(wcolumns.NumericColumn("I")),
    thread=wfields.COLUMN(wcolumns.NumericColumn("Q")),
    received=wfields.COLUMN(wcolumns.NumericColumn("I")),
    flags=wfields.COLUMN(wcolumns.NumericColumn("B")),
    body_pairs=PairText(),
    attachment_pairs=PairText(),
    **{"from": _text_field()},
)
DEFAULT_FIELDS = ["topic", "body", "from", "filename", "attachment"]
FIELD_BOOSTS = {"topic": 2.0}
ALIASES = {"topic": ["subject"], "filename": ["file"], "category": ["categories"]}

# The fields of the query language: the one list the parser, its errors and the docs use.
# Any other ``word:value`` is an error that lists these; ``word: value`` (a space after the
# colon) is text, so ``Re: upload`` and ``Closes: #123`` search their words.
FIELDS: dict[str, str] = {
    "from": "the sender's name or address",
    "to": "the thread's recipients",
    "topic": "the subject",
    "body": "the text of the post",
    "attachment": "the text inside attachments",
    "filename": "attachment names",
    "category": "Outlook categories",
    "group": "a group's name (a prefix will do) or id",
    "after": "received on or after a date (2024-05-01, 2024-05)",
    "before": "received before a date",
    "has": "has:attachment",
}
FIELD_NAMES: dict[str, str] = {
    **{name: name for name in FIELDS},
    **{alias: name for name, aliases in ALIASES.items() for alias in aliases},
}


def field_list() -> str:
    """The fields as an error or the docs name them: ``from:, to:, topic: (subject:), …``."""
    return ", ".join(
        f"{name}:" + (f" ({', '.join(a + ':' for a in ALIASES[name])})" if name in ALIASES else "")
        for name in FIELDS
    )


CODEC = CompactCodec(blocklimit=512, inlinelimit=INLINE_LIMIT)


def _key(post_id: str) -> bytes:
    """The index key of a post: a digest, since Exchange ids are 150 characters long."""
    return hashlib.blake2b(post_id.encode(), digest_size=8).digest()


def _thread_key(thread_id: str) -> int:
    """A post's thread in the index (results grouped by thread): a 64-bit digest."""
    return int.from_bytes(hashlib.blake2b(thread_id.encode(), digest_size=8).digest(), "big")
