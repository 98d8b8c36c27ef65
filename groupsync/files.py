"""Private files: whatever groupsync creates is 0600 (files) or 0700 (folders), whatever
the umask.

An archive, its index, an export or a saved attachment is a group's mail: nobody else on
the machine should read it. Files are created with their mode given to ``os.open`` and
then set exactly with ``fchmod`` (a umask can only take bits away), so there is never a
moment when they are readable by others. SQLite copies the archive's mode to its ``-wal``
and ``-shm``, so :func:`touch_private` before SQLite opens a new file covers those too.
Whoosh opens its files with plain ``open()``: :func:`private_umask` is for library calls
like that, and the folder they write into is 0700 whatever happens inside it.
Files and folders that already exist keep their mode: they are someone's choice.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "can_write",
    "create_private",
    "open_private",
    "private_dir",
    "private_umask",
    "tighten",
    "touch_private",
    "write_private",
]

FILE_MODE = 0o600
DIR_MODE = 0o700
_PRIVATE_UMASK = 0o077


def private_dir(path: str | os.PathLike[str], *, exist_ok: bool = True) -> Path:
    """Create a folder, and any missing parents, 0700; an existing one is left as it is."""
    path = Path(path)
    missing = []
    current = path
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    if not missing and not exist_ok:
        raise FileExistsError(f"{path} exists")
    for folder in reversed(missing):
        try:
            os.mkdir(folder, DIR_MODE)
        except FileExistsError:  # made meanwhile by another process: theirs
            if folder == path and not exist_ok:
                raise
            continue
        os.chmod(folder, DIR_MODE)
    return path


def open_private(path: str | os.PathLike[str], flags: int = os.O_RDWR) -> int:
    """``os.open`` that creates a missing file 0600; an existing one is opened as it is.

    With ``os.O_EXCL`` in ``flags`` the file must not exist yet.
    """
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        if flags & os.O_EXCL:
            raise
        return os.open(path, flags & ~os.O_CREAT)
    try:
        os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def create_private(path: str | os.PathLike[str]) -> IO[bytes]:
    """A new file (it must not exist yet) open for writing bytes, 0600."""
    return os.fdopen(open_private(path, os.O_WRONLY | os.O_EXCL), "wb")


def touch_private(path: str | os.PathLike[str]) -> bool:
    """Create an empty 0600 file unless one exists (before SQLite opens it); True if new."""
    try:
        fd = open_private(path, os.O_RDONLY | os.O_EXCL)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def write_private(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` with ``data`` whole: a 0600 temporary file beside it, renamed."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with suppress(FileNotFoundError):
        temporary.unlink()
    try:
        with create_private(temporary) as fp:
            fp.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@contextmanager
def private_umask() -> Iterator[None]:
    """Files and folders created inside (by a library that does not take a mode) are
    private. The umask is the process's: a thread creating files meanwhile gets private
    ones too, which errs on the safe side; forked workers inherit it."""
    previous = os.umask(_PRIVATE_UMASK)
    os.umask(previous | _PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(previous)


def tighten(folder: str | os.PathLike[str]) -> None:
    """The files directly in ``folder`` made 0600, for a library that gives its files a
    mode of its own (Whoosh's lock file is 0777 less the umask)."""
    for entry in os.scandir(folder):
        if entry.is_file(follow_symlinks=False) and entry.stat().st_mode & 0o7177:
            os.chmod(entry.path, FILE_MODE)


def can_write(path: str | os.PathLike[str]) -> bool:
    """Whether ``path``, or the nearest folder above it that exists, can be written:
    False on a read-only mount or folder, so that readers leave an evidence copy alone."""
    current = Path(path)
    while not current.exists() and current != current.parent:
        current = current.parent
    return os.access(current, os.W_OK)
