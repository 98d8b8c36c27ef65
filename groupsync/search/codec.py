"""The compact posting format: positions as 16-bit integers and posting blocks as packed
arrays, in a codec that otherwise keeps Whoosh's W3 files, block headers and skipping.
"""

from __future__ import annotations

import itertools
import operator
import struct
import sys
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import numpy as np
from whoosh.codec.whoosh3 import (
    LENGTHS_COLUMN,
    WHOOSH3_HEADER_MAGIC,
    W3Codec,
    W3FieldCursor,
    W3FieldWriter,
    W3LeafMatcher,
    W3PostingsWriter,
    W3TermInfo,
    W3TermsReader,
)
from whoosh.formats import Positions
from whoosh.reading import TermNotFound
from whoosh.system import pack_ushort
from whoosh.util.numeric import byte_to_length, length_to_byte

from .analysis import fold, terms_of

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

    # Whoosh pickles this class into the index's table of contents: it keeps the name it
    # had before search.py became a package, so indexes open with either layout.
    __module__ = "groupsync.search"

    def word_values(self, value, analyzer, **kwargs):  # type: ignore[no-untyped-def]
        terms = terms_of(value) if isinstance(value, str) else [fold(v) for v in value]
        return positional_values(enumerate(terms[:MAX_POSITIONS]), self.field_boost)

    def encode(self, poslist):  # type: ignore[no-untyped-def]
        return _le(array("H", poslist)).tobytes()

    def decode_positions(self, valuestring):  # type: ignore[no-untyped-def]
        return list(_unpacked("H", valuestring))

    def decode_frequency(self, valuestring):  # type: ignore[no-untyped-def]
        return len(valuestring) // 2

    def decode_weight(self, valuestring):  # type: ignore[no-untyped-def]
        return self.decode_frequency(valuestring) * self.field_boost


def positional_values(
    occurrences: Iterable[tuple[int, str]], boost: float = 1.0
) -> Iterator[tuple[str, int, float, bytes]]:
    """Whoosh's (term, frequency, weight, value) per term of (position, term) pairs in
    order, the value the positions as 16-bit integers."""
    positions: dict[str, array] = {}
    for pos, term in occurrences:
        found = positions.get(term)
        if found is None:
            positions[term] = array("H", (pos,))
        else:
            found.append(pos)
    for term, poslist in positions.items():
        if term:
            yield term, len(poslist), len(poslist) * boost, _le(poslist).tobytes()


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
    elif isinstance(fmt, CompactPositions) and _whole(weights, values):
        # each posting's positions as gaps from the previous one (the first from 0), in
        # bytes when they fit: mail repeats few words far apart, so most gaps are small
        # (a third of the size of the keys below on mail-like text; docs/performance.md)
        gaps: list[int] = []
        for value in values:
            positions = _unpacked("H", value)
            gaps.extend(map(operator.sub, positions, itertools.chain((0,), positions)))
        pcode = "B" if max(gaps, default=0) < 0x100 else "H"
        vcode, vbytes = "D", pcode.encode() + _packed(pcode, gaps)
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


def _whole(weights: array, values: list[bytes]) -> bool:
    """Whether each posting's weight is its number of positions (no field boost), so that
    a block of position gaps can be cut back into postings by the weights alone."""
    return all(w == len(v) // 2 for w, v in zip(weights, values, strict=True))


def _gap_keys(ids: list[int], weights: Any, data: bytes | memoryview) -> list[int]:
    """The occurrence keys (docnum << 16 | position) of a block of position gaps: the gaps
    summed over the block, less the sum before each posting, plus its docnum << 16."""
    gaps = _unpacked(bytes(data[:1]).decode(), data[1:])
    tfs: Iterable[int] = weights if weights is not None else itertools.repeat(1, len(ids))
    tfs = list(tfs)
    summed = list(itertools.accumulate(gaps, initial=0))
    starts = itertools.accumulate(tfs, initial=0)
    bases = map(summed.__getitem__, starts)  # the sum before each posting's first gap
    shifted = map(operator.lshift, ids, itertools.repeat(_SHIFT))
    offsets = map(operator.sub, itertools.repeat(0), bases)
    per_doc = map(operator.add, shifted, offsets)
    repeated = itertools.chain.from_iterable(map(itertools.repeat, per_doc, tfs))
    return list(map(operator.add, summed[1:], repeated))


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
    if vcode == b"D":
        return ids, weights, _gap_keys(ids, weights, rest)
    if vcode != b"=":
        rest = rest[array(vcode.decode()).itemsize * count :]
    return ids, weights, rest


_NP_TYPES: dict[bytes, np.dtype[Any]] = {
    code: np.dtype(kind)
    for code, kind in ((b"B", "u1"), (b"H", "<u2"), (b"I", "<u4"), (b"Q", "<u8"), (b"f", "<f4"))
}


def _summed(first: int, steps: np.ndarray) -> np.ndarray:
    """``first`` followed by the running sums of ``steps`` from it, as int64."""
    out = np.empty(len(steps) + 1, np.int64)
    out[0] = first
    np.cumsum(steps, out=out[1:])
    out[1:] += first
    return out


def block_keys_array(data: bytes | memoryview) -> np.ndarray | None:
    """The occurrence keys (docnum << 16 | position) of a positional block, ascending, as
    a numpy array: what a phrase intersects. The list code above decodes a key at a time
    in Python, a tenth of a microsecond each; a phrase of common words has millions of
    them (docs/performance.md). None when the block keeps no positions."""
    first, values = _parts(data)
    count, start, idcode, wcode, vcode = _BLOCK_HEAD.unpack_from(first)
    if vcode not in (b"K", b"D"):
        return None
    pos = _BLOCK_HEAD.size
    kind = _NP_TYPES[idcode]
    ids = _summed(start, np.frombuffer(first, kind, count - 1, pos))
    pos += kind.itemsize * (count - 1)
    tfs: np.ndarray | None = None
    if wcode in (b"B", b"f"):
        tfs = np.frombuffer(first, _NP_TYPES[wcode], count, pos).astype(np.int64)
    rest = values()
    if vcode == b"K":
        (key,) = struct.unpack_from("<Q", rest, 1)
        return _summed(key, np.frombuffer(rest, _NP_TYPES[rest[:1]], offset=9))
    gaps = np.frombuffer(rest, _NP_TYPES[rest[:1]], offset=1).astype(np.int64)
    if tfs is None:  # one position a posting: each gap is from 0
        return (ids << _SHIFT) + gaps
    summed = np.cumsum(gaps)
    firsts = np.cumsum(tfs) - tfs  # where each posting's gaps begin
    before = summed[firsts] - gaps[firsts]  # the sum before them
    return summed + np.repeat((ids << _SHIFT) - before, tfs)


def _unpack_block(data: bytes | memoryview, fixedsize: int | None) -> tuple[list[int], Any, Any]:
    """A block for Whoosh's matchers: ids, weights and one value per posting."""
    first, values = _parts(data)
    count, ids, weights, vcode = _head(first)
    weights = array("f", weights) if weights is not None else array("f", [1.0]) * count
    if vcode == b"0":
        return ids, weights, (None,) * count
    rest = values()
    if vcode in (b"K", b"D"):
        mask = (1 << _SHIFT) - 1
        keys = _block_keys(rest) if vcode == b"K" else _gap_keys(ids, _head(first)[2], rest)
        grouped = itertools.groupby(keys, key=lambda k: k >> _SHIFT)
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


# -- the terms dictionary ------------------------------------------------------------------
#
# W3 keeps a term's statistics in 23 fixed bytes plus 12 for where its postings are, and
# writes even a word of one posting as a block in the postings file (W3's inlining is never
# reached: its writer calls a method its term info does not have). Mail's long tail makes
# most of a dictionary such words. CompactTermInfo packs the statistics as varints and
# keeps the postings of a term of few posts inside its entry.

INLINE_LIMIT = 8  # a term of fewer postings keeps them in its dictionary entry


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# the varints of small numbers, made once: a rebuild writes a few million of them
_VARINTS = [_varint_bytes(n) for n in range(1 << 14)]


def _varint(value: int, out: bytearray) -> None:
    out += _VARINTS[value] if value < 0x4000 else _varint_bytes(value)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _number(value: float, flag: int, out: bytearray) -> int:
    """A weight as a varint when whole (the usual case), else a float; the flag if whole."""
    if value == int(value) and 0 <= value < 1 << 32:
        _varint(int(value), out)
        return flag
    out += struct.pack("<f", value)
    return 0


def _read_number(data: bytes, pos: int, whole: bool) -> tuple[float, int]:
    if whole:
        value, pos = _read_varint(data, pos)
        return float(value), pos
    return struct.unpack_from("<f", data, pos)[0], pos + 4


_INLINED, _WEIGHT_WHOLE, _MAXWEIGHT_WHOLE, _WEIGHTS_ONE, _WEIGHTS_WHOLE, _VALUES = (
    1, 2, 4, 8, 16, 32)  # fmt: skip


def term_entry(
    df: int,
    weight: float,
    shortest: int,
    longest: int,
    maxweight: float,
    minid: int | None,
    maxid: int | None,
    inlined: tuple[Any, Any, Any] | None,
    extent: tuple[int, int] = (0, 0),
) -> bytes:
    """A term's dictionary entry (:class:`CompactTermInfo`); ``shortest`` and ``longest``
    as Whoosh's length bytes; ``inlined`` the postings kept in it (ids, weights, values),
    else ``extent``, where its blocks are in the postings file."""
    out = bytearray(1)
    flags = 0
    _varint(df, out)
    flags |= _number(weight, _WEIGHT_WHOLE, out)
    out.append(shortest)
    out.append(longest)
    flags |= _number(maxweight, _MAXWEIGHT_WHOLE, out)
    _varint(0 if minid is None else minid + 1, out)
    _varint(0 if maxid is None else maxid + 1, out)
    if inlined is not None:
        flags |= _INLINED
        ids, weights, values = inlined
        for step in map(operator.sub, ids[1:], ids):
            _varint(step, out)
        if all(w == 1.0 for w in weights):
            flags |= _WEIGHTS_ONE
        elif all(w == int(w) and 0 <= w < 1 << 32 for w in weights):
            flags |= _WEIGHTS_WHOLE
            for w in weights:
                _varint(int(w), out)
        else:
            out += _packed("f", weights)
        if values:
            flags |= _VALUES
            for value in values:
                _varint(len(value), out)
                out += value
    else:
        _varint(extent[0], out)
        _varint(extent[1], out)
    out[0] = flags
    return bytes(out)


class CompactTermInfo(W3TermInfo):
    """W3's term info, packed (see above)."""

    _weight: float
    _df: int
    _minlength: int | None
    _maxlength: int
    _maxweight: float
    _minid: int | None
    _maxid: int | None
    _offset: int | None
    _length: int | None
    _inlined: tuple[tuple[int, ...], tuple[float, ...], Any] | None

    def to_bytes(self) -> bytes:
        return term_entry(
            self._df, self._weight,
            0 if self._minlength is None else length_to_byte(self._minlength),
            length_to_byte(self._maxlength), self._maxweight, self._minid, self._maxid,
            self._inlined, (self._offset or 0, self._length or 0),
        )  # fmt: skip

    @classmethod
    def from_bytes(cls, s: bytes) -> CompactTermInfo:
        data = bytes(s)
        info = cls()
        flags = data[0]
        info._df, pos = _read_varint(data, 1)
        info._weight, pos = _read_number(data, pos, bool(flags & _WEIGHT_WHOLE))
        info._minlength = byte_to_length(data[pos])
        info._maxlength = byte_to_length(data[pos + 1])
        info._maxweight, pos = _read_number(data, pos + 2, bool(flags & _MAXWEIGHT_WHOLE))
        minid, pos = _read_varint(data, pos)
        maxid, pos = _read_varint(data, pos)
        info._minid = minid - 1 if minid else None
        info._maxid = maxid - 1 if maxid else None
        if flags & _INLINED:
            ids = [info._minid or 0]
            for _ in range(info._df - 1):
                step, pos = _read_varint(data, pos)
                ids.append(ids[-1] + step)
            weights: list[float] = []
            if flags & _WEIGHTS_ONE:
                weights = [1.0] * info._df
            elif flags & _WEIGHTS_WHOLE:
                for _ in range(info._df):
                    weight, pos = _read_varint(data, pos)
                    weights.append(float(weight))
            else:
                weights = list(_unpacked("f", data[pos : pos + 4 * info._df]))
                pos += 4 * info._df
            values: Any = None
            if flags & _VALUES:
                values = []
                for _ in range(info._df):
                    size, pos = _read_varint(data, pos)
                    values.append(data[pos : pos + size])
                    pos += size
                values = tuple(values)
            info._inlined = (tuple(ids), tuple(weights), values)
        else:
            info._offset, pos = _read_varint(data, pos)
            info._length, pos = _read_varint(data, pos)
        return info


class _CompactFieldCursor(W3FieldCursor):
    def term_info(self) -> Any:
        if self._pos is None:
            return None
        return CompactTermInfo.from_bytes(self._tindex.dbfile.get(self._datapos, self._datalen))


class _CompactTermsReader(W3TermsReader):
    """W3's terms reader over :class:`CompactTermInfo` entries."""

    def cursor(self, fieldname: str, fieldobj: Any) -> Any:
        return _CompactFieldCursor(
            self._tindex, fieldname, self._keycoder, self._keydecoder, fieldobj
        )

    def items(self) -> Iterator[tuple[Any, CompactTermInfo]]:
        decode = self._keydecoder
        return (
            (decode(key), CompactTermInfo.from_bytes(value))
            for key, value in self._tindex.items()
        )

    def items_from(self, fieldname: str, prefix: bytes) -> Iterator[tuple[Any, CompactTermInfo]]:
        decode = self._keydecoder
        return (
            (decode(key), CompactTermInfo.from_bytes(value))
            for key, value in self._tindex.items_from(self._keycoder(fieldname, prefix))
        )

    def term_info(self, fieldname: str, tbytes: bytes) -> CompactTermInfo:
        try:
            return CompactTermInfo.from_bytes(self._tindex[self._keycoder(fieldname, tbytes)])
        except KeyError:
            raise TermNotFound(f"No term {fieldname}:{tbytes!r}") from None

    def frequency(self, fieldname: str, tbytes: bytes) -> float:
        return CompactTermInfo.from_bytes(self._tindex[self._keycoder(fieldname, tbytes)]).weight()

    def doc_frequency(self, fieldname: str, tbytes: bytes) -> int:
        return _read_varint(self._tindex[self._keycoder(fieldname, tbytes)], 1)[0]


class _CompactPostingsWriter(W3PostingsWriter):
    # Whoosh's block statistics, kept by the base class; typed here for mypy.
    _maxweight: float
    _minlength: int | None
    _maxlength: int
    _terminfo: Any

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

    def finish_postings(self) -> Any:
        """W3's, with a term of few postings kept in its dictionary entry."""
        terminfo: Any = self._terminfo
        if not self.written() and len(self) < self._inlinelimit:
            terminfo.add_block(self)
            terminfo.set_inlined(self._ids, self._weights, self._values)
        else:
            if self._ids:
                self._write_block(last=True)
            terminfo.set_extent(self._startoffset, self._postfile.tell() - self._startoffset)
        self._terminfo = None
        return terminfo

    def _write_block(self, last: bool = False) -> None:
        if not self._blockcount:
            self._postfile.write(WHOOSH3_HEADER_MAGIC)
        self._terminfo.add_block(self)
        databytes = _pack_block(self._ids, self._weights, self._values, self._format)
        ids = self._ids
        blocklength = _INFO.size - 4 + len(databytes)
        self._postfile.write(_INFO.pack(
            -blocklength if last else blocklength, len(ids), ids[-1], self._maxweight,
            length_to_byte(self._minlength), length_to_byte(self._maxlength)))  # fmt: skip
        self._postfile.write(databytes)
        self._blockcount += 1
        self._new_block()


# A block's header: its length after this field (negative for a term's last block), its
# number of postings, last docnum, greatest weight and shortest and longest field lengths
# (as Whoosh's length bytes). W3 pickles the same tuple, about 30 bytes where this is 16:
# a segment of 50,000 posts has some 140,000 blocks, most of them a rare word's only one.
_INFO = struct.Struct("<iHIfBB")


class _CompactLeafMatcher(W3LeafMatcher):
    # Whoosh's block fields, set by _goto; typed here for mypy.
    _lastblock: bool
    _nextoffset: int
    _dataoffset: int
    _blocklength: int
    _maxid: int
    _maxweight: float
    _compression: int
    _minlength: int
    _maxlength: int
    _data: Any
    _ids: Any
    _weights: Any
    _values: Any
    _i: int

    def _goto(self, position: int) -> None:
        """W3's block step, with the packed header of :data:`_INFO`."""
        self._data = None
        self._ids = None
        self._weights = None
        self._values = None
        self._i = 0
        length, count, maxid, maxweight, shortest, longest = _INFO.unpack(
            self._postfile.get(position, _INFO.size)
        )
        if length < 0:
            self._lastblock = True
            length = -length
        self._nextoffset = position + 4 + length
        self._dataoffset = position + _INFO.size
        self._blocklength, self._maxid, self._maxweight = count, maxid, maxweight
        self._compression = 0
        self._minlength = byte_to_length(shortest)
        self._maxlength = byte_to_length(longest)

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

    def block_keys(self) -> np.ndarray | None:
        """The current block's occurrence keys (:func:`block_keys_array`)."""
        return block_keys_array(self._block_data())


class _CompactFieldWriter(W3FieldWriter):
    def start_term(self, btext: bytes) -> None:
        if self._postwriter is None:
            raise ValueError("start_term before start_field")
        self._btext = btext
        self._postwriter.start_postings(self._fieldobj.format, CompactTermInfo())

    def add_postings(self, schema: Any, lengths: Any, items: Iterable[tuple]) -> None:
        """Whoosh's loop, with each field's length column read once, not per posting."""
        last_field = last_text = None
        postings: Any = None
        lens = b""
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

    def add_term_postings(
        self, fieldname: str, fieldobj: Any, lens: bytes, postings: TermPostings
    ) -> None:
        """Write some of a field's postings (terms after those written before) a term at
        a time, each term cut into blocks of ``blocklimit``: the bytes :meth:`add_postings`
        writes a posting at a time (the block statistics and term infos included), from
        whole arrays (numpy) instead. ``finish_field`` after the field's last terms.
        """
        import numpy as np

        if not self._infield or self._fieldname != fieldname:
            self.start_field(fieldname, fieldobj)
        writer = self._postwriter
        limit = writer._blocklimit
        docs, freqs, gaps = postings.docs, postings.freqs, postings.gaps
        term_starts = postings.term_starts
        counts = np.diff(term_starts)
        nblocks = (counts + limit - 1) // limit
        first_block = np.concatenate(([0], np.cumsum(nblocks)))
        within = np.arange(int(first_block[-1])) - np.repeat(first_block[:-1], nblocks)
        starts = np.repeat(term_starts[:-1], nblocks) + limit * within
        ends = np.minimum(starts + limit, np.repeat(term_starts[1:], nblocks))
        deltas = np.diff(docs, prepend=0)
        deltas[starts] = 0
        max_delta = np.maximum.reduceat(deltas, starts)
        max_freq = np.maximum.reduceat(freqs, starts)
        token_starts = np.concatenate(([0], np.cumsum(freqs)))
        max_gap = np.maximum.reduceat(gaps, token_starts[starts])
        # a posting's length byte, as the lengths column holds it (0: none, as 256)
        codes = np.zeros(int(docs.max()) + 1, np.int16)
        known = np.frombuffer(lens, np.uint8)[: len(codes)]
        codes[: len(known)] = known
        codes[codes == 0] = 256
        posting_codes = codes[docs]
        min_code = np.minimum.reduceat(posting_codes, starts)
        posting_codes[posting_codes == 256] = 0
        max_code = np.maximum.reduceat(posting_codes, starts)
        del codes, posting_codes
        # per term: Whoosh's TermInfo statistics
        term_min_code = np.minimum.reduceat(min_code, first_block[:-1])
        term_max_code = np.maximum.reduceat(max_code, first_block[:-1])
        term_weight = np.add.reduceat(freqs, term_starts[:-1])
        term_max = np.maximum.reduceat(max_freq, first_block[:-1])

        def le(dtype: str, values: Any) -> bytes:
            return bytes(values.astype(dtype).tobytes())

        delta_bytes = {
            b"B": (1, le("<u1", deltas)),
            b"H": (2, le("<u2", deltas)) if max_delta.max() >= 0x100 else (2, b""),
            b"I": (4, le("<u4", deltas)) if max_delta.max() >= 0x10000 else (4, b""),
        }
        del deltas
        weight_b = le("<u1", freqs)
        weight_f = le("<f4", freqs) if term_max.max() >= 0x100 else b""
        gap_b = le("<u1", gaps)
        gap_h = le("<u2", gaps) if max_gap.max() >= 0x100 else b""
        gap_codes = ((b"B", 1, gap_b), (b"H", 2, gap_h))
        to_byte = [length_to_byte(byte_to_length(c)) if c else 0 for c in range(256)]
        to_byte.append(0)  # no length (code 256): Whoosh's length_to_byte(None)

        postfile = self._postfile
        entries: list[tuple[bytes, bytes]] = []
        fieldid = pack_ushort(self._fieldid)
        head_pack, parts_pack, info_pack = _BLOCK_HEAD.pack, _PARTS.pack, _INFO.pack
        compress, level = zlib.compress, ZLIB_LEVEL
        out = bytearray()
        base = postfile.tell()
        # a term of fewer than ``inline`` postings keeps them in its entry (CompactTermInfo):
        # their documents, frequencies and positions (as 16-bit integers) in lists
        inline = writer._inlinelimit
        kept = np.flatnonzero(np.repeat(counts < inline, counts))
        kept_docs, kept_freqs = docs[kept].tolist(), freqs[kept].tolist()
        kept_from, kept_to = token_starts[kept].tolist(), token_starts[kept + 1].tolist()
        positions = b""
        if len(kept):
            summed = np.cumsum(gaps, dtype=np.int64)
            firsts = token_starts[:-1]
            summed -= np.repeat(summed[firsts] - gaps[firsts], freqs)
            positions = le("<u2", summed)
            del summed
        at = 0
        # per block (not per posting: a list of Python ints costs 36 bytes an item)
        starts_l, ends_l = starts.tolist(), ends.tolist()
        tstarts_l, tends_l = token_starts[starts].tolist(), token_starts[ends].tolist()
        first_l, last_l = docs[starts].tolist(), docs[ends - 1].tolist()
        max_delta_l, max_freq_l, max_gap_l = max_delta.tolist(), max_freq.tolist(), max_gap.tolist()
        min_code_l, max_code_l = min_code.tolist(), max_code.tolist()
        first_block_l = first_block.tolist()
        term_rows = zip(
            postings.terms, first_block_l, first_block_l[1:], term_weight.tolist(),
            counts.tolist(), term_min_code.tolist(), term_max_code.tolist(), term_max.tolist(),
            strict=False,
        )  # fmt: skip
        for btext, b0, b1, weight, df, tmin, tmax, tmaxw in term_rows:
            if df < inline:
                ids = kept_docs[at : at + df]
                weights = [float(f) for f in kept_freqs[at : at + df]]
                values = [positions[2 * a : 2 * b]
                          for a, b in zip(kept_from[at : at + df], kept_to[at : at + df],
                                          strict=True)]  # fmt: skip
                at += df
                entry = term_entry(
                    df, float(weight), to_byte[tmin], to_byte[tmax], float(tmaxw), ids[0],
                    ids[-1], (ids, weights, values),
                )  # fmt: skip
                entries.append((fieldid + btext, entry))
                continue
            offset = base + len(out)
            out += WHOOSH3_HEADER_MAGIC
            for k in range(b0, b1):
                s, e = starts_l[k], ends_l[k]
                n = e - s
                md = max_delta_l[k]
                idcode = b"B" if md < 0x100 else b"H" if md < 0x10000 else b"I"
                width, dbytes = delta_bytes[idcode]
                mf = max_freq_l[k]
                if mf == 1:
                    wcode, wbytes = b"0", b""
                elif mf < 0x100:
                    wcode, wbytes = b"B", weight_b[s:e]
                else:
                    wcode, wbytes = b"f", weight_f[4 * s : 4 * e]
                first = head_pack(n, first_l[k], idcode, wcode, b"D")
                first += dbytes[width * (s + 1) : width * e] + wbytes
                ts, te = tstarts_l[k], tends_l[k]
                gcode, gwidth, gbytes = gap_codes[max_gap_l[k] >= 0x100]
                vbytes = gcode + gbytes[gwidth * ts : gwidth * te]
                flags = 0
                if len(first) >= 64:
                    first, flags = compress(first, level), 1
                if len(vbytes) >= 64:
                    vbytes, flags = compress(vbytes, level), flags | 2
                size = _INFO.size - 4 + _PARTS.size + len(first) + len(vbytes)
                out += info_pack(-size if k == b1 - 1 else size, n, last_l[k], float(mf),
                                 to_byte[min_code_l[k]], to_byte[max_code_l[k]])  # fmt: skip
                out += parts_pack(flags, len(first))
                out += first
                out += vbytes
            entry = term_entry(
                df, float(weight), to_byte[tmin], to_byte[tmax], float(tmaxw), first_l[b0],
                last_l[b1 - 1], None, (offset, base + len(out) - offset),
            )  # fmt: skip
            entries.append((fieldid + btext, entry))
            if len(out) >= 1 << 22:
                postfile.write(bytes(out))
                base, out = postfile.tell(), bytearray()
        if out:
            postfile.write(bytes(out))
        _add_terms(self._tindex, entries)


def _add_terms(tindex: Any, entries: list[tuple[bytes, bytes]]) -> None:
    """Whoosh's ``OrderedHashWriter.add`` for many keys in order, written at once: the
    same bytes, positions, hashes and key index."""
    from whoosh.filedb.filetables import _lengths

    dbfile = tindex.dbfile
    start = dbfile.tell()
    out = bytearray()
    hashfn, buckets, index, last = tindex.hashfn, tindex.buckets, tindex.index, tindex.lastkey
    for key, value in entries:
        if key <= last:
            raise ValueError(f"Keys must increase: {last!r}..{key!r}")
        at = start + len(out)
        index.append(at)
        out += _lengths.pack(len(key), len(value))
        out += key
        out += value
        h = hashfn(key)
        buckets[h & 255].append((h, at))
        last = key
    tindex.lastkey = last
    dbfile.write(bytes(out))


class TermPostings(NamedTuple):
    """Some of a field's postings, sorted by term then document (numpy integer arrays):
    the terms (UTF-8, in order), where each term's postings start (one more: the end),
    each posting's document and frequency, and each occurrence's position as the gap from
    the previous one of its posting (the first from 0)."""

    terms: list[bytes]
    term_starts: Any
    docs: Any
    freqs: Any
    gaps: Any




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

    # Whoosh pickles this class into the index's table of contents: it keeps the name it
    # had before search.py became a package, so indexes open with either layout.
    __module__ = "groupsync.search"

    def field_writer(self, storage: Any, segment: Any) -> Any:
        return _CompactFieldWriter(self, storage, segment)

    def terms_reader(self, storage: Any, segment: Any) -> Any:
        name = segment.make_filename(self.TERMS_EXT)
        return _CompactTermsReader(
            self,
            storage.open_file(name),
            storage.file_length(name),
            segment.open_file(storage, self.POSTS_EXT),
        )

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
