"""The "new email arrives" trigger: events recorded by the sync, delivered to a hook.

The sync records one event per new post, in the transaction that stores the post
(``Archive.save_event``), so a crash cannot lose one. Each event is the connector's
``ConversationTriggerResponse``::

    {"id": <conversation id>, "lastDeliveredDateTime": ...,
     "threads": [{"id": <thread id>,
                  "posts": [{"id": ..., "changeKey": ..., "lastModifiedDateTime": ...}]}],
     "@groupsync.event": {"id": 7, "groupId": ..., "createdDateTime": ...}}

Delivery is at least once: an event is ``pending`` until a hook took it (``delivered``);
a failed attempt leaves it ``failed`` with the error, and it is tried again later.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import IO, Any

from .archive import Archive, utc_now
from .archive.hook_output import HookOutputLog
from .archive.queries import events as queries
from .config import SECRET_ENV_VARS
from .errors import GroupsyncError

__all__ = [
    "EVENT_STATES",
    "HOOK_EVENT_VARS",
    "HOOK_INHERITED",
    "HOOK_OUTPUT_CAP",
    "DeliveryReport",
    "HookError",
    "HookOutput",
    "HookOutputLog",
    "ShellHook",
    "deliver_pending",
    "event_payload",
    "hook_environment",
    "hook_output_path",
    "iter_events",
    "latest_event_id",
]

EVENT_STATES = ("pending", "delivered", "failed")
Hook = Callable[[dict[str, Any]], "HookOutput | None"]
def event_payload(row: dict[str, Any]) -> dict[str, Any]:
    """An ``events`` row as the hook and ``--jsonl`` see it: the connector shape plus ours."""
    payload = json.loads(row["json"])
    payload["@groupsync.event"] = {
        "id": row["id"],
        "groupId": row["group_id"],
        "createdDateTime": row["created_at"],
    }
    return payload


# Events oldest first, as the archive's query gives them: nothing to add on the way.
iter_events = queries.iter_event_rows


def latest_event_id(archive: Archive) -> int:
    return queries.latest_event_id(archive)


@dataclass
class DeliveryReport:
    delivered: int = 0
    failed: int = 0
    left: int = 0


def deliver_pending(
    archive: Archive,
    hook: Hook,
    *,
    now: Callable[[], str] = utc_now,
    log: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    max_consecutive_failures: int = 3,
    outputs: HookOutputLog | None = None,
) -> DeliveryReport:
    """Give every pending or failed event to ``hook``, oldest first, one at a time.

    Each outcome is committed before the next event. After ``max_consecutive_failures``
    failures in a row the hook looks down: the rest wait for the next call. The archive
    records groupsync's own account of a failure, never what the hook printed: that goes
    to ``outputs``, outside the archive.
    """
    report = DeliveryReport()
    todo = queries.undelivered_event_ids(archive)
    streak = 0
    for index, event_id in enumerate(todo):
        if should_stop() or streak >= max_consecutive_failures:
            report.left = len(todo) - index
            break
        row = queries.event_row(archive, event_id)
        if row is None or row["state"] == "delivered":
            continue
        error: str | None = None
        logged: str | None = None
        output: HookOutput | None = None
        try:
            output = hook(event_payload(row))
        except HookError as ex:
            error, logged, output = ex.summary, str(ex), ex.output
        at = now()
        if outputs is not None and output is not None:
            outputs.save(event_id, at, output)
        with archive.atomic():
            if error is None:
                queries.mark_delivered(archive, event_id, at)
            else:
                queries.mark_failed(archive, event_id, at, error)
        if error is None:
            report.delivered += 1
            streak = 0
        else:
            report.failed += 1
            streak += 1
        if log is not None:
            log(
                {
                    "event": "hook",
                    "level": "info" if error is None else "warning",
                    "event_id": event_id,
                    "post_id": row["post_id"],
                    "outcome": "delivered" if error is None else "failed",
                    "attempts": row["attempts"] + 1,
                    "error": logged,
                }
            )
    return report


# -- running a shell command as the hook ----------------------------------------------------

# What a hook inherits from groupsync's environment: enough to find programs and speak the
# user's language, nothing that authenticates anyone. An allow-list, because a deny-list
# cannot know every credential a service manager or a shell puts in the environment
# (cloud keys, CI tokens, passwords in proxy URLs); ``--hook-env`` passes more on purpose.
HOOK_INHERITED = frozenset(
    {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM"}
)
HOOK_EVENT_VARS = (
    "GROUPSYNC_EVENT_ID", "GROUPSYNC_GROUP_ID", "GROUPSYNC_THREAD_ID", "GROUPSYNC_POST_ID",
)  # fmt: skip
# Bytes kept of each stream a hook prints: the first and the last half, with a marker between.
HOOK_OUTPUT_CAP = 4096
_READ = 65536


def hook_environment(
    environ: Mapping[str, str], *, keep: Iterable[str] = (), extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment a hook starts from: ``HOOK_INHERITED`` and ``LC_*`` from ``environ``,
    the variables named in ``keep``, then ``extra``. groupsync's secret settings are refused
    by name (a ``HookError``), and dropped wherever else they might come from."""
    keep = set(keep)
    refused = sorted(keep & SECRET_ENV_VARS)
    if refused:
        raise HookError(f"a hook may not be given {', '.join(refused)}: it is a secret setting")
    env = {
        name: value
        for name, value in environ.items()
        if name in HOOK_INHERITED or name.startswith("LC_") or name in keep
    }
    env.update(extra or {})
    for name in SECRET_ENV_VARS:
        env.pop(name, None)
    return env


@dataclass(frozen=True)
class HookOutput:
    """What a hook run printed, each stream shortened to ``HOOK_OUTPUT_CAP`` bytes, and its
    exit status (``None`` when it was killed on its timeout)."""

    status: int | None
    stdout: str
    stderr: str


class HookError(GroupsyncError):
    """A hook did not take an event: it failed, timed out or could not be started.

    ``summary`` is groupsync's own account (the archive keeps it); ``str()`` adds the tail
    of what the hook wrote on stderr, for the operator's log; ``output`` is what it printed.
    """

    def __init__(self, summary: str, output: HookOutput | None = None) -> None:
        tail = output.stderr.strip()[-500:] if output is not None else ""
        super().__init__(f"{summary}: {tail}" if tail else summary)
        self.summary = summary
        self.output = output


class _Capture(threading.Thread):
    """Reads a pipe to its end keeping only its first and last ``cap / 2`` bytes, so a hook
    that prints a gigabyte costs a few KiB."""

    def __init__(self, fd: int, cap: int = HOOK_OUTPUT_CAP) -> None:
        super().__init__(daemon=True)
        self.fd = fd
        self.half = cap // 2
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def run(self) -> None:
        try:
            while chunk := os.read(self.fd, _READ):
                self.total += len(chunk)
                room = self.half - len(self.head)
                if room > 0:
                    self.head += chunk[:room]
                    chunk = chunk[room:]
                if chunk:
                    self.tail += chunk
                    del self.tail[: max(0, len(self.tail) - self.half)]
        except OSError:
            pass

    def text(self) -> str:
        cut = self.total - len(self.head) - len(self.tail)
        head = bytes(self.head).decode("utf-8", "replace")
        tail = bytes(self.tail).decode("utf-8", "replace")
        if cut <= 0:
            return (bytes(self.head) + bytes(self.tail)).decode("utf-8", "replace")
        return f"{head}\n[… groupsync kept {2 * self.half} of {self.total} bytes …]\n{tail}"


class ShellHook:
    """Runs a shell command once per event with the event's JSON on stdin.

    Exit 0 within ``timeout`` seconds means delivered. The command's environment is
    ``environ`` (see ``hook_environment``; by default built from ``os.environ``) plus
    ``GROUPSYNC_EVENT_ID``, ``GROUPSYNC_GROUP_ID``, ``GROUPSYNC_THREAD_ID`` and
    ``GROUPSYNC_POST_ID``. What it prints comes back shortened (``HookOutput``). On a
    timeout its whole process group is killed, so a hook's own children cannot keep it alive.
    """

    def __init__(
        self, command: str, timeout: float = 60.0, environ: Mapping[str, str] | None = None
    ) -> None:
        self.command = command
        self.timeout = timeout
        self.environ = dict(hook_environment(os.environ) if environ is None else environ)

    @classmethod
    def for_archive(
        cls, command: str, db: str | os.PathLike[str], *, timeout: float, keep: Iterable[str] = ()
    ) -> ShellHook:
        """``watch --on-new``'s hook: it is told the archive's path (``GROUPSYNC_DB``), and
        gets the variables named in ``keep`` besides the usual ones (never a secret)."""
        extra = {"GROUPSYNC_DB": os.path.abspath(db)}
        return cls(command, timeout, hook_environment(os.environ, keep=keep, extra=extra))

    def __call__(self, event: dict[str, Any]) -> HookOutput:
        meta = event.get("@groupsync.event") or {}
        thread = (event.get("threads") or [{}])[0]
        post = (thread.get("posts") or [{}])[0]
        env = {
            **self.environ,
            "GROUPSYNC_EVENT_ID": str(meta.get("id", "")),
            "GROUPSYNC_GROUP_ID": str(meta.get("groupId", "")),
            "GROUPSYNC_THREAD_ID": str(thread.get("id", "")),
            "GROUPSYNC_POST_ID": str(post.get("id", "")),
        }
        for name in SECRET_ENV_VARS:
            env.pop(name, None)
        data = (json.dumps(event, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            proc = subprocess.Popen(
                self.command,
                shell=True,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                start_new_session=True,
            )
        except OSError as ex:
            raise HookError(f"cannot start the hook: {ex.strerror}") from None
        assert proc.stdin and proc.stdout and proc.stderr  # PIPE gives all three
        readers = [_Capture(proc.stdout.fileno()), _Capture(proc.stderr.fileno())]
        feeder = threading.Thread(target=_feed, args=(proc.stdin, data), daemon=True)
        for thread_ in (*readers, feeder):
            thread_.start()
        timed_out = False
        try:
            proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
            proc.wait()
        except BaseException:
            _kill_group(proc)
            proc.wait()
            raise
        finally:
            # A grandchild that left the process group may hold the pipes open: do not wait
            # for it forever.
            for thread_ in (feeder, *readers):
                thread_.join(timeout=2.0)
            proc.stdout.close()
            proc.stderr.close()
        output = HookOutput(
            None if timed_out else proc.returncode, readers[0].text(), readers[1].text()
        )
        if timed_out:
            raise HookError(f"the hook did not finish within {self.timeout:g} s", output)
        if proc.returncode != 0:
            raise HookError(f"the hook exited with status {proc.returncode}", output)
        return output


def _feed(stdin: IO[bytes], data: bytes) -> None:
    # A hook need not read its stdin: a broken pipe is no failure.
    with contextlib.suppress(OSError):
        stdin.write(data)
    with contextlib.suppress(OSError):
        stdin.close()


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


# -- where hook output is kept ------------------------------------------------------------


def hook_output_path(db: str | os.PathLike[str]) -> str:
    """``<db>.hooks``: beside the archive, never inside it (Datasette serves the archive)."""
    return os.fspath(db) + ".hooks"
