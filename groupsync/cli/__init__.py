"""The ``groupsync`` command: parse options, call the library, print.

One module per family of commands; each registers its commands on ``cli`` when imported.

    base        the group, settings, output helpers and shared option bundles
    signin      login, logout, whoami
    writes      the 7 write actions, the outbox, send
    syncing     sync and its progress line
    reading     the 9 read actions
    serving     serve, its accounts (serve-user), access-log
    schedule    watch, events
    records     export, verify
    searching   search, index
    simulate    simulate
    governance  retention, hold, purge
"""

# Importing a module registers its commands on ``cli``.
from . import (  # noqa: F401
    governance,
    reading,
    records,
    schedule,
    searching,
    serving,
    signin,
    simulate,
    syncing,
    writes,
)
from .base import cli, group_selection_options
from .schedule import _log_line
from .syncing import Progress

__all__ = ["Progress", "_log_line", "cli", "group_selection_options"]
