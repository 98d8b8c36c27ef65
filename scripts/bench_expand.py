"""How a first sync should find inline-only attachments: requests and bytes of two ways.

    .venv/bin/python scripts/bench_expand.py [--posts 10000] [--tenant-dir DIR]

Graph's ``hasAttachments`` leaves inline attachments out, so a thread whose only attachments
are pasted images says false. Two ways to archive them anyway:

* ``always``: every post list asks ``$expand=attachments`` (what ``groupsync sync`` does);
* ``cid``: expand only for threads that say ``hasAttachments``, and list the attachments of
  each other post whose body has a ``cid:`` reference (the sync's own fallback does this when
  an expand comes back empty, so stripping the expand from those requests measures it).

Both run the real ``Syncer`` in-process against the simulator over the seeded benchmark
tenant (``generate_tenant.py``, which pastes half its PNG files inline), and count every
request and response byte at the transport.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from urllib.parse import unquote

import benchlib
import httpx

from groupsync.archive import Archive
from groupsync.graph import GraphClient
from groupsync.simulator import SimulatorOptions, make_app
from groupsync.sync import Syncer, SyncOptions


class Counting(httpx.BaseTransport):
    """The simulator in-process, counting requests and bytes; ``cid`` strips the expand from
    post lists of threads whose ``hasAttachments`` is false."""

    def __init__(self, app, mode: str) -> None:
        self.inner = httpx.WSGITransport(app=app)
        self.mode = mode
        self.flags = {t["id"]: t["hasAttachments"] for g in app.state.groups
                      for t in app.state.threads(g)}
        self.requests = self.bytes = self.attachment_lists = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        flagged = self.flags.get(unquote(path.split("/")[-2]), True)
        if self.mode == "cid" and path.endswith("/posts") and not flagged:
            params = [(k, v) for k, v in request.url.params.multi_items() if k != "$expand"]
            request.url = request.url.copy_with(params=params)
        response = self.inner.handle_request(request)
        body = response.read()
        self.requests += 1
        self.bytes += len(body)
        self.attachment_lists += path.endswith("/attachments")
        return httpx.Response(response.status_code, headers=response.headers, content=body)


def run(tenant: Path, mode: str) -> dict[str, int]:
    transport = Counting(make_app(tenant, SimulatorOptions(max_top=50)), mode)
    graph = GraphClient("http://graph.test/v1.0", lambda force_refresh=False: "t",
                        transport=transport)
    with (
        tempfile.TemporaryDirectory() as folder,
        Archive.open_for_writing(Path(folder) / "a.db") as archive,
    ):
        Syncer(archive, graph, options=SyncOptions(full=True)).run(all_groups=True)
        inline = archive.conn.execute(
            "SELECT count(*) FROM attachments WHERE isInline = 1 AND sha256 IS NOT NULL"
        ).fetchone()[0]
    return {"requests": transport.requests, "bytes": transport.bytes,
            "attachment_lists": transport.attachment_lists, "inline_archived": inline}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=10_000)
    parser.add_argument("--tenant-dir", type=Path, help="cache generated tenants here")
    args = parser.parse_args()
    scale = args.posts / 50_000
    with tempfile.TemporaryDirectory() as scratch:
        tenant = benchlib.ensure_tenant(
            (args.tenant_dir or Path(scratch)) / f"expand-{args.posts}",
            groups=max(1, round(20 * scale)), threads=round(5_000 * scale),
            posts=args.posts, attachments=round(5_000 * scale), seed=1,
        )
        results = {mode: run(tenant, mode) for mode in ("always", "cid")}
    for mode, r in results.items():
        print(f"{mode:>6}: {r['requests']:>6} requests ({r['attachment_lists']} attachment "
              f"lists), {r['bytes'] / 1e6:8.2f} MB, {r['inline_archived']} inline archived")


if __name__ == "__main__":
    main()
