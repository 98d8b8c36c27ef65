"""Open indexes and searchers, kept for the process and refreshed when the index moves
on; :func:`close_indexes` closes them.
"""

from __future__ import annotations

import atexit
import threading
from pathlib import Path
from typing import Any

from whoosh import index as windex

from .evaluator import _TERM_CACHE
from .state import _State


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
