"""One writer per archive: ``sync``, ``watch`` and ``send`` hold ``<db>.lock`` while they run.

The lock is an ``fcntl.flock`` on the file, not the file's existence: the kernel drops it
when the process ends, however it ends (SIGKILL included), so a stale file never blocks
anyone, and the file is never deleted (deleting a locked file lets a third process lock a
new inode while the second still waits on the old one). The holder writes its pid, command
and start time into the file so that the process refused can say who holds it.
"""

from __future__ import annotations

import fcntl
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import ArchiveError, GroupsyncError
from .files import open_private

__all__ = ["LockedError", "WriterLock"]


class LockedError(GroupsyncError):
    """Another process is writing to the archive (exit 3)."""

    exit_code = 3


class WriterLock:
    """The archive's writer lock, as a context manager.

    Parameters: ``db_path`` (the archive; ``":memory:"`` needs no lock) and ``command``
    (what the holder is, e.g. ``"groupsync watch"``, shown to whoever is refused).
    """

    def __init__(self, db_path: str | Path, command: str) -> None:
        self.db_path = str(db_path)
        self.path = Path(f"{self.db_path}.lock")
        self.command = command
        self._fd: int | None = None

    def acquire(self) -> None:
        if self.db_path == ":memory:" or self._fd is not None:
            return
        try:
            fd = open_private(self.path, os.O_RDWR)
        except OSError as ex:
            raise ArchiveError(
                f"cannot create the writer lock {self.path}: {ex.strerror} "
                "(writing needs the archive's folder writable)"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockedError(self._refusal()) from None
        except BaseException:
            os.close(fd)
            raise
        holder = {
            "pid": os.getpid(),
            "command": self.command,
            "started_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing drops the flock

    def holder(self) -> dict[str, Any] | None:
        """Who holds the lock, as it wrote itself down (``None`` if unreadable)."""
        try:
            data = json.loads(self.path.read_text() or "null")
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _refusal(self) -> str:
        holder = self.holder()
        if holder is None:
            who = "another process"
        else:
            who = (
                f"`{holder.get('command', 'groupsync')}` (pid {holder.get('pid', '?')}, "
                f"since {holder.get('started_at', '?')})"
            )
        return f"{self.db_path} is being written by {who}; one writer at a time, try again later"

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
