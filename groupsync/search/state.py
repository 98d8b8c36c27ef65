"""Where an index lives and its state file (the change_seq reflected, the format, the
build), written after each Whoosh commit.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..files import write_private
from .schema import INDEX_FORMAT

STATE_FILE = "groupsync-index.json"


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
    data = json.dumps({"version": 1, **asdict(state)}, indent=1)
    write_private(index_path / STATE_FILE, data.encode())
