"""The index schema: the fields of a post's document, the flags column, the default
fields and aliases of the query language, the codec, and the post key.
"""

from __future__ import annotations

import hashlib

from whoosh import columns as wcolumns
from whoosh import fields as wfields

from .analysis import MailTokenizer
from .codec import CompactCodec, CompactPositions

INDEX_FORMAT = 5  # bump when the schema or the analysis changes: indexes rebuild themselves


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


CODEC = CompactCodec(blocklimit=512)


def _key(post_id: str) -> bytes:
    """The index key of a post: a digest, since Exchange ids are 150 characters long."""
    return hashlib.blake2b(post_id.encode(), digest_size=8).digest()


def _thread_key(thread_id: str) -> int:
    """A post's thread in the index (results grouped by thread): a 64-bit digest."""
    return int.from_bytes(hashlib.blake2b(thread_id.encode(), digest_size=8).digest(), "big")
