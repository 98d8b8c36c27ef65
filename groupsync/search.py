"""Full-text search: a Whoosh index beside the archive that follows ``posts.change_seq``.

The only module that imports Whoosh (frozen upstream), so the engine can be swapped. ::

    archive (SQLite)                          index (<db>.whoosh/)
    posts.change_seq ──── update_index ────▶  one document per post: text fields analysed
      every insert, new version and           (folded, CJK by character), columns key (a
      tombstone takes a higher number         digest of the post id), seq, received, flags;
                                              no text stored. groupsync-index.json records
                                              the change_seq reflected, after the commit.
    search ◀──── seq of the top hits ───────  hits and snippets come from the archive
                                              (posts.change_seq is unique and indexed).

Catching up re-indexes every post whose ``change_seq`` is above the recorded one, so a
crash between the database commit and the index commit heals on the next run. Group
names are resolved against the archive at query time, so a renamed group needs nothing.

Three things make Whoosh fast enough for 100,000 posts: a codec whose posting blocks are
packed arrays (positions as occurrence keys), so an index is a third of the text; builders
that keep postings in arrays and run in parallel processes; and a block-at-a-time query
evaluator (:class:`_Bulk`) over Whoosh's parser, storage and BM25F, which Whoosh's own
per-document matchers only back up.
"""

from __future__ import annotations

import atexit
import bisect
import collections
import contextlib
import hashlib
import heapq
import html as html_lib
import io
import itertools
import json
import logging
import operator
import os
import pickle
import re
import shutil
import struct
import sys
import threading
import time
import unicodedata
import warnings
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from whoosh import columns as wcolumns
from whoosh import fields as wfields
from whoosh import index as windex
from whoosh import qparser
from whoosh import query as wquery
from whoosh import scoring as wscoring
from whoosh.analysis import Token, Tokenizer
from whoosh.codec.whoosh3 import (
    LENGTHS_COLUMN,
    WHOOSH3_HEADER_MAGIC,
    W3Codec,
    W3FieldWriter,
    W3LeafMatcher,
    W3PostingsWriter,
)
from whoosh.formats import Positions
from whoosh.matching import Matcher, NullMatcher, ReadTooFar
from whoosh.util.numeric import byte_to_length, length_to_byte

from .archive import Archive
from .errors import GroupsyncError
from .html import to_text

__all__ = [
    "CheckReport",
    "IndexReport",
    "QueryError",
    "SearchHit",
    "SearchResults",
    "check_index",
    "close_indexes",
    "index_path_for",
    "rebuild_index",
    "search",
    "update_index",
]

INDEX_FORMAT = 4  # bump when the schema or the analysis changes: indexes rebuild themselves
STATE_FILE = "groupsync-index.json"
ATTACHMENT_TEXT_CAP = 100_000  # characters of text indexed per attachment
ATTACHMENT_BYTES_CAP = 32 * 1024 * 1024  # larger attachments are not opened for text
SNIPPET_FRAGMENTS = 2
Progress = Callable[[dict[str, Any]], None]


class QueryError(GroupsyncError):
    """A search query that cannot be run: bad syntax, a date that is no date, no such group."""

    exit_code = 2


# -- text analysis ------------------------------------------------------------------------
#
# One tokenizer for every text field: words of letters and digits, single characters for
# Han, kana and Hangul (so a CJK word becomes a phrase of characters and is found without a
# dictionary), single emoji and symbols. Each token is lower-cased and accent-folded, so
# `resume` finds `résumé`. The folding of a token is cached: mail has a small vocabulary.

_CJK = (
    "\u2e80-\u2fdf\u3005\u3040-\u30ff\u3100-\u312f\u3130-\u318f\u31a0-\u31ff"
    "\u3400-\u4dbf\u4e00-\u9fff\ua960-\ua97f\uac00-\ud7ff\uf900-\ufaff\uff66-\uff9f"
    "\U00020000-\U0003134f"
)
_SYMBOLS = "\u2190-\u21ff\u2300-\u23ff\u25a0-\u27bf\u2b00-\u2bff\U0001f000-\U0001faff"
_TOKEN = re.compile(f"[{_CJK}]|[{_SYMBOLS}]|[^\\W_{_CJK}]+")
_EXTRA_FOLD = str.maketrans(
    {"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th",
     "ı": "i", "ħ": "h", "ŧ": "t", "ŋ": "n", "ĸ": "k"}
)  # fmt: skip
_FOLDED: dict[str, str] = {}


def fold(token: str) -> str:
    """A token as indexed: lower case, no accents, compatibility forms unified."""
    folded = _FOLDED.get(token)
    if folded is None:
        folded = token.lower()
        if not folded.isascii():
            decomposed = unicodedata.normalize("NFKD", folded)
            folded = "".join(c for c in decomposed if not unicodedata.combining(c))
            folded = unicodedata.normalize("NFC", folded.translate(_EXTRA_FOLD))
        if len(_FOLDED) > 500_000:
            _FOLDED.clear()
        _FOLDED[token] = folded
    return folded


def _nfc(text: str) -> str:
    if text.isascii() or unicodedata.is_normalized("NFC", text):
        return text
    return unicodedata.normalize("NFC", text)


def terms_of(text: str) -> list[str]:
    """The index terms of a text, in order (what every text field indexes)."""
    return [fold(t) for t in _TOKEN.findall(_nfc(text))]


class MailTokenizer(Tokenizer):
    """Whoosh's view of :func:`terms_of`, with positions and character offsets."""

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))

    def __call__(  # type: ignore[override]
        self,
        value: str,
        positions: bool = False,
        chars: bool = False,
        keeporiginal: bool = False,
        removestops: bool = True,
        start_pos: int = 0,
        start_char: int = 0,
        tokenize: bool = True,
        mode: str = "",
        **kwargs: Any,
    ) -> Iterator[Token]:
        token = Token(positions, chars, removestops=removestops, mode=mode, **kwargs)
        value = _nfc(value)
        if not tokenize:
            token.original = value
            token.text = "".join(fold(t) for t in re.split(r"(\W+)", value) if t)
            token.boost = 1.0
            token.stopped = False
            if positions:
                token.pos = start_pos
            if chars:
                token.startchar = start_char
                token.endchar = start_char + len(value)
            yield token
            return
        pos = start_pos
        for match in _TOKEN.finditer(value):
            raw = match.group()
            text = fold(raw)
            if not text:
                continue
            token.text = text
            token.boost = 1.0
            token.stopped = False
            if keeporiginal:
                token.original = raw
            if positions:
                token.pos = pos
                pos += 1
            if chars:
                token.startchar = start_char + match.start()
                token.endchar = start_char + match.end()
            yield token


MAX_POSITIONS = 65_000  # words indexed per field of a post (positions are 16-bit)
MAX_PHRASE = 500  # words in a phrase (keys shifted back by a word's offset stay in range)
_SHIFT = 16  # an occurrence key is docnum << 16 | position


class CompactPositions(Positions):
    """Positions as little-endian 16-bit integers (Whoosh pickles a list per posting).

    In a posting block they are stored as occurrence keys (see :func:`_pack_block`), so
    phrases are checked with set operations (see :class:`_Bulk`). A field keeps its first
    65,000 words.
    Indexing skips Whoosh's token objects and uses :func:`terms_of` directly.
    """

    def word_values(self, value, analyzer, **kwargs):  # type: ignore[no-untyped-def]
        boost = self.field_boost
        positions: dict[str, array] = {}
        terms = terms_of(value) if isinstance(value, str) else [fold(v) for v in value]
        for pos, term in enumerate(terms[:MAX_POSITIONS]):
            found = positions.get(term)
            if found is None:
                positions[term] = array("H", (pos,))
            else:
                found.append(pos)
        for term, poslist in positions.items():
            if term:
                yield term, len(poslist), len(poslist) * boost, _le(poslist).tobytes()

    def encode(self, poslist):  # type: ignore[no-untyped-def]
        return _le(array("H", poslist)).tobytes()

    def decode_positions(self, valuestring):  # type: ignore[no-untyped-def]
        return list(_unpacked("H", valuestring))

    def decode_frequency(self, valuestring):  # type: ignore[no-untyped-def]
        return len(valuestring) // 2

    def decode_weight(self, valuestring):  # type: ignore[no-untyped-def]
        return self.decode_frequency(valuestring) * self.field_boost


def _le(data: array) -> array:
    if sys.byteorder != "little":  # pragma: no cover - big-endian hosts
        data.byteswap()
    return data


# -- a compact posting block --------------------------------------------------------------
#
# Whoosh's W3 codec pickles each block of 128 postings as Python tuples: a float per weight,
# and every position list as a pickled bytes object (protocol 2 spells bytes as a call to
# _codecs.encode). This codec keeps W3's files, block headers and skipping, and writes the
# block data as packed arrays instead: ids as deltas, weights as bytes when they are whole
# frequencies, value lengths and the values joined. Decoding is array.frombytes (C speed).

_BLOCK_HEAD = struct.Struct("<HIccc")


def _smallest(values: Iterable[int]) -> str:
    top = max(values, default=0)
    return "B" if top < 0x100 else "H" if top < 0x10000 else "I"


def _packed(typecode: str, values: Iterable[Any]) -> bytes:
    data = array(typecode, values)
    if sys.byteorder != "little":  # pragma: no cover - big-endian hosts
        data.byteswap()
    return data.tobytes()


def _unpacked(typecode: str, data: bytes | memoryview) -> array:
    out = array(typecode)
    out.frombytes(data)
    if sys.byteorder != "little":  # pragma: no cover
        out.byteswap()
    return out


_PARTS = struct.Struct("<BI")
ZLIB_LEVEL = 3


def _pack_block(ids: array, weights: array, values: list[bytes], fmt: Any) -> bytes:
    """A block as two parts, compressed separately so that a search for documents reads
    only the first: (ids, weights) and the values (positions)."""
    deltas = [b - a for a, b in zip(ids, ids[1:], strict=False)]
    idcode = _smallest(deltas)
    if all(w == 1.0 for w in weights):
        wcode, wbytes = "0", b""
    elif all(w == int(w) and 0 <= w < 0x100 for w in weights):
        wcode, wbytes = "B", _packed("B", (int(w) for w in weights))
    else:
        wcode, wbytes = "f", _packed("f", weights)
    fixedsize = fmt.fixed_value_size()
    if not values:
        vcode, vbytes = "0", b""
    elif isinstance(fmt, CompactPositions):
        # every occurrence as docnum << 16 | position, delta-coded across the block:
        # a phrase search decodes a block into its keys with one accumulate()
        keys: list[int] = []
        for docnum, value in zip(ids, values, strict=True):
            keys.extend(map(operator.or_, itertools.repeat(docnum << _SHIFT),
                            _unpacked("H", value)))  # fmt: skip
        steps = list(map(operator.sub, keys[1:], keys[:-1]))
        kcode = "I" if max(steps, default=0) < 1 << 32 else "Q"
        vcode = "K"
        vbytes = kcode.encode() + struct.pack("<Q", keys[0]) + _packed(kcode, steps)
    elif fixedsize is not None and fixedsize > 0:
        vcode, vbytes = "=", b"".join(values)
    else:
        lengths = [len(v) for v in values]
        vcode = _smallest(lengths)
        vbytes = _packed(vcode, lengths) + b"".join(values)
    head = _BLOCK_HEAD.pack(len(ids), ids[0], idcode.encode(), wcode.encode(), vcode.encode())
    first = head + _packed(idcode, deltas) + wbytes
    flags = 0
    if len(first) >= 64:
        first, flags = zlib.compress(first, ZLIB_LEVEL), flags | 1
    if len(vbytes) >= 64:
        vbytes, flags = zlib.compress(vbytes, ZLIB_LEVEL), flags | 2
    return _PARTS.pack(flags, len(first)) + first + vbytes


def _parts(data: bytes | memoryview) -> tuple[bytes, Callable[[], bytes]]:
    flags, size = _PARTS.unpack_from(data)
    first = bytes(data[_PARTS.size : _PARTS.size + size])
    rest = data[_PARTS.size + size :]
    if flags & 1:
        first = zlib.decompress(first)

    def values() -> bytes:
        return zlib.decompress(rest) if flags & 2 else bytes(rest)

    return first, values


def _head(first: bytes) -> tuple[int, list[int], Any, bytes]:
    """Count, ids and weights (None when all are 1) from a block's first part; its vcode."""
    count, start, idcode, wcode, vcode = _BLOCK_HEAD.unpack_from(first)
    view = memoryview(first)
    pos = _BLOCK_HEAD.size
    code = idcode.decode()
    width = array(code).itemsize
    ids = list(itertools.accumulate(_unpacked(code, view[pos : pos + width * (count - 1)]),
                                    initial=start))  # fmt: skip
    pos += width * (count - 1)
    weights: Any = None
    if wcode == b"B":
        weights = _unpacked("B", view[pos : pos + count])
    elif wcode == b"f":
        weights = [int(w) for w in _unpacked("f", view[pos : pos + 4 * count])]
    return count, ids, weights, vcode


def _block_keys(data: bytes | memoryview) -> list[int]:
    """The occurrence keys (docnum << 16 | position) of a positional block's values."""
    kcode = bytes(data[:1]).decode()
    (first,) = struct.unpack_from("<Q", data, 1)
    return list(itertools.accumulate(_unpacked(kcode, data[9:]), initial=first))


def _unpack_raw(data: bytes | memoryview, with_values: bool) -> tuple[list[int], Any, Any]:
    """A block's ids, weights (None when all are 1) and, if asked, its values: the
    occurrence keys of a positional field, else the values joined."""
    first, values = _parts(data)
    count, ids, weights, vcode = _head(first)
    if not with_values or vcode == b"0":
        return ids, weights, None
    rest = values()
    if vcode == b"K":
        return ids, weights, _block_keys(rest)
    if vcode != b"=":
        rest = rest[array(vcode.decode()).itemsize * count :]
    return ids, weights, rest


def _unpack_block(data: bytes | memoryview, fixedsize: int | None) -> tuple[list[int], Any, Any]:
    """A block for Whoosh's matchers: ids, weights and one value per posting."""
    first, values = _parts(data)
    count, ids, weights, vcode = _head(first)
    weights = array("f", weights) if weights is not None else array("f", [1.0]) * count
    if vcode == b"0":
        return ids, weights, (None,) * count
    rest = values()
    if vcode == b"K":
        mask = (1 << _SHIFT) - 1
        grouped = itertools.groupby(_block_keys(rest), key=lambda k: k >> _SHIFT)
        out = tuple(_le(array("H", (k & mask for k in g))).tobytes() for _d, g in grouped)
        return ids, weights, out
    if vcode == b"=":
        size = fixedsize or 0
        return ids, weights, tuple(rest[i * size : (i + 1) * size] for i in range(count))
    code = vcode.decode()
    width = array(code).itemsize
    lengths = _unpacked(code, rest[: width * count])
    ends = list(itertools.accumulate(lengths, initial=width * count))
    return ids, weights, tuple(rest[a:b] for a, b in zip(ends, ends[1:], strict=False))


class _CompactPostingsWriter(W3PostingsWriter):
    def add_posting(
        self, id_: int, weight: float, vbytes: bytes, length: int | None = None
    ) -> None:
        if len(self._ids) >= self._blocklimit:
            self._write_block()
        self._ids.append(id_)
        self._weights.append(weight)
        if weight > self._maxweight:
            self._maxweight = weight
        if vbytes:
            self._values.append(vbytes)
        if length:
            if self._minlength is None or length < self._minlength:
                self._minlength = length
            if length > self._maxlength:
                self._maxlength = length

    def _write_block(self, last: bool = False) -> None:
        if not self._blockcount:
            self._postfile.write(WHOOSH3_HEADER_MAGIC)
        self._terminfo.add_block(self)
        databytes = _pack_block(self._ids, self._weights, self._values, self._format)
        ids = self._ids
        infobytes = pickle.dumps(
            (len(ids), ids[-1], self._maxweight, 0,
             length_to_byte(self._minlength), length_to_byte(self._maxlength)),
            2,
        )  # fmt: skip
        blocklength = len(infobytes) + len(databytes)
        self._postfile.write_int(-blocklength if last else blocklength)
        self._postfile.write(infobytes)
        self._postfile.write(databytes)
        self._blockcount += 1
        self._new_block()


class _CompactLeafMatcher(W3LeafMatcher):
    def _block_data(self) -> Any:
        return self._postfile.get(self._dataoffset, self._nextoffset - self._dataoffset)

    def _read_data(self) -> None:
        self._data = _unpack_block(self._block_data(), self._fixedsize)

    def _read_ids(self) -> None:
        if self._data is None:
            self._read_data()
        self._ids = self._data[0]

    def _read_weights(self) -> None:
        if self._data is None:
            self._read_data()
        self._weights = self._data[1]

    def _read_values(self) -> None:
        if self._data is None:
            self._read_data()
        self._values = self._data[2]

    def all_ids(self) -> Iterator[int]:
        while self.is_active():
            if self._ids is None:
                self._ids = _head(_parts(self._block_data())[0])[1]
            yield from self._ids[self._i :]
            self._next_block()

    def raw_block(self, with_values: bool = False) -> tuple[list[int], Any, Any]:
        """The current block whole: ids, weights (None when all 1) and, if asked, values."""
        return _unpack_raw(self._block_data(), with_values)


class _CompactFieldWriter(W3FieldWriter):
    def add_postings(self, schema: Any, lengths: Any, items: Iterable[tuple]) -> None:
        """Whoosh's loop, with each field's length column read once, not per posting."""
        last_field = last_text = None
        postings = lens = None
        for fieldname, btext, docnum, weight, value in items:
            if fieldname != last_field:
                if last_text is not None:
                    self.finish_term()
                if last_field is not None:
                    self.finish_field()
                self.start_field(fieldname, schema[fieldname])
                postings = self._postwriter
                lens = _lengths_column(lengths, fieldname) if lengths else b""
                last_field, last_text = fieldname, None
            if btext != last_text:
                if last_text is not None:
                    self.finish_term()
                self.start_term(btext)
                last_text = btext
            code = lens[docnum] if docnum < len(lens) else 0
            length = byte_to_length(code) if code else None
            postings.add_posting(docnum, weight, value or b"", length)
        if last_text is not None:
            self.finish_term()


def _lengths_column(perdoc: Any, fieldname: str) -> bytes:
    creader = perdoc._cached_reader(f"_{fieldname}_len", LENGTHS_COLUMN)
    if creader is None:
        return b""
    try:
        return bytes(creader._dbfile.get(creader._basepos, creader._count))
    except AttributeError:  # pragma: no cover - another column implementation
        return bytes(creader[d] for d in range(perdoc.doc_count_all()))


class CompactCodec(W3Codec):
    """W3 with compact posting blocks (recorded in each segment, so readers follow)."""

    def field_writer(self, storage: Any, segment: Any) -> Any:
        return _CompactFieldWriter(self, storage, segment)

    def postings_writer(self, dbfile: Any, byteids: bool = False) -> Any:
        if byteids:
            return super().postings_writer(dbfile, byteids)
        return _CompactPostingsWriter(
            dbfile,
            blocklimit=self._blocklimit,
            byteids=False,
            compression=self._compression,
            inlinelimit=self._inlinelimit,
        )

    def postings_reader(
        self, dbfile: Any, terminfo: Any, format_: Any, term: Any = None, scorer: Any = None
    ) -> Any:
        if terminfo.is_inlined():
            return super().postings_reader(dbfile, terminfo, format_, term, scorer)
        offset, length = terminfo.extent()
        return _CompactLeafMatcher(dbfile, offset, length, format_, term=term, scorer=scorer)


class MailText(wfields.TEXT):
    """A text field analysed by :func:`terms_of`, positions kept for phrases."""

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
# document of a post when it changes.
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
    received=wfields.COLUMN(wcolumns.NumericColumn("I")),
    flags=wfields.COLUMN(wcolumns.NumericColumn("B")),
    **{"from": _text_field()},
)
DEFAULT_FIELDS = ["topic", "body", "from", "filename", "attachment"]
FIELD_BOOSTS = {"topic": 2.0}
ALIASES = {"topic": ["subject"], "filename": ["file"], "category": ["categories"]}
CODEC = CompactCodec(blocklimit=512)


def _key(post_id: str) -> bytes:
    """The index key of a post: a digest, since Exchange ids are 150 characters long."""
    return hashlib.blake2b(post_id.encode(), digest_size=8).digest()


# -- paths and state ----------------------------------------------------------------------


def index_path_for(db_path: str | Path) -> Path:
    """Where the index of an archive lives by default: ``<db>.whoosh`` beside it."""
    return Path(f"{db_path}.whoosh")


@dataclass
class _State:
    change_seq: int = 0
    keep_deleted: bool = False
    format: int = INDEX_FORMAT
    built: str | None = None  # a new value per rebuild: open searchers notice the swap
    updated_at: str | None = None


def _read_state(index_path: Path) -> _State | None:
    try:
        data = json.loads((index_path / STATE_FILE).read_text())
        return _State(
            change_seq=int(data["change_seq"]),
            keep_deleted=bool(data.get("keep_deleted", False)),
            format=int(data.get("format", 0)),
            built=data.get("built"),
            updated_at=data.get("updated_at"),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_state(index_path: Path, state: _State) -> None:
    """Written to a temporary file and renamed, after the Whoosh commit it describes."""
    state.updated_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    target = index_path / STATE_FILE
    temp = index_path / f".{STATE_FILE}.{os.getpid()}.tmp"
    temp.write_text(json.dumps({"version": 1, **asdict(state)}, indent=1))
    os.replace(temp, target)


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

    @property
    def behind(self) -> int:
        return max(0, self.archive_seq - self.index_seq)

    @property
    def ok(self) -> bool:
        return self.exists and not (self.missing or self.stale or self.extra or self.duplicates)

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


# -- documents from the archive -----------------------------------------------------------

_POST_COLUMNS = """
    p.id, p.group_id, p.conversation_id, p.thread_id, p.changeKey, p.receivedDateTime,
    p.hasAttachments, p.categories, p.body_text, p.from_name, p.from_address,
    p.sender_name, p.sender_address, p.newParticipants, p.deleted_at, p.change_seq,
    t.topic, t.toRecipients, t.ccRecipients
"""


def _json_list(value: str | None) -> list[Any]:
    if not value:
        return []
    try:
        data = json.loads(value)
    except ValueError:
        return []
    return data if isinstance(data, list) else []


def _recipients(*values: str | None) -> str:
    parts = []
    for value in values:
        for recipient in _json_list(value):
            email = recipient.get("emailAddress") if isinstance(recipient, dict) else None
            email = email if isinstance(email, dict) else {}
            parts.extend(str(v) for v in (email.get("name"), email.get("address")) if v)
    return "\n".join(parts)


def _epoch(value: str | None) -> int:
    if not value:
        return 0
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return min(max(0, int(moment.timestamp())), 0xFFFFFFFF)  # the column is 32-bit
    except ValueError:
        return 0


class _AttachmentText:
    """Text of attachments by SHA-256, extracted once per run (many posts share files)."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.cache: dict[str, str] = {}

    def __call__(self, name: str | None, content_type: str | None, sha256: str | None,
                 size: int | None) -> str:
        if not sha256:
            return ""
        kind = _text_kind(name, content_type)
        if kind is None or (size or 0) > ATTACHMENT_BYTES_CAP:
            return ""
        key = f"{kind}:{sha256}"
        if key not in self.cache:
            if len(self.cache) > 2048:
                self.cache.clear()
            try:
                self.cache[key] = _extract(self.archive, kind, sha256)
            except GroupsyncError:
                self.cache[key] = ""
        return self.cache[key]


def _text_kind(name: str | None, content_type: str | None) -> str | None:
    ctype = (content_type or "").split(";")[0].strip().lower()
    suffix = Path(name or "").suffix.lower()
    if ctype == "application/pdf" or (not ctype and suffix == ".pdf"):
        return "pdf"
    if ctype in ("text/html", "application/xhtml+xml") or (
        not ctype and suffix in (".html", ".htm")
    ):
        return "html"
    if ctype.startswith("text/") or ctype in ("application/json", "application/xml") or (
        not ctype and suffix in (".txt", ".csv", ".md", ".json", ".xml", ".log", ".ics")
    ):
        return "text"
    return None


def _read_blob(archive: Archive, sha256: str, limit: int) -> bytes:
    out = bytearray()
    for chunk in archive.iter_blob(sha256):
        out += chunk
        if len(out) >= limit:
            break
    return bytes(out[:limit])


def _extract(archive: Archive, kind: str, sha256: str) -> str:
    if kind == "pdf":
        return _pdf_text(_read_blob(archive, sha256, ATTACHMENT_BYTES_CAP))
    raw = _read_blob(archive, sha256, ATTACHMENT_TEXT_CAP * 4)
    text = raw.decode("utf-8", errors="replace").lstrip("\ufeff")
    if kind == "html":
        text = to_text(text)
    return text[:ATTACHMENT_TEXT_CAP]


@contextlib.contextmanager
def _quiet_pypdf() -> Iterator[None]:
    logger = logging.getLogger("pypdf")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _pdf_text(data: bytes) -> str:
    """The text of a PDF, or "" when pypdf cannot read it (a broken PDF is skipped)."""
    try:
        from pypdf import PdfReader
    except ImportError:  # pragma: no cover - pypdf is a dependency
        return ""
    parts: list[str] = []
    length = 0
    with _quiet_pypdf():
        try:
            reader = PdfReader(io.BytesIO(data), strict=False)
            for page in reader.pages:
                text = page.extract_text() or ""
                parts.append(text)
                length += len(text)
                if length >= ATTACHMENT_TEXT_CAP:
                    break
        except Exception:  # noqa: BLE001 - anything a broken PDF makes pypdf raise
            pass
    return "\n".join(parts)[:ATTACHMENT_TEXT_CAP]


def _attachments_of(archive: Archive, post_ids: list[str] | None) -> dict[str, list[tuple]]:
    """Live attachments (name, contentType, sha256, size) of some posts, or of all."""
    sql = (
        "SELECT post_id, name, contentType, sha256, size FROM attachments "
        "WHERE deleted_at IS NULL"
    )
    out: dict[str, list[tuple]] = {}
    if post_ids is None:
        rows: Iterable[tuple] = archive.conn.execute(sql)
    else:
        rows = []
        for start in range(0, len(post_ids), 500):
            chunk = post_ids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            rows.extend(archive.conn.execute(f"{sql} AND post_id IN ({marks})", chunk))
    for post_id, *rest in rows:
        out.setdefault(post_id, []).append(tuple(rest))
    return out


def _document(row: tuple, attachments: list[tuple], extract: _AttachmentText) -> dict[str, Any]:
    (post_id, group_id, _conversation, _thread, _change_key, received, has_attachments,
     categories, body_text, from_name, from_address, sender_name, sender_address,
     new_participants, deleted_at, seq, topic, to_recipients, cc_recipients) = row  # fmt: skip
    flags = (FLAG_ATTACHMENT if has_attachments or attachments else 0) | (
        FLAG_DELETED if deleted_at else 0
    )
    people = [sender_name, sender_address, from_name, from_address]
    doc: dict[str, Any] = {
        "key": _key(post_id),
        "seq": int(seq),
        "group": group_id,
        "received": _epoch(received),
        "flags": flags,
        "body": body_text or "",
        "from": "\n".join(dict.fromkeys(p for p in people if p)),
    }
    if topic:
        doc["topic"] = topic
    to = _recipients(to_recipients, cc_recipients, new_participants)
    if to:
        doc["to"] = to
    cats = [str(c) for c in _json_list(categories) if c]
    if cats:
        doc["category"] = "\n".join(cats)
    if attachments:
        doc["filename"] = "\n".join(a[0] for a in attachments if a[0])
        texts = [extract(*a) for a in attachments]
        text = "\n".join(t for t in texts if t)
        if text:
            doc["attachment"] = text
    return doc


# -- writing ------------------------------------------------------------------------------
#
# Whoosh buffers every posting as a tuple in a sorting pool that spills to disk and merges
# runs in Python. _TermPool keeps the postings of a segment grouped by term in packed
# arrays instead (about 12 bytes a posting); a builder starts a new segment when it is
# full. A rebuild runs one builder per process; the parent reads the archive, sends
# batches of documents round-robin (each segment stays in group and date order) and
# writes the table of contents listing every builder's segments.

_LOCK = threading.Lock()
POOL_LIMIT = 192 * 1024 * 1024  # bytes of postings one builder holds before a new segment
BATCH = 256


class _TermPool:
    """A posting pool for one segment: per term, docnums, weights and joined values."""

    def __init__(self, tempstore: Any = None, segment: Any = None, **_kwargs: Any) -> None:
        self.terms: dict[tuple[str, bytes], tuple[array, array, bytearray, array]] = {}
        self.fieldnames: set[str] = set()
        self.size = 0

    def add(self, item: tuple[str, bytes, int, float, bytes | None]) -> None:
        fieldname, tbytes, docnum, weight, value = item
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

    def iter_postings(self) -> Iterator[tuple[str, bytes, int, float, bytes]]:
        for key in sorted(self.terms):
            fieldname, tbytes = key
            ids, weights, values, ends = self.terms[key]
            data = bytes(values)
            start = 0
            for docnum, weight, end in zip(ids, weights, ends, strict=True):
                yield fieldname, tbytes, docnum, weight, data[start:end]
                start = end

    def save(self) -> None:
        pass

    def cleanup(self) -> None:
        self.terms.clear()
        self.size = 0


def _segment_writer(ix: windex.Index, **kwargs: Any) -> Any:
    """A Whoosh segment writer with the compact codec and the packed pool."""
    from whoosh.writing import SegmentWriter

    # Not compound: Whoosh reads a compound segment's postings into a BytesIO copy (the
    # whole file in memory); separate files are read where they lie.
    writer = SegmentWriter(ix, codec=CODEC, compound=False, **kwargs)
    writer.pool = _TermPool()
    return writer


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
    merged, total = [], 0
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
    context = multiprocessing.get_context(method)
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
    where = "p.change_seq > ? AND p.change_seq <= ?"
    params: list[Any] = [state.change_seq, target]
    if keep != state.keep_deleted:
        where = f"({where}) OR p.deleted_at IS NOT NULL"
    rows = archive.conn.execute(
        f"SELECT {_POST_COLUMNS} FROM posts p LEFT JOIN threads t ON t.id = p.thread_id "
        f"WHERE {where} ORDER BY p.change_seq",
        params,
    ).fetchall()
    extract = _AttachmentText(archive)
    with _LOCK:
        ix = windex.open_dir(str(index_path))
        try:
            writer = _segment_writer(ix, timeout=60.0)
            try:
                live = [r[0] for r in rows if r[14] is None or keep]
                attachments = _attachments_of(archive, live)
                with writer.reader() as reader:
                    present = _docnums_by_key(reader, {_key(r[0]) for r in rows})
                for n, row in enumerate(rows, 1):
                    post_id, deleted = row[0], row[14] is not None
                    for docnum in present.get(_key(post_id), ()):
                        writer.delete_document(docnum)
                    if deleted and not keep:
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
    started = time.monotonic()
    target = archive.change_seq()
    index_path.parent.mkdir(parents=True, exist_ok=True)
    for stale in index_path.parent.glob(f"{index_path.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    temp = index_path.parent / f"{index_path.name}.tmp-{os.getpid()}"
    temp.mkdir()
    report = IndexReport(str(index_path), "rebuilt" if old else "created", 0, target)
    try:
        where = "p.change_seq <= ?" + ("" if keep else " AND p.deleted_at IS NULL")
        total = archive.conn.execute(
            f"SELECT count(*) FROM posts p WHERE {where}", (target,)
        ).fetchone()[0]
        attachments = _attachments_of(archive, None)
        extract = _AttachmentText(archive)
        rows = archive.conn.execute(
            f"SELECT {_POST_COLUMNS} FROM posts p LEFT JOIN threads t ON t.id = p.thread_id "
            f"WHERE {where} ORDER BY p.group_id, p.receivedDateTime, p.rowid",
            (target,),
        )

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

        ix = windex.create_in(str(temp), SCHEMA)
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
        exists=state is not None and windex.exists_in(str(index_path)),
        index_seq=state.change_seq if state else 0,
        archive_seq=archive.change_seq(),
    )
    keep = state.keep_deleted if state else False
    indexed: dict[bytes, list[tuple[int, bool]]] = {}
    if report.exists:
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
    rows = archive.conn.execute("SELECT id, change_seq, deleted_at IS NOT NULL FROM posts")
    for post_id, seq, deleted in rows:
        report.posts += 1
        found = indexed.pop(_key(post_id), None)
        if found and len(found) > 1:
            report.duplicates.append(post_id)
        if deleted and not keep:
            if found:
                report.extra.append(post_id)
        elif not found:
            report.missing.append(post_id)
        elif found[0] != (seq, bool(deleted)):
            report.stale.append(post_id)
    report.extra.extend(key.hex() for key in indexed)
    return report


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
        raise QueryError(f"'{words[0] if words[0] in ('AND', 'OR') else words[-1]}' "
                         "needs a term on each side")
    for match in re.finditer(r'(?:^|[\s(])-?(\w+):(?=\s|$|\))', text):
        raise QueryError(f"'{match.group(1)}:' needs a value")


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
    """Group names and ids of an archive, for ``group:`` and ``--group``."""

    def __init__(self, archive: Archive) -> None:
        self.groups = archive.conn.execute(
            "SELECT id, displayName, mailNickname, mail FROM groups"
        ).fetchall()

    def __call__(self, value: str) -> frozenset[str]:
        wanted = " ".join(terms_of(value))
        exact = set()
        partial = set()
        for group_id, name, nickname, mail in self.groups:
            if value == group_id:
                return frozenset([group_id])
            names = [" ".join(terms_of(v)) for v in (name, nickname, mail) if v]
            if wanted and wanted in names:
                exact.add(group_id)
            elif wanted and any(n.startswith(wanted) for n in names):
                partial.add(group_id)
        found = exact or partial
        if not found:
            raise QueryError(f"no group matches {value!r}")
        return frozenset(found)


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


@dataclass(frozen=True)
class _Parsed:
    query: wquery.Query | None
    filter: DocFilter | None


_PSEUDO_VALUE = re.compile(r'(?<![\w"])(after|before|group|has):(?!")([^\s()"]+)')
_WILDCARD = re.compile(r"(?:^|[\s(:])[*?]+(?=$|[\s)])")


def parse_query(text: str, groups: _Resolver) -> _Parsed:
    """Parse with Whoosh's parser, then check and rewrite what it made of our fields."""
    _check_syntax(text)
    if _WILDCARD.search(text):
        raise QueryError("a wildcard needs at least one letter before it, like budg*")
    # values of the pseudo fields are taken whole (dates have hyphens, names dots)
    text = _PSEUDO_VALUE.sub(r'\1:"\2"', text)
    try:
        q = _PARSER.parse(text)
    except Exception as ex:  # noqa: BLE001 - Whoosh's parser raises assorted errors
        raise QueryError(f"cannot parse the query: {ex}") from None
    q = _rewrite(q, groups).normalize()
    if q is wquery.NullQuery or isinstance(q, wquery.qcore._NullQuery):
        raise QueryError("the query has no words to search for")
    scoring, filt = _merge_filters(q)
    return _Parsed(scoring, filt)


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
        self._by_date: tuple[array, array] | None = None
        self._flagged: dict[int, frozenset[int]] = {}
        self._selected: dict[tuple, tuple[array | None, frozenset[int]]] = {}
        self._lengths: dict[tuple[str, int], array] = {}

    def key(self, reader: Any, docnum: int) -> bytes:
        if self._keys is None:
            self._keys = _load_bytes_column(reader, "key", 8)
        return self._keys[docnum * 8 : docnum * 8 + 8]

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
            docs = self._flagged[flag] = frozenset(
                d for d, f in enumerate(self.flags) if f & flag
            )
        return docs

    def dated(self, lo: int | None, hi: int | None) -> array:
        """Sorted docnums received in [lo, hi), by bisection over the date order."""
        if self._by_date is None:
            order = sorted(range(self.doccount), key=self.received.__getitem__)
            dates = array("I", map(self.received.__getitem__, order))
            self._by_date = dates, array("i", order)
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


# -- bulk evaluation ----------------------------------------------------------------------
#
# Whoosh walks posting lists one document at a time through a tree of Python matchers:
# fine for rare words, slow when a word is in most posts (3 µs a document and more). The
# common query shapes are evaluated here a whole posting block at a time instead, with
# C-speed builtins (array, map, set, dict): a query becomes {docnum: score} per segment.
# Scores are Whoosh's BM25F (same idf, average lengths and length bytes) summed the way its
# And/Or matchers sum them; a phrase is found by intersecting sets of (doc, position)
# keys. Anything else falls back to Whoosh's own matcher for that part of the query.

MAX_EXPANSION = 1024  # words a prefix, wildcard or fuzzy term may stand for


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

    def __init__(self, top: Any, leaf: Any) -> None:
        self.top = top
        self.leaf = leaf
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
            docs = q.docs_in(self.reader)
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
            if allowed is None:
                return dict(zip(ids_cached, scores, strict=True))
            members = allowed.members
            return {d: v for d, v in zip(ids_cached, scores, strict=True) if d in members}
        ids, tfs = self._postings(fieldname, text, allowed)
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
        """Documents with the words at consecutive positions: the set of (doc, start) keys
        of the first word, intersected with each next word's keys shifted back."""
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
        freq = self.reader.doc_frequency
        order = sorted(range(len(words)), key=lambda i: freq(fieldname, words[i]))
        starts: set[int] | None = None
        for i in order:
            narrow = allowed
            if starts is not None and len(starts) * 4 < self.doccount:
                narrow = _Allowed(set(map(operator.rshift, starts, _REPEAT_SHIFT)))
            found: set[int] = set()
            for keys in self._position_keys(fieldname, words[i], narrow):
                shifted = map(operator.sub, keys, itertools.repeat(i)) if i else keys
                if starts is None:
                    found.update(shifted)
                else:
                    found.update(starts.intersection(shifted))
            starts = found
            if not starts:
                return {}
        counts = collections.Counter(map(operator.rshift, starts or (), _REPEAT_SHIFT))
        if allowed is not None:
            members = allowed.members
            counts = collections.Counter({d: n for d, n in counts.items() if d in members})
        idf = sum(self.top.idf(fieldname, w) for w in words) / len(words)
        return self._scores(fieldname, list(counts), list(counts.values()), idf * boost)

    def _position_keys(
        self, fieldname: str, text: str, allowed: _Allowed | None
    ) -> Iterator[list[int]]:
        """Per block, the keys (docnum << 16 | position) of every occurrence of a term."""
        for ids, weights, keys in self._blocks(fieldname, text, allowed, with_values=True):
            if isinstance(keys, list):
                yield keys
            else:  # values of another codec: positions per posting, joined
                tfs = weights if weights is not None else itertools.repeat(1, len(ids))
                docs = itertools.chain.from_iterable(map(itertools.repeat, ids, tfs))
                yield list(map(operator.or_, map(operator.lshift, docs, _REPEAT_SHIFT),
                               _unpacked("H", keys)))  # fmt: skip

    def generic(self, q: wquery.Query, allowed: _Allowed | None) -> dict[int, float]:
        """Whoosh's own matcher, document by document (queries not handled above)."""
        m = q.matcher(self.leaf, self.leaf.context(needs_current=True))
        members = allowed.members if allowed is not None else None
        out: dict[int, float] = {}
        while m.is_active():
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
    its reader and the words matched (for highlighting)."""
    for leaf, offset in searcher.leaf_searchers():
        if leaf.reader().segment() is None:  # an index without documents
            continue
        bulk = _Bulk(searcher, leaf)
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


class _Engine:
    """An open index and its searcher, kept for the process and refreshed when the index
    moves on (a new commit, or a rebuild that swapped the folder)."""

    def __init__(self, path: Path, built: str | None) -> None:
        self.path = path
        self.built = built
        self.ix = windex.open_dir(str(path))
        self.searcher = self.ix.searcher()
        self.lock = threading.Lock()

    def current(self) -> Any:
        # Not Searcher.refresh(): it reuses readers by segment id, so it keeps a segment's
        # old deletions, and puts merged-away segments back.
        if self.ix.latest_generation() != self.searcher.reader().generation():
            self.searcher.close()
            self.searcher = self.ix.searcher()
        return self.searcher

    def close(self) -> None:
        self.searcher.close()
        self.ix.close()


_ENGINES: dict[str, _Engine] = {}
_ENGINES_LOCK = threading.Lock()


def _engine(index_path: Path, state: _State) -> _Engine:
    name = str(index_path.resolve())
    with _ENGINES_LOCK:
        engine = _ENGINES.get(name)
        if engine is not None and engine.built != state.built:
            engine.close()
            engine = None
        if engine is None:
            engine = _ENGINES[name] = _Engine(index_path, state.built)
        return engine


def close_indexes(index_path: str | Path | None = None) -> None:
    """Close the searchers kept open for the process (all, or one index's)."""
    with _ENGINES_LOCK:
        if index_path is None:
            _TERM_CACHE.clear()
        names = list(_ENGINES) if index_path is None else [str(Path(index_path).resolve())]
        for name in names:
            engine = _ENGINES.pop(name, None)
            if engine is not None:
                engine.close()


atexit.register(close_indexes)

SORTS = ("relevance", "date")
_HIT_SQL = """
    SELECT p.change_seq, p.id, p.thread_id, p.conversation_id, p.group_id, g.displayName,
        t.topic, p.sender_name, p.sender_address, p.from_name, p.from_address,
        p.receivedDateTime, p.hasAttachments, p.deleted_at, p.body_text
    FROM posts p LEFT JOIN threads t ON t.id = p.thread_id
    LEFT JOIN groups g ON g.id = p.group_id
"""


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
    False or (when None) the archive was opened read-only: then the results say how many
    changes the index is behind. ``group`` (a name or id) narrows like ``group:``.
    """
    if sort not in SORTS:
        raise QueryError(f"sort is one of {', '.join(SORTS)}, not {sort!r}")
    if limit < 1 or offset < 0:
        raise QueryError("limit must be at least 1 and offset not negative")
    index_path = Path(index_path)
    if catch_up is None:
        catch_up = not getattr(archive, "readonly", False)
    resolver = _Resolver(archive)
    parsed = parse_query(query, resolver)
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
    if group is not None:
        extra = DocFilter(groups=resolver(group))
        filt = extra if filt is None else filt.intersect(extra)
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
    for _key, (data, leaf), local, score in candidates[:want]:
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
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        for row in archive.conn.execute(f"{_HIT_SQL} WHERE p.change_seq IN ({marks})", chunk):
            rows[row[0]] = row
    unresolved = {key for (seq, key), _ in seqs if seq not in rows}
    by_key: dict[bytes, tuple] = {}
    if unresolved:  # the post changed after the index saw it (the index is behind)
        for row in archive.conn.execute(
            f"{_HIT_SQL} WHERE p.change_seq > ?", (state.change_seq,)
        ):
            key = _key(row[1])
            if key in unresolved:
                by_key[key] = row
    hits = []
    for (seq, key), score in seqs:
        row = rows.get(seq) or by_key.get(key)
        if row is not None:
            hits.append(_hit(row, score, terms))
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


SNIPPET_CHARS = 200


def _lead(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1].rstrip() + "…"


SNIPPET_CONTEXT = 60


def _snippet(text: str, terms: frozenset[str]) -> list[tuple[str, bool]]:
    """Up to two fragments of ``text`` around its first matches, as (text, matched) parts.

    Words are found with the index's own tokenizer and folding, so what is marked is what
    matched. (Whoosh's highlighter makes a token object of every word of every hit: half
    the time of a filtered search went there.)
    """
    if not terms or not text:
        return []
    text = _nfc(text)
    spans = [m.span() for m in _TOKEN.finditer(text) if fold(m.group()) in terms]
    if not spans:
        return []
    parts: list[tuple[str, bool]] = []
    i, last = 0, 0
    for n in range(SNIPPET_FRAGMENTS):
        if i >= len(spans):
            break
        first = spans[i][0]
        start = max(last, _word_start(text, first - SNIPPET_CONTEXT, first))
        limit = start + SNIPPET_CHARS
        if start > last or (n and start == last):
            parts.append((" … " if n else "…", False))
        position = start
        while i < len(spans) and (spans[i][1] <= limit or position == start):
            a, b = spans[i]
            if a > position:
                parts.append((text[position:a], False))
            parts.append((text[a:b], True))
            position = b
            i += 1
        end = _word_end(text, min(len(text), limit, position + SNIPPET_CONTEXT), position)
        if end > position:
            parts.append((text[position:end], False))
        last = end
    if last < len(text):
        parts.append(("…", False))
    return [(_SPACE.sub(" ", t), hit) for t, hit in parts if t]


def _word_start(text: str, at: int, before: int) -> int:
    """``at``, moved forward to the start of a word (but not past ``before``)."""
    if at <= 0:
        return 0
    space = text.find(" ", at, before)
    return space + 1 if space >= 0 else at


def _word_end(text: str, at: int, after: int) -> int:
    """``at``, moved back to the end of a word (but not before ``after``)."""
    if at >= len(text):
        return len(text)
    space = text.rfind(" ", after, at)
    return space if space > after else at


_SPACE = re.compile(r"\s+")
