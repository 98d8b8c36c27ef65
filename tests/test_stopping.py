"""What the CLI used to hold and the library now does: the stopping context, the send
cap and the audit identity (groupsync.stopping, .connect, .auth) that ``sync``, ``send``
and ``watch`` share, and the watch hook's environment (groupsync.events)."""

from __future__ import annotations

import getpass
import os
import signal
import threading

import pytest

from groupsync.auth import StaticToken, audit_identity, identity_label, os_user
from groupsync.config import load_settings
from groupsync.connect import SENDS_PER_MINUTE, sending_cap, throttle_for
from groupsync.events import HookError, ShellHook
from groupsync.stopping import stopping


def test_a_signal_sets_the_event_and_the_previous_handlers_come_back():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    told = []
    with stopping(on_stop=told.append) as stop:
        assert not stop.is_set()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.is_set()
        os.kill(os.getpid(), signal.SIGTERM)  # a second SIGTERM changes nothing
    assert told == [signal.SIGTERM]
    assert {s: signal.getsignal(s) for s in before} == before


def test_a_second_ctrl_c_quits_at_once():
    with pytest.raises(KeyboardInterrupt), stopping() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.is_set()
        os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_only_the_signals_asked_for_are_taken():
    with stopping((signal.SIGINT,)):
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler


def test_off_the_main_thread_no_handler_is_installed():
    seen = {}

    def run():
        with stopping() as stop:
            seen["handler"] = signal.getsignal(signal.SIGINT)
            stop.set()
            seen["set"] = stop.is_set()

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    assert seen == {"handler": signal.default_int_handler, "set": True}


@pytest.fixture
def settings(tmp_path):
    return load_settings(
        {"db": str(tmp_path / "a.db")},
        environ={"GROUPSYNC_ACCESS_TOKEN": "t", "GROUPSYNC_GRAPH_URL": "http://127.0.0.1:9"},
    )


def test_the_send_cap_is_30_a_minute_in_its_own_window(settings):
    assert SENDS_PER_MINUTE == 30
    with sending_cap(settings) as cap, throttle_for(settings) as calls:
        assert cap.rate == (30, 60.0)
        assert cap.key == "send|" + calls.key  # beside the call throttle, not sharing it
    with pytest.raises(Exception, match="closed"):
        cap._db.execute("select 1")


@pytest.mark.parametrize("per_minute,rate", [(0, None), (5, (5, 60.0))])
def test_the_send_cap_can_be_changed_or_lifted(settings, per_minute, rate):
    with sending_cap(settings, per_minute) as cap:
        assert (cap.rate if cap else None) == rate


@pytest.mark.parametrize(
    "identity,label",
    [
        ({"username": "ada@contoso.com", "app_id": "a", "mode": "device"}, "ada@contoso.com"),
        ({"app_id": "app-1", "mode": "app"}, "app-1"),
        ({"mode": "access-token"}, "access-token"),
        ({}, None),
    ],
)
def test_identity_label_names_who_runs_it(identity, label):
    class Token:
        def __call__(self, force_refresh: bool = False) -> str:
            return "t"

    token = Token()
    token.identity = identity
    assert identity_label(token) == label


def test_audit_identity_needs_no_sign_in(settings, tmp_path):
    assert audit_identity(settings) == "access-token"
    assert identity_label(StaticToken("t")) is not None
    unreadable = load_settings(
        {"db": str(tmp_path / "a.db")},
        environ={"GROUPSYNC_TOKEN_CACHE": str(tmp_path),  # a folder: msal cannot read it
                 "GROUPSYNC_TENANT_ID": "t", "GROUPSYNC_CLIENT_ID": "c"},
    )  # fmt: skip
    assert audit_identity(unreadable) is None


def test_os_user_names_the_account_or_none(monkeypatch):
    assert os_user() == getpass.getuser()

    def no_entry():
        raise KeyError("getpwuid(): uid not found: 12345")

    monkeypatch.setattr(getpass, "getuser", no_entry)
    assert os_user() is None


def test_the_watch_hook_is_told_the_archive_and_nothing_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("MINE", "kept")
    monkeypatch.setenv("GROUPSYNC_CLIENT_SECRET", "s3cret")
    hook = ShellHook.for_archive("true", tmp_path / "a.db", timeout=5.0, keep=["MINE"])
    assert hook.timeout == 5.0
    assert hook.environ["GROUPSYNC_DB"] == str(tmp_path / "a.db")
    assert hook.environ["MINE"] == "kept" and "GROUPSYNC_CLIENT_SECRET" not in hook.environ
    with pytest.raises(HookError, match="GROUPSYNC_CLIENT_SECRET"):
        ShellHook.for_archive("true", "a.db", timeout=5.0, keep=["GROUPSYNC_CLIENT_SECRET"])
