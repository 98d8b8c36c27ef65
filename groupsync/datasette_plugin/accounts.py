"""Who may log in to ``groupsync serve``, and what each role may see.

Accounts live in a JSON file of their own (0600, written whole), beside the config file:
``groupsync serve-user add NAME --role reader|auditor`` asks for the password and stores
only its hash, made by datasette-auth-passwords' own hasher (PBKDF2-SHA256, 480,000
iterations, a random salt), which is also what checks it at ``/-/login``.

Permissions use Datasette's ``allow`` blocks only, which Datasette 0.65 reads from metadata
and the 1.0 alphas from configuration (they move ``allow`` and ``plugins`` from the
metadata they are given to their configuration themselves): no ``permission_allowed`` hook,
which 1.0a20 removed. The roles:

- ``reader``: the mail (tables, thread view, search, downloads), the canned queries;
- ``auditor``: also the access log, holds and retention policies, events, sync runs,
  exports, the outbox and arbitrary SQL (which could read any table).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from datasette_auth_passwords.utils import hash_password

from ..errors import ConfigError
from ..files import private_dir, write_private

__all__ = [
    "AUDITOR_TABLES",
    "ROLES",
    "USERS_ENV",
    "add_account",
    "load_accounts",
    "login_metadata",
    "remove_account",
    "serve_users_path",
]

ROLES = ("reader", "auditor")
USERS_ENV = "GROUPSYNC_SERVE_USERS"
USERS_FILE = "groupsync-serve-users.json"
FORMAT_VERSION = 1
ACCESS_DATABASE = "access_log"  # the name Datasette gives the access-log file
# Tables of the archive only an auditor sees: who did what, and the bookkeeping. The hold
# and retention tables are named as their migration names them.
AUDITOR_TABLES = (
    "blobs",  # attachment bytes: readers download them through the logged route
    "sync_runs",
    "events",
    "exports",
    "legal_holds",
    "retention_policies",
    "purges",
    "purged_items",
    "governance_log",
    "access_log_seals",
    "_group_delta",
    "_outbox",
    "_outbox_log",
    "_sync_state",
    "_sqlite_migrations",
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


def serve_users_path(config_path: str | os.PathLike[str] | None = None) -> Path:
    """``GROUPSYNC_SERVE_USERS``, else beside the config file (the one given, or
    ``./groupsync.toml`` if there), else in groupsync's XDG config folder."""
    configured = os.environ.get(USERS_ENV, "").strip()
    if configured:
        return Path(configured)
    if config_path is None and Path("groupsync.toml").exists():
        config_path = "groupsync.toml"
    if config_path is not None:
        return Path(config_path).resolve().parent / USERS_FILE
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "groupsync" / USERS_FILE


def load_accounts(path: str | os.PathLike[str]) -> dict[str, dict[str, str]]:
    """``{name: {"role": ..., "password_hash": ...}}``; empty if there is no file."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as ex:
        raise ConfigError(f"cannot read the serve accounts {path}: {ex}") from None
    accounts = data.get("accounts") if isinstance(data, dict) else None
    if not isinstance(accounts, dict) or data.get("version") != FORMAT_VERSION:
        raise ConfigError(f"{path} is not a groupsync serve accounts file")
    for name, account in accounts.items():
        if not isinstance(account, dict) or account.get("role") not in ROLES:
            raise ConfigError(f"{path}: account {name!r} has no valid role")
        if str(account.get("password_hash", "")).count("$") != 3:
            raise ConfigError(f"{path}: account {name!r} has no valid password hash")
    return accounts


def _save(path: Path, accounts: dict[str, dict[str, str]]) -> None:
    private_dir(path.parent)
    text = json.dumps({"version": FORMAT_VERSION, "accounts": accounts}, indent=2, sort_keys=True)
    write_private(path, text.encode("utf-8") + b"\n")


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(
            f"an account name is 1 to 64 letters, digits, '.', '_', '@' or '-', not {name!r}"
        )
    return name


def add_account(path: str | os.PathLike[str], name: str, role: str, password: str) -> bool:
    """Add or replace an account; True if it is new. The password is kept as its hash only."""
    check_name(name)
    if role not in ROLES:
        raise ConfigError(f"a role is one of {', '.join(ROLES)}, not {role!r}")
    if len(password) < 8:
        raise ConfigError("a password has at least 8 characters")
    path = Path(path)
    accounts = load_accounts(path)
    new = name not in accounts
    accounts[name] = {"role": role, "password_hash": hash_password(password)}
    _save(path, accounts)
    return new


def remove_account(path: str | os.PathLike[str], name: str) -> bool:
    """Remove an account; False if there was none by that name."""
    path = Path(path)
    accounts = load_accounts(path)
    if accounts.pop(name, None) is None:
        return False
    _save(path, accounts)
    return True


def login_required(datasette: Any) -> bool:
    """Whether this Datasette was given accounts (``groupsync serve`` with accounts)."""
    config = datasette.plugin_config("datasette-auth-passwords") or {}
    return any(key.endswith("_password_hash") for key in config)


def without_password_tool(datasette: Any, app: Any) -> Any:
    """``app`` answering 404 at ``/-/password-tool`` when accounts are configured: a page
    that hashes any password typed into it is of no use to a visitor of the archive."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if (
            scope.get("type") == "http"
            and scope.get("path", "").rstrip("/").endswith("/-/password-tool")
            and login_required(datasette)
        ):
            await send({"type": "http.response.start", "status": 404,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8")]})  # fmt: skip
            await send({"type": "http.response.body", "body": b"Not found"})
            return
        await app(scope, receive, send)

    return wrapped


def sql_config(metadata: dict[str, Any]) -> dict[str, Any]:
    """The ``allow_sql`` blocks of ``login_metadata`` as Datasette 1.0 configuration."""
    return {
        "allow_sql": metadata["allow_sql"],
        "databases": {
            name: {"allow_sql": db["allow_sql"]}
            for name, db in metadata["databases"].items()
            if "allow_sql" in db
        },
    }


def login_metadata(
    accounts: dict[str, dict[str, str]],
    databases: Iterable[str],
    access_databases: Iterable[str] = (ACCESS_DATABASE,),
) -> dict[str, Any]:
    """Datasette metadata that requires a login, by role, on the archive ``databases`` (and
    the access-log databases), and hands datasette-auth-passwords the accounts' hashes."""
    anyone = {"groupsync_role": list(ROLES)}
    auditors = {"groupsync_role": ["auditor"]}
    plugin: dict[str, Any] = {f"{name}_password_hash": a["password_hash"]
                              for name, a in accounts.items()}  # fmt: skip
    plugin["actors"] = {
        name: {"id": name, "groupsync_role": a["role"]} for name, a in accounts.items()
    }
    archive = {
        "allow": anyone,
        "allow_sql": auditors,
        "tables": {name: {"allow": auditors} for name in AUDITOR_TABLES},
    }
    return {
        "allow": anyone,
        "allow_sql": auditors,
        "databases": {
            **{name: archive for name in databases},
            **{name: {"allow": auditors} for name in access_databases},
        },
        "plugins": {"datasette-auth-passwords": plugin},
    }
