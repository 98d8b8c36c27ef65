"""The one progress renderer: a sync's status line, then the search index's bar."""

from __future__ import annotations

from groupsync.cli import Progress

SYNC = {"threads_checked": 3, "threads_fetched": 2, "posts": 5, "requests": 7,
        "throttle_waits": 0, "throttle_wait": 0.0, "groups_done": 1, "groups_total": 2,
        "in_flight": 3}  # fmt: skip


def test_off_a_terminal_it_says_nothing(capsys):
    with Progress(enabled=False) as progress:
        progress({"stage": "group", "index": 1, "total": 2, **SYNC})
        progress({"stage": "index", "done": 1, "total": 2})
    assert capsys.readouterr() == ("", "")


def test_the_sync_line_gives_way_to_the_index_bar(capsys):
    with Progress(enabled=True) as progress:
        progress({"stage": "group", "index": 1, "total": 2, **SYNC})
        line = capsys.readouterr().err
        assert line.startswith("\r") and "groups 1/2 · threads 3 checked, 2 fetched" in line
        assert "requests 7 (3 in flight)" in line
        progress({"stage": "index", "done": 1, "total": 2})
        progress({"stage": "done", "done": 2, "total": 2})
    err = capsys.readouterr().err
    assert err.startswith("\r" + " " * (len(line) - 1) + "\r")  # the line cleared first
    assert "Indexing posts" in err
    assert progress.bar is None and progress.width == 0


def test_each_finished_group_gets_its_own_line_above_the_run(capsys):
    with Progress(enabled=True) as progress:
        progress({"stage": "group", "index": 1, "total": 2, **SYNC})
        counts = {"threads_listed": 4, "threads_fetched": 2, "posts": 5, "requests": 6}
        progress({"stage": "group-done", "group": "g\x1b[31m1", "group_counts": counts, **SYNC})
    err = capsys.readouterr().err
    line = [part for part in err.split("\n") if "posts from" in part][0]
    assert line.endswith("group g\\x1b[31m1: 5 posts from 2 of 4 threads, 6 requests")
    assert "\x1b" not in err
