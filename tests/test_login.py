"""A login for ``groupsync serve``: anonymous visitors see nothing but the login form,
readers see the mail, auditors also the access log, holds, policies, events and runs;
``serve-user`` keeps only hashes, in a 0600 file; serve refuses to bind beyond loopback
without accounts."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from datasette.utils import tilde_encode

from groupsync import access, search
from groupsync.archive import Archive
from groupsync.cli import cli
from groupsync.datasette_plugin.accounts import (
    add_account,
    load_accounts,
    login_metadata,
    remove_account,
    serve_users_path,
)
from groupsync.datasette_plugin.compat import DATASETTE_1
from groupsync.datasette_plugin.server import make_datasette

from .conftest import MARKETING, copy_sample, first_with_attachments, one_error_line, run_cli

PASSWORDS = {"rita": "reader-password-1", "audrey": "auditor-password-1"}

pytestmark = [
    pytest.mark.datasette1,  # logins are Datasette's own: check both versions
    pytest.mark.usefixtures("closes_logs"),
]


@pytest.fixture(scope="module")
def served(sample_archive, tmp_path_factory) -> dict[str, Any]:
    """A sample archive with an index, one row in its access log, and two accounts."""
    folder = tmp_path_factory.mktemp("login")
    db = copy_sample(sample_archive, folder / "archive.db")
    with Archive.open_for_writing(db) as archive:
        search.rebuild_index(archive, search.index_path_for(db), procs=1)
        thread_id, post = first_with_attachments(archive, MARKETING)
    search.close_indexes()
    access.log_access(db, "os:someone", "search", "budget", 3, "cli")
    access.close_access_logs()
    users = folder / "users.json"
    add_account(users, "rita", "reader", PASSWORDS["rita"])
    add_account(users, "audrey", "auditor", PASSWORDS["audrey"])
    return {"db": db, "users": users, "thread": (MARKETING, thread_id)}


@pytest.fixture
def ds(served):
    return make_datasette(served["db"], accounts=load_accounts(served["users"]))


def as_actor(ds: Any, name: str | None) -> dict[str, str]:
    if name is None:
        return {}
    actor = ds.plugin_config("datasette-auth-passwords")["actors"][name]
    return {"ds_actor": ds.sign({"a": actor}, "actor")}


def paths(served: dict[str, Any]) -> dict[str, list[str]]:
    group, thread = served["thread"]
    mail = [
        "/",
        "/archive",
        "/archive/posts",
        "/archive/posts.json",
        "/archive/threads",
        "/archive/attachments",
        "/-/groupsync/",
        "/-/groupsync/search?q=budget",
        f"/-/groupsync/thread/{tilde_encode(group)}/{tilde_encode(thread)}",
        "/archive/busiest_threads",
    ]
    audit = [
        "/access_log",
        "/access_log/access_log",
        "/access_log/access_log.json",
        "/archive/sync_runs",
        "/archive/events",
        "/archive/exports",
        "/archive/access_log_seals",
        "/archive/blobs",
        "/archive/_outbox",
        "/archive?sql=select+1",
    ]
    return {"mail": mail, "audit": audit}


async def status(ds: Any, path: str, who: str | None) -> int:
    """The status of ``path`` for ``who``, after Datasette's own redirects (1.0 moves
    ``/db?sql=`` to ``/db/-/query?sql=``)."""
    response = await ds.client.get(path, cookies=as_actor(ds, who), follow_redirects=True)
    return response.status_code


@pytest.mark.asyncio
async def test_anonymous_sees_only_the_login_form(ds, served):
    for path in [*paths(served)["mail"], *paths(served)["audit"], "/archive.db",
                 "/-/metadata.json", "/-/databases.json", "/-/password-tool"]:  # fmt: skip
        response = await ds.client.get(path)
        assert response.status_code in (302, 403, 404), (path, response.status_code)
        if response.status_code == 302:
            assert response.headers["location"] == "/-/login", path
        assert "Marketing" not in response.text and "budget" not in response.text, path
    login = await ds.client.get("/-/login")
    assert login.status_code == 200 and 'type="password"' in login.text


@pytest.mark.asyncio
async def test_reader_sees_mail_but_not_the_audit_tables(ds, served):
    for path in paths(served)["mail"]:
        # On the 1.0 alphas a stored (canned) query needs the right to run SQL: auditors'.
        canned = DATASETTE_1 and path == "/archive/busiest_threads"
        assert await status(ds, path, "rita") == (403 if canned else 200), path
    for path in paths(served)["audit"]:
        assert await status(ds, path, "rita") == 403, path


@pytest.mark.asyncio
async def test_auditor_sees_everything(ds, served):
    for path in [*paths(served)["mail"], *paths(served)["audit"]]:
        assert await status(ds, path, "audrey") == 200, path
    rows = (await ds.client.get("/access_log/access_log.json?_shape=array",
                                cookies=as_actor(ds, "audrey"))).json()  # fmt: skip
    assert rows[0]["actor"] == "os:someone" and rows[0]["target"] == "budget"


@pytest.mark.asyncio
async def test_login_form_logs_in_and_the_log_names_the_actor(ds, served):
    form = await ds.client.get("/-/login")
    # 0.65 guards forms with a token cookie; the 1.0 alphas check the request's origin
    token = form.cookies.get("ds_csrftoken", "")
    wrong = await ds.client.post(
        "/-/login",
        data={"username": "rita", "password": "nope", "csrftoken": token},
        cookies={"ds_csrftoken": token},
    )
    assert "Invalid username or password" in wrong.text and "ds_actor" not in wrong.cookies
    right = await ds.client.post(
        "/-/login",
        data={"username": "rita", "password": PASSWORDS["rita"], "csrftoken": token},
        cookies={"ds_csrftoken": token},
    )
    assert right.status_code == 302
    cookie = right.cookies["ds_actor"]
    page = await ds.client.get("/-/groupsync/search?q=invoice", cookies={"ds_actor": cookie})
    assert page.status_code == 200
    newest = list(access.iter_access_log(served["db"]))[-1]
    assert (newest["actor"], newest["action"], newest["target"], newest["origin"]) == (
        "rita", "search", "invoice", "web"
    )


def test_login_metadata_allows_by_role():
    accounts = {"a": {"role": "auditor", "password_hash": "pbkdf2_sha256$1$s$h"}}
    metadata = login_metadata(accounts, ["archive"])
    assert metadata["allow"] == {"groupsync_role": ["reader", "auditor"]}
    assert metadata["allow_sql"] == {"groupsync_role": ["auditor"]}
    plugin = metadata["plugins"]["datasette-auth-passwords"]
    assert plugin == {
        "a_password_hash": "pbkdf2_sha256$1$s$h",
        "actors": {"a": {"id": "a", "groupsync_role": "auditor"}},
    }
    assert metadata["databases"]["access_log"] == {"allow": {"groupsync_role": ["auditor"]}}


# -- serve-user ----------------------------------------------------------------------------


def test_serve_user_add_keeps_only_a_hash_in_a_private_file(tmp_path):
    users = tmp_path / "conf" / "users.json"
    env = {"GROUPSYNC_SERVE_USERS": str(users)}
    result = CliRunner().invoke(cli, ["serve-user", "add", "alice", "--role", "auditor"],
                                input="s3cret-pass\ns3cret-pass\n", env=env)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "s3cret-pass" not in result.output
    assert stat.S_IMODE(users.stat().st_mode) == 0o600
    text = users.read_text()
    assert "s3cret-pass" not in text
    saved = json.loads(text)["accounts"]["alice"]
    assert saved["role"] == "auditor" and saved["password_hash"].startswith("pbkdf2_sha256$")
    from datasette_auth_passwords.utils import verify_password

    assert verify_password("s3cret-pass", saved["password_hash"])
    listed = CliRunner().invoke(cli, ["serve-user", "list"], env=env)
    assert "alice" in listed.output and "auditor" in listed.output
    assert "pbkdf2" not in listed.output
    assert remove_account(users, "alice") and load_accounts(users) == {}


def test_serve_user_refuses_bad_names_and_short_passwords(tmp_path):
    env = {"GROUPSYNC_SERVE_USERS": str(tmp_path / "u.json")}
    short = CliRunner().invoke(cli, ["serve-user", "add", "bob", "--role", "reader",
                                     "--password", "short"], env=env)  # fmt: skip
    assert short.exit_code != 0 and "at least 8" in short.output
    bad = CliRunner().invoke(cli, ["serve-user", "add", "a\x1b[2Jb", "--role", "reader",
                                   "--password", "long-enough"], env=env)  # fmt: skip
    assert bad.exit_code != 0 and "\x1b" not in bad.output


def test_serve_users_file_sits_beside_the_config(tmp_path, monkeypatch):
    config = tmp_path / "etc" / "groupsync.toml"
    assert serve_users_path(config) == config.parent.resolve() / "groupsync-serve-users.json"
    monkeypatch.chdir(tmp_path)
    assert serve_users_path() == Path(os.environ["XDG_CONFIG_HOME"]) / "groupsync" / (
        "groupsync-serve-users.json"
    )


def test_serve_beyond_loopback_without_accounts_refuses_in_one_line(served, tmp_path):
    result = run_cli("serve", "--host", "0.0.0.0", "--port", "0", "--no-index",
                     db=served["db"], env={"GROUPSYNC_SERVE_USERS": str(tmp_path / "none.json")},
                     timeout=60)  # fmt: skip
    line = one_error_line(result)
    assert "needs accounts" in line and "serve-user add" in line


@pytest.mark.asyncio
async def test_hostile_queries_are_logged_exactly_and_shown_escaped(ds, served):
    from . import hostile

    who = as_actor(ds, "rita")
    markup = [t for t in hostile.STORABLE if "<" in t][:5] + ["<script>alert(1)</script>"]
    for text in markup:
        page = await ds.client.get("/-/groupsync/search", params={"q": text}, cookies=who)
        assert page.status_code in (200, 400)
    logged = [r["target"] for r in access.iter_access_log(served["db"]) if r["actor"] == "rita"]
    assert set(markup) <= set(logged) | {t for t in markup if t.strip() == ""}
    table = await ds.client.get("/access_log/access_log?_size=max",
                                cookies=as_actor(ds, "audrey"))  # fmt: skip
    assert table.status_code == 200
    assert "<script>alert(1)</script>" not in table.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in table.text
