"""``groupsync verify --export DIR``: an export against its ``manifest.json``.

Each file the manifest lists must be there with its SHA-256 and size, and nothing else
(a file present but not listed is a difference too); the manifest's file count must be
its list's. With the archive at hand, the chain head the manifest recorded must still be
in the archive's digest chain, and when the archive recorded this export (same id, same
start) the manifest must hash to what it recorded. Keys the manifest has beyond these are
ignored: newer exports may list more (the items that could not be exported, say). A
production's load files are checked too (``production.check_production``): rows against the
manifest, the CSV against the DAT, and each document's hash against the archive.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .archive import Archive
from .archive.queries import exports as queries
from .errors import GroupsyncError
from .export import MANIFEST
from .integrity import Problem

__all__ = ["ExportCheck", "ManifestError", "check_export"]

CHUNK = 1024 * 1024


class ManifestError(GroupsyncError):
    """The folder has no manifest that can be read: nothing to check the export against."""


@dataclass
class ExportCheck:
    """What ``check_export`` compared; ``problems`` in manifest order, then extra files."""

    path: str
    files: int = 0
    bytes: int = 0
    chain_head: dict[str, Any] | None = None
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def check_export(out: str | Path, archive: Archive | None = None) -> ExportCheck:
    """Check every file of the export in ``out`` against its manifest. Reads only."""
    root = Path(out)
    manifest_path = root / MANIFEST
    try:
        data = manifest_path.read_bytes()
        manifest = json.loads(data)
    except OSError as ex:
        raise ManifestError(f"cannot read {manifest_path}: {ex.strerror or ex}") from None
    except ValueError:
        raise ManifestError(f"{manifest_path} is not JSON") from None
    entries = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(entries, list):
        raise ManifestError(f"{manifest_path} has no list of files")
    report = ExportCheck(str(root))
    listed: set[str] = set()
    for entry in entries:
        _check_file(root, entry, listed, report)
    counts = manifest.get("counts")
    if isinstance(counts, dict) and counts.get("files") not in (None, len(entries)):
        report.problems.append(
            Problem("manifest", MANIFEST,
                    f"counts {counts.get('files')} files, lists {len(entries)}")
        )  # fmt: skip
    for relative in _present(root):
        if relative not in listed and relative != MANIFEST:
            report.problems.append(Problem("extra-file", relative, "is not in the manifest"))
    if manifest.get("format") == "production":
        from .production import check_production

        report.problems.extend(check_production(root, manifest, archive))
    head = (manifest.get("archive") or {}).get("chain_head")
    report.chain_head = head if isinstance(head, dict) else None
    if archive is None:
        report.notes.append("no archive: the manifest's chain head was not looked for")
    else:
        try:
            _check_archive(archive, manifest, hashlib.sha256(data).hexdigest(), report)
        except sqlite3.OperationalError:
            report.notes.append(
                "the archive predates the digest chain and export records: run "
                "`groupsync sync` once to upgrade it; the chain head was not looked for"
            )
    return report


def _check_file(root: Path, entry: Any, listed: set[str], report: ExportCheck) -> None:
    relative = entry.get("path") if isinstance(entry, dict) else None
    if not isinstance(relative, str) or not _inside(relative):
        report.problems.append(
            Problem("manifest", MANIFEST, f"lists a file outside the export: {relative!r}")
        )
        return
    listed.add(relative)
    report.files += 1
    path = root / relative
    if path.is_symlink() or not path.is_file():
        what = "a link" if path.is_symlink() else "missing"
        report.problems.append(Problem("missing-file", relative, f"is {what}"))
        return
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    report.bytes += size
    if size != entry.get("size") or digest.hexdigest() != entry.get("sha256"):
        report.problems.append(
            Problem(
                "changed-file",
                relative,
                f"{size} bytes hashing to {digest.hexdigest()}; the manifest says "
                f"{entry.get('size')} bytes, {entry.get('sha256')}",
            )
        )


def _inside(relative: str) -> bool:
    path = PurePosixPath(relative)
    return bool(relative) and not path.is_absolute() and ".." not in path.parts


def _present(root: Path) -> list[str]:
    """Every file under ``root`` (links included, not followed), as manifest paths."""
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        base = Path(folder).relative_to(root)
        dirs.sort()
        links = [d for d in dirs if (Path(folder) / d).is_symlink()]
        found.extend((base / name).as_posix() for name in sorted(files + links))
    return found


def _check_archive(
    archive: Archive, manifest: dict[str, Any], manifest_sha256: str, report: ExportCheck
) -> None:
    digest = (report.chain_head or {}).get("digest")
    if digest is not None and not queries.has_digest(archive, str(digest).lower()):
        report.problems.append(
            Problem(
                "anchor",
                MANIFEST,
                f"its chain head {digest} is not in the archive's chain: the history "
                "was rewritten since, or the export is of another archive",
            )
        )
    row = queries.export_record(archive, manifest.get("export_id"), manifest.get("started_at"))
    if row is None:
        report.notes.append("the archive has no record of this export")
    elif (recorded := row["manifest_sha256"]) and recorded != manifest_sha256:
        report.problems.append(
            Problem(
                "changed-manifest",
                MANIFEST,
                f"hashes to {manifest_sha256}; the archive recorded {recorded} for export "
                f"{manifest.get('export_id')}",
            )
        )
