"""The archive: a SQLite database of everything seen, every version, nothing erased.

Only this package and ``migrations`` talk to SQLite; every other module calls a function
here. Writes are methods of an ``Archive`` that the sync calls inside ``archive.atomic()``,
one transaction per thread, so a killed sync leaves whole threads or nothing.

    connection.py   Connection: open (read-only, or for writing: create, tune, migrate),
                    atomic/batch, errors naming the file
      blobs.py      Blobs(Connection): attachment bytes once per SHA-256, in chunks
        store.py    Store(Blobs): save_* for groups ... events, the sync's lookups
      runs.py       Runs(Connection): _sync_state, sync runs, the digest chain
    values.py       column spellings (times, JSON, flags)
    hook_output.py  HookOutputLog: what hooks printed, in <db>.hooks (not the archive)
    side_file.py    SideFile: closing the two files above beside the archive (<db>.access too)
    queries/        the SQL of the modules above, one module each: reads, outbox,
                    events, integrity (verify), audit, exports (export, export-check),
                    search, groups (groupref), plugin (Datasette runs these),
                    governance (retention, holds, purge and verify's governance checks)

``Archive`` is all of them together.
"""

from __future__ import annotations

from .connection import PAGE_SIZE, archive_error, connect_readonly, writable
from .runs import GENESIS, Runs, chain_digest
from .store import MAILBOX_GROUPS, SIGNAL_FIELDS, Store, ThreadSignals, prepare_post
from .values import canonical_json, utc_now

__all__ = [
    "GENESIS",
    "MAILBOX_GROUPS",
    "PAGE_SIZE",
    "SIGNAL_FIELDS",
    "Archive",
    "ThreadSignals",
    "archive_error",
    "canonical_json",
    "chain_digest",
    "connect_readonly",
    "prepare_post",
    "utc_now",
    "writable",
]


class Archive(Store, Runs):
    """An archive database, opened without writing to it.

    Parameters: ``path`` of the SQLite file (``":memory:"`` for tests), ``readonly`` to
    open it read-only (Datasette and the read commands). Opening never creates, migrates
    or tunes the file: the writing commands do that once, through ``open_for_writing``
    (or ``migrate()`` on an archive already open), as ``sqlite_utils.Database`` leaves
    ``Migrations.apply`` to its caller.
    """
