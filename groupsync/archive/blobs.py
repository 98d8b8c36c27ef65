"""Attachment bytes, stored once per SHA-256 and streamed in and out in chunks."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterator
from typing import cast

from ..errors import ArchiveError
from .connection import Connection

B64_CHUNK = 4 * 1024 * 256  # base64 characters decoded at a time (1 MiB of text)


class Blobs(Connection):
    """The ``blobs`` table of an archive."""

    def save_blob_base64(self, content: str, now: str, *, run_id: int | None = None) -> str:
        """Store base64 content once per SHA-256, decoding 1 MiB at a time.

        Two passes over the text: hash and size first (nothing stored if the blob is
        known), then write into a zero-filled blob through SQLite's incremental I/O, so the
        decoded bytes never exist in memory as a whole.
        """
        digest = hashlib.sha256()
        size = 0
        for chunk in _b64_chunks(content):
            digest.update(chunk)
            size += len(chunk)
        sha256 = digest.hexdigest()
        if self._one("SELECT 1 FROM blobs WHERE sha256 = :sha256", {"sha256": sha256}) is None:
            cursor = self.conn.execute(
                "INSERT INTO blobs (sha256, size, content, first_seen_at, sync_run_id) "
                "VALUES (:sha256, :size, zeroblob(:size), :now, :run_id)",
                {"sha256": sha256, "size": size, "now": now, "run_id": run_id},
            )
            if size:
                rowid = cast(int, cursor.lastrowid)  # an INSERT just ran on this cursor
                with self.conn.blobopen("blobs", "content", rowid) as blob:
                    for chunk in _b64_chunks(content):
                        blob.write(chunk)
        return sha256

    def save_blob_bytes(self, data: bytes, now: str) -> str:
        """Store bytes once per SHA-256 (the outbox's attachments, at most 3 MB each)."""
        sha256 = hashlib.sha256(data).hexdigest()
        self.conn.execute(
            "INSERT OR IGNORE INTO blobs (sha256, size, content, first_seen_at) "
            "VALUES (:sha256, :size, :content, :now)",
            {"sha256": sha256, "size": len(data), "content": data, "now": now},
        )
        return sha256

    def read_blob(self, sha256: str) -> bytes:
        """A whole blob in memory: only for the small ones (outbox attachments)."""
        return b"".join(self.iter_blob(sha256))

    def iter_blob(self, sha256: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """A stored attachment's bytes in chunks (for downloads and ``--save``)."""
        row = self.conn.execute(
            "SELECT rowid, size FROM blobs WHERE sha256 = :sha256", {"sha256": sha256}
        )
        found = row.fetchone()
        if found is None:
            raise ArchiveError(f"no blob {sha256} in the archive")
        rowid, size = found
        if not size:
            return
        with self.conn.blobopen("blobs", "content", rowid, readonly=True) as blob:
            while True:
                chunk = blob.read(chunk_size)
                if not chunk:
                    return
                yield chunk


def _b64_chunks(content: str) -> Iterator[bytes]:
    """Decode base64 text in bounded pieces (a multiple of 4 characters each)."""
    compact = content if "\n" not in content and " " not in content else "".join(content.split())
    try:
        for start in range(0, len(compact), B64_CHUNK):
            yield base64.b64decode(compact[start : start + B64_CHUNK], validate=True)
    except (binascii.Error, ValueError):
        raise ArchiveError("an attachment's contentBytes is not valid base64") from None
