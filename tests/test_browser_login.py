"""Logging in to ``groupsync serve`` in a real browser (Debian's headless Chromium, as in
``test_browser.py``): a reader reaches mail and search but not the audit pages; an auditor
reaches those too, and reads the reader's search in the access log."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from groupsync import search
from groupsync.archive import Archive
from groupsync.datasette_plugin.accounts import add_account

from .conftest import copy_sample, serving

pytestmark = [pytest.mark.browser, pytest.mark.datasette1]

ACCOUNTS = {"rita": ("reader", "reader-password-1"), "audrey": ("auditor", "auditor-pass-2")}


@pytest.fixture(scope="module")
def server(sample_archive, tmp_path_factory) -> Any:
    """``groupsync serve`` with two accounts, on a free loopback port: (URL, db name)."""
    folder = tmp_path_factory.mktemp("login-browser")
    db = copy_sample(sample_archive, folder / "mail.db")
    with Archive.open_for_writing(db) as archive:
        search.rebuild_index(archive, search.index_path_for(db), procs=1)
    search.close_indexes()
    users = folder / "users.json"
    for name, (role, password) in ACCOUNTS.items():
        add_account(users, name, role, password)
    env = {**os.environ, "GROUPSYNC_SERVE_USERS": str(users)}
    with serving(["--db", str(db), "serve"], folder, env) as url:
        yield url, Path(db).stem


def log_in(browser: Any, url: str, name: str) -> Any:
    """A new browser context, logged in through the form a visitor is sent to."""
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{url}/-/groupsync/")
    assert page.url == f"{url}/-/login"
    assert page.locator("input[type=password]").count() == 1
    assert "Marketing" not in page.content()
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", ACCOUNTS[name][1])
    page.click("input[type=submit]")
    page.wait_for_load_state("networkidle")
    assert errors == []
    return context, page


def status(page: Any, url: str) -> int:
    response = page.goto(url)
    assert response is not None
    return int(response.status)


def test_reader_logs_in_and_reads_mail_but_not_the_audit_pages(server, browser):
    url, db = server
    context, page = log_in(browser, url, "rita")
    try:
        assert status(page, f"{url}/-/groupsync/") == 200
        assert page.get_by_text("Marketing").count() >= 1
        page.goto(f"{url}/-/groupsync/search")
        page.fill("input[name=q]", "launch")
        page.click("input[type=submit]")
        page.wait_for_load_state("networkidle")
        assert page.locator(".groupsync-hit").count() > 0
        assert status(page, f"{url}/{db}/posts") == 200
        for denied in (f"{url}/{db}/sync_runs", f"{url}/{db}/events", f"{url}/access_log",
                       f"{url}/access_log/access_log"):  # fmt: skip
            assert status(page, denied) == 403, denied
    finally:
        context.close()


def test_auditor_logs_in_and_reads_the_access_log(server, browser):
    url, db = server
    reader, page = log_in(browser, url, "rita")
    page.goto(f"{url}/-/groupsync/search?q=invoice")
    reader.close()
    context, page = log_in(browser, url, "audrey")
    try:
        for allowed in (f"{url}/{db}/sync_runs", f"{url}/{db}/events", f"{url}/{db}/posts"):
            assert status(page, allowed) == 200, allowed
        assert status(page, f"{url}/access_log/access_log?actor=rita&action=search") == 200
        text = page.locator("table.rows-and-columns").inner_text()
        assert "invoice" in text and "web" in text
    finally:
        context.close()
