"""Benchmark full-text search: groupsync's Whoosh index and SQLite FTS5, side by side.

    .venv/bin/python scripts/bench_search.py [--posts 100000] [--groups 20] [--threads 10000]
        [--seed 1] [--work /tmp/gs-bench] [--archive PATH] [--procs 2] [--json OUT]

1. An archive of a generated tenant: ``generate_tenant.py`` writes it, ``groupsync simulate``
   serves it, ``groupsync sync --all`` archives it. Cached in ``--work`` between runs.
2. Build: ``rebuild_index`` (``--procs`` processes) against FTS5's ``rebuild`` of the
   archive's ``posts_fts`` (on a copy of the database), in posts per second.
3. Incremental update: 1,000 posts get new words and a new ``change_seq`` in the copy (the
   FTS5 triggers fire in that UPDATE, which is FTS5's time); then ``update_index`` catches
   the Whoosh index up (Whoosh's time). Both are checked afterwards.
4. Queries: 200 fixed queries drawn with a fixed seed (50 each: one word, two words,
   a quoted phrase taken from a post, and from: + group: + a date range + a word; words
   of frequency rank 100 to the rarest, log-uniformly), each returning the total and the
   top 20 with highlighted snippets. Each engine runs them in a fresh process, whose peak
   RSS (VmHWM) is reported; Whoosh both a hit per post (``search``) and an entry per
   thread (``search_threads``, what ``groupsync search`` and the web page run).
5. Size: index bytes against the corpus text (UTF-8 bytes of the posts' text, topics,
   names and addresses, and the extracted text of their attachments).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

from benchlib import ensure_tenant, free_port, generator_hash

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("term", "and", "phrase", "filtered")
PER_KIND = 50
CHANGED = 1000
MARKER = "zanzibarquokka"
TOP = 20


# -- the archive -----------------------------------------------------------------------



def ensure_archive(work: Path, posts: int, groups: int, threads: int, seed: int) -> Path:
    """A synced archive of a generated tenant, made once and kept in ``work``; its name
    carries the generator's hash, so a changed generator makes a new one."""
    name = f"p{posts}-g{groups}-t{threads}-s{seed}"
    db = work / f"archive-{name}-{generator_hash()[:12]}.db"
    if db.exists():
        return db
    tenant = ensure_tenant(
        work / f"tenant-{name}", groups=groups, threads=threads, posts=posts,
        attachments=posts // 10, seed=seed,
    )  # fmt: skip
    port = free_port()
    sim = subprocess.Popen(
        [sys.executable, "-m", "groupsync", "simulate", "--data", str(tenant),
         "--port", str(port), "--max-concurrency", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    partial = db.with_suffix(".partial.db")
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or sim.poll() is not None:
                    raise SystemExit("the simulator did not start") from None
                time.sleep(0.5)
        env = {
            **os.environ,
            "GROUPSYNC_GRAPH_URL": f"http://127.0.0.1:{port}/v1.0",
            "GROUPSYNC_ACCESS_TOKEN": "bench",
            "GROUPSYNC_RATE": "0",
            "GROUPSYNC_DB": str(partial),
        }
        print(f"syncing {posts} posts into {db} (a minute or two, once)...", file=sys.stderr)
        subprocess.run(
            [sys.executable, "-m", "groupsync", "sync", "--all", "--quiet", "--no-index"],
            env=env, check=True,
        )  # fmt: skip
    finally:
        sim.terminate()
        sim.wait()
    checkpoint(partial)
    partial.rename(db)
    return db


def checkpoint(db: Path) -> None:
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode=DELETE")


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# -- queries -----------------------------------------------------------------------------


def make_queries(db: Path, seed: int) -> list[dict]:
    """200 fixed queries, each with its Whoosh text and its FTS5 equivalent."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from generate_tenant import Vocabulary  # the generator's vocabulary

    vocabulary = Vocabulary(seed).words
    rng = random.Random(seed)

    def word() -> str:
        """A word people search for: its frequency rank drawn log-uniformly from 100 (in
        some 10 % of posts) to the rarest; the hundred commonest are function words."""
        rank = int(math.exp(rng.uniform(math.log(100), math.log(len(vocabulary)))))
        return vocabulary[rank - 1].lower()

    with closing(sqlite3.connect(db)) as conn:
        groups = conn.execute("SELECT id, displayName FROM groups ORDER BY id").fetchall()
        senders = conn.execute(
            "SELECT DISTINCT sender_name FROM posts WHERE sender_name IS NOT NULL "
            "ORDER BY sender_name"
        ).fetchall()
        first_names = sorted({s[0].split()[0] for s in senders})
        top = conn.execute("SELECT max(rowid) FROM posts").fetchone()[0]
        texts = []
        while len(texts) < PER_KIND:
            row = conn.execute(
                "SELECT body_text FROM posts WHERE rowid = ?", (rng.randint(1, top),)
            ).fetchone()
            tokens = [t for t in (row[0] or "").split() if t.isalpha() and len(t) > 1]
            if len(tokens) >= 4:
                n = rng.choice((2, 2, 3))
                start = rng.randrange(len(tokens) - n)
                texts.append(tokens[start : start + n])
    out = []
    for _ in range(PER_KIND):
        w = word()
        out.append({"kind": "term", "whoosh": w, "fts": f'"{w}"'})
    for _ in range(PER_KIND):
        a, b = word(), word()
        out.append({"kind": "and", "whoosh": f"{a} {b}", "fts": f'"{a}" AND "{b}"'})
    for tokens in texts:
        phrase = " ".join(tokens)
        out.append({"kind": "phrase", "whoosh": f'"{phrase}"', "fts": f'"{phrase}"'})
    for _ in range(PER_KIND):
        group_id, group_name = rng.choice(groups)
        name = rng.choice(first_names)
        term = word()
        year, month = rng.choice((2024, 2025)), rng.randint(1, 12)
        span = rng.randint(1, 6)
        end_year, end_month = year + (month + span - 1) // 12, (month + span - 1) % 12 + 1
        after, before = f"{year}-{month:02d}-01", f"{end_year}-{end_month:02d}-01"
        out.append({
            "kind": "filtered",
            "whoosh": f'from:{name} group:"{group_name}" after:{after} before:{before} {term}',
            "fts": f'{{sender_name from_name sender_address}}: "{name}" AND "{term}"',
            "group": group_id, "after": after, "before": before,
        })  # fmt: skip
    return out


def run_whoosh(db: Path, index: Path, queries: list[dict], by_thread: bool = False) -> dict:
    """The queries through ``search.search`` (a hit per post) or, ``by_thread``,
    ``search.search_threads`` (an entry per thread: what the CLI and the web page run)."""
    from groupsync import search
    from groupsync.archive import Archive

    results = []
    run = getattr(search, "search_threads", None) if by_thread else search.search
    if run is None:  # the code before results were grouped by thread
        return {"results": [], "vmhwm_kb": 0}
    with Archive(db, readonly=True) as archive:
        run(archive, index, "the", limit=TOP, catch_up=False)  # open the index
        for q in queries:
            started = time.perf_counter()
            found = run(archive, index, q["whoosh"], limit=TOP, catch_up=False)
            ms = (time.perf_counter() - started) * 1000
            shown = found.threads if by_thread else found.hits
            results.append({"ms": ms, "total": found.total, "hits": len(shown)})
        search.close_indexes()
    return {"results": results, "vmhwm_kb": vmhwm()}


FTS_SELECT = """
    SELECT p.id, p.thread_id, p.group_id, g.displayName, t.topic, p.sender_name,
        p.sender_address, p.receivedDateTime, bm25(posts_fts) AS score,
        snippet(posts_fts, 0, '<mark>', '</mark>', '…', 24)
    FROM posts_fts JOIN posts p ON p.rowid = posts_fts.rowid
    LEFT JOIN threads t ON t.id = p.thread_id LEFT JOIN groups g ON g.id = p.group_id
    WHERE posts_fts MATCH ? AND p.deleted_at IS NULL {where}
    ORDER BY score LIMIT {top}
"""
FTS_COUNT = """
    SELECT count(*) FROM posts_fts JOIN posts p ON p.rowid = posts_fts.rowid
    WHERE posts_fts MATCH ? AND p.deleted_at IS NULL {where}
"""


def run_fts(db: Path, queries: list[dict]) -> dict:
    results = []
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        conn.execute(FTS_SELECT.format(where="", top=TOP), ('"the"',)).fetchall()
        for q in queries:
            where, params = "", [q["fts"]]
            if q["kind"] == "filtered":
                where = (
                    "AND p.group_id = ? AND p.receivedDateTime >= ? "
                    "AND p.receivedDateTime < ?"
                )
                params += [q["group"], q["after"], q["before"]]
            started = time.perf_counter()
            rows = conn.execute(FTS_SELECT.format(where=where, top=TOP), params).fetchall()
            total = conn.execute(FTS_COUNT.format(where=where), params).fetchone()[0]
            ms = (time.perf_counter() - started) * 1000
            results.append({"ms": ms, "total": total, "hits": len(rows)})
    return {"results": results, "vmhwm_kb": vmhwm()}


def vmhwm() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def query_phase(
    engine: str, db: Path, index: Path, queries_file: Path, cache_mb: str | None = None
) -> dict:
    """Run one engine's queries in a fresh process (its own peak RSS)."""
    env = dict(os.environ)
    if cache_mb is not None:
        env["GROUPSYNC_SEARCH_CACHE_MB"] = cache_mb
    out = subprocess.run(
        [sys.executable, __file__, "--query-phase", engine, "--archive", str(db),
         "--index", str(index), "--queries-file", str(queries_file)],
        check=True, capture_output=True, text=True, env=env,
    )  # fmt: skip
    return json.loads(out.stdout)


# -- build and incremental update --------------------------------------------------------


def corpus_bytes(db: Path) -> int:
    """UTF-8 bytes of the text given to the index: bodies, topics, names, addresses and
    attachment text (extracted the way the index does)."""
    from groupsync import search
    from groupsync.archive import Archive

    with closing(sqlite3.connect(db)) as conn:
        (text,) = conn.execute(
            """
            SELECT sum(length(CAST(coalesce(p.body_text, '') AS BLOB))
                + length(CAST(coalesce(t.topic, '') AS BLOB))
                + length(CAST(coalesce(p.sender_name, '') || coalesce(p.sender_address, '')
                    || coalesce(p.from_name, '') || coalesce(p.from_address, '') AS BLOB)))
            FROM posts p LEFT JOIN threads t ON t.id = p.thread_id
            WHERE p.deleted_at IS NULL
            """
        ).fetchone()
    with Archive(db, readonly=True) as archive:
        extract = search.documents._AttachmentText(archive)
        for name, ctype, sha256, size in archive.conn.execute(
            "SELECT name, contentType, sha256, size FROM attachments WHERE deleted_at IS NULL"
        ):
            text += len(extract(name, ctype, sha256, size).encode("utf-8"))
    return int(text)


def fts_size(db: Path) -> int:
    with closing(sqlite3.connect(db)) as conn:
        (size,) = conn.execute(
            "SELECT sum(pgsize) FROM dbstat WHERE name LIKE 'posts_fts%'"
        ).fetchone()
    return int(size or 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--threads", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("/tmp/gs-bench"))
    parser.add_argument("--archive", type=Path, help="an archive to use as it is")
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--query-phase", choices=("whoosh", "whoosh-threads", "fts5"), help=argparse.SUPPRESS
    )
    parser.add_argument("--index", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--queries-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.query_phase:
        queries = json.loads(args.queries_file.read_text())
        if args.query_phase == "whoosh":
            result = run_whoosh(args.archive, args.index, queries)
        elif args.query_phase == "whoosh-threads":
            result = run_whoosh(args.archive, args.index, queries, by_thread=True)
        else:
            result = run_fts(args.archive, queries)
        print(json.dumps(result))
        return 0

    from groupsync import search
    from groupsync.archive import Archive

    args.work.mkdir(parents=True, exist_ok=True)
    source = args.archive or ensure_archive(
        args.work, args.posts, args.groups, args.threads, args.seed
    )
    copy = args.work / "bench-copy.db"
    index = args.work / "bench-copy.db.whoosh"
    for stale in (copy, Path(f"{copy}-wal"), Path(f"{copy}-shm")):
        stale.unlink(missing_ok=True)
    shutil.rmtree(index, ignore_errors=True)
    print(f"copying {source} ...", file=sys.stderr)
    with (
        closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as src,
        closing(sqlite3.connect(copy)) as dst,
    ):
        src.backup(dst)
    checkpoint(copy)
    with closing(sqlite3.connect(copy)) as conn:
        (posts,) = conn.execute("SELECT count(*) FROM posts WHERE deleted_at IS NULL").fetchone()
    load = os.getloadavg()

    # build
    print("building the Whoosh index ...", file=sys.stderr)
    with Archive(copy, readonly=True) as archive:
        report = search.rebuild_index(archive, index, procs=args.procs)
    whoosh_build = report.seconds
    print("rebuilding FTS5 ...", file=sys.stderr)
    with closing(sqlite3.connect(copy)) as conn:
        started = time.perf_counter()
        conn.execute("INSERT INTO posts_fts(posts_fts) VALUES ('rebuild')")
        conn.commit()
        fts_build = time.perf_counter() - started

    # incremental update of 1,000 posts
    rng = random.Random(args.seed)
    with closing(sqlite3.connect(copy)) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM posts WHERE deleted_at IS NULL")]
        chosen = rng.sample(ids, CHANGED)
        started = time.perf_counter()
        with conn:
            (seq,) = conn.execute("SELECT max(change_seq) FROM posts").fetchone()
            for n, post_id in enumerate(chosen, 1):
                conn.execute(
                    "UPDATE posts SET body_text = body_text || ? , change_seq = ? WHERE id = ?",
                    (f" {MARKER} edited", seq + n, post_id),
                )
        fts_update = time.perf_counter() - started
    with Archive.open_for_writing(copy) as archive:
        update = search.update_index(archive, index)
        check = search.check_index(archive, index)
        marked = search.search(archive, index, MARKER, limit=1).total
        search.close_indexes()
    if not check.ok or marked != CHANGED or update.indexed != CHANGED:
        raise SystemExit(f"incremental update wrong: {check.as_dict(3)}, {marked} marked")
    with closing(sqlite3.connect(copy)) as conn:
        (fts_marked,) = conn.execute(
            "SELECT count(*) FROM posts_fts WHERE posts_fts MATCH ?", (MARKER,)
        ).fetchone()

    # queries
    queries = make_queries(copy, args.seed)
    queries_file = args.work / "bench-queries.json"
    queries_file.write_text(json.dumps(queries, ensure_ascii=False, indent=1))
    print("running the queries ...", file=sys.stderr)
    whoosh_q = query_phase("whoosh", copy, index, queries_file)
    threads_q = query_phase("whoosh-threads", copy, index, queries_file)
    uncached = query_phase("whoosh", copy, index, queries_file, cache_mb="0")
    fts_q = query_phase("fts5", copy, index, queries_file)

    corpus = corpus_bytes(copy)
    sizes = {"whoosh": folder_size(index), "fts5": fts_size(copy)}
    engines = {
        "whoosh": {"build": whoosh_build, "update": update.seconds, "q": whoosh_q},
        "fts5": {"build": fts_build, "update": fts_update, "q": fts_q, "marked": fts_marked},
    }
    summary = summarize(posts, corpus, sizes, engines, queries)
    if threads_q["results"]:
        by_thread = [r["ms"] for r in threads_q["results"]]
        summary["whoosh_by_thread"] = {
            "p50_ms": round(statistics.median(by_thread), 1),
            "p95_ms": round(pct(by_thread, 95), 1),
            "p50_by_kind_ms": by_kind(threads_q["results"], queries, 50),
            "p95_by_kind_ms": by_kind(threads_q["results"], queries, 95),
            "peak_rss_mb": round(threads_q["vmhwm_kb"] / 1024, 1),
        }
    cold = [r["ms"] for r in uncached["results"]]
    summary["whoosh_without_term_cache"] = {
        "p50_ms": round(statistics.median(cold), 1),
        "p95_ms": round(pct(cold, 95), 1),
        "max_ms": round(max(cold), 1),
        "peak_rss_mb": round(uncached["vmhwm_kb"] / 1024, 1),
    }
    summary["load_average_at_start"] = [round(x, 2) for x in load]
    print(table(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def by_kind(results: list[dict], queries: list[dict], p: float) -> dict[str, float]:
    """The ``p``th percentile of each query class's times."""
    return {
        k: round(pct([r["ms"] for r, q in zip(results, queries, strict=True)
                      if q["kind"] == k], p), 1)
        for k in KINDS
    }  # fmt: skip


def summarize(posts: int, corpus: int, sizes: dict, engines: dict, queries: list) -> dict:
    out: dict = {"posts": posts, "corpus_text_bytes": corpus, "queries": len(queries)}
    for name, e in engines.items():
        ms = [r["ms"] for r in e["q"]["results"]]
        out[name] = {
            "build_posts_per_s": round(posts / e["build"]),
            "build_s": round(e["build"], 1),
            "update_1000_s": round(e["update"], 2),
            "p50_ms": round(statistics.median(ms), 1),
            "p95_ms": round(pct(ms, 95), 1),
            "max_ms": round(max(ms), 1),
            "p50_by_kind_ms": by_kind(e["q"]["results"], queries, 50),
            "p95_by_kind_ms": by_kind(e["q"]["results"], queries, 95),
            "peak_rss_mb": round(e["q"]["vmhwm_kb"] / 1024, 1),
            "index_mb": round(sizes[name] / 1e6, 1),
            "index_vs_corpus": round(sizes[name] / corpus, 3),
            "totals": [r["total"] for r in e["q"]["results"]],
        }
    return out


def table(s: dict) -> str:
    w, f = s["whoosh"], s["fts5"]
    rows = [
        ("build (posts/s)", f"{w['build_posts_per_s']:,} ({w['build_s']} s)",
         f"{f['build_posts_per_s']:,} ({f['build_s']} s)", ">= 3,000"),
        ("update of 1,000 changed posts", f"{w['update_1000_s']} s", f"{f['update_1000_s']} s",
         "< 5 s"),
        ("query p50 / p95 / max (ms)", f"{w['p50_ms']} / {w['p95_ms']} / {w['max_ms']}",
         f"{f['p50_ms']} / {f['p95_ms']} / {f['max_ms']}", "p95 < 100"),
    ]  # fmt: skip
    for kind in KINDS:
        rows.append((f"  p50 / p95 {kind} (ms)",
                     f"{w['p50_by_kind_ms'][kind]} / {w['p95_by_kind_ms'][kind]}",
                     f"{f['p50_by_kind_ms'][kind]} / {f['p95_by_kind_ms'][kind]}",
                     "p95 < 25"))  # fmt: skip
    t = s.get("whoosh_by_thread")
    if t:
        rows.append(("Whoosh by thread: p50 / p95 (ms)", f"{t['p50_ms']} / {t['p95_ms']}, "
                     f"{t['peak_rss_mb']} MB", "", ""))  # fmt: skip
        for kind in KINDS:
            rows.append((f"  by thread, p50 / p95 {kind} (ms)",
                         f"{t['p50_by_kind_ms'][kind]} / {t['p95_by_kind_ms'][kind]}", "",
                         "p95 < 25"))  # fmt: skip
    nc = s.get("whoosh_without_term_cache")
    if nc:
        rows.append(("  Whoosh without its term cache", f"{nc['p50_ms']} / {nc['p95_ms']} / "
                     f"{nc['max_ms']}, {nc['peak_rss_mb']} MB", "", ""))  # fmt: skip
    rows += [
        ("searching process peak RSS (MB)", str(w["peak_rss_mb"]), str(f["peak_rss_mb"]),
         "< 150"),
        ("index size (MB, share of the indexed text)",
         f"{w['index_mb']} ({w['index_vs_corpus']:.0%})",
         f"{f['index_mb']} ({f['index_vs_corpus']:.0%})", "<= 60%"),
    ]  # fmt: skip
    head = (
        f"{s['posts']:,} posts, {s['queries']} queries (top {TOP} with snippets and the "
        f"total), corpus text {s['corpus_text_bytes'] / 1e6:.1f} MB, "
        f"load average at start {s.get('load_average_at_start')}\n\n"
    )
    lines = ["| | Whoosh (groupsync.search) | SQLite FTS5 | target (Whoosh) |",
             "|---|---|---|---|"]  # fmt: skip
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return head + "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
