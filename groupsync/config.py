"""Settings: flag > environment (``GROUPSYNC_*``) > TOML file > default."""

from __future__ import annotations

import dataclasses
import getpass
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

DEFAULT_GRAPH_URL = "https://graph.microsoft.com/v1.0"
DEFAULT_CONFIG_FILE = "groupsync.toml"
AUTH_MODES = ("device", "app")
# Delegated scopes for `groupsync login`: read the groups one belongs to, read and write their
# conversations (reply-to-thread documents only Group.ReadWrite.All). App-only always uses
# https://graph.microsoft.com/.default, i.e. whatever application roles an admin granted.
DEFAULT_SCOPES = "User.Read GroupMember.Read.All Group.ReadWrite.All"
SECRET_FIELDS = frozenset({"access_token", "client_secret", "certificate_password"})


def cli_actor() -> str:
    """Who the access log names for a command-line access: ``os:<login name>``, or
    ``GROUPSYNC_ACTOR`` when set (a service account acting for a named person)."""
    override = os.environ.get("GROUPSYNC_ACTOR", "").strip()
    if override:
        return override
    try:
        return "os:" + getpass.getuser()
    except (KeyError, OSError):
        return f"os:uid {os.getuid()}"


@dataclass(frozen=True)
class ThrottleProfile:
    """Whose budget a client keeps to: the window (``rate``) and what it is counted per."""

    name: str
    rate: tuple[int, float]
    per_mailbox: bool
    description: str


# The connector allows 100 calls per 60 s per connection; Graph counts Outlook requests per
# app and mailbox, 10,000 per 10 minutes (concepts/throttling-limits.md, "Outlook service
# limits"). Both cap requests in flight at 4 for the app unless told otherwise.
THROTTLE_PROFILES = {
    "connector": ThrottleProfile(
        "connector", (100, 60.0), False, "100 calls per 60 s for the whole connection"
    ),
    "graph": ThrottleProfile(
        "graph", (10_000, 600.0), True, "10,000 requests per 10 minutes per group mailbox"
    ),
}


def default_token_cache() -> str:
    """Where msal's cache lives unless told: the XDG config folder, not the work tree."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "groupsync", "token_cache.json")


@dataclass(frozen=True)
class Settings:
    """Everything groupsync needs to reach Graph and the archive.

    ``rate`` is ``(calls, seconds)`` or ``None`` for no throttle; left at its default it
    is the ``throttle_profile``'s window (see ``window``). ``max_concurrency`` caps requests
    in flight for the app, ``mailbox_concurrency`` per mailbox (0: no cap of its own).
    ``sources`` records where each value came from (``flag``, ``env``, ``file``,
    ``default``) for ``config show``.
    """

    graph_url: str = DEFAULT_GRAPH_URL
    access_token: str | None = field(default=None, repr=False)
    db: str = "groupsync.db"
    rate: tuple[int, float] | None = (100, 60.0)
    max_concurrency: int = 4
    throttle_profile: str = "connector"
    mailbox_concurrency: int = 0
    timeout: float = 60.0
    tenant_id: str | None = None
    client_id: str | None = None
    auth_mode: str = "device"
    client_secret: str | None = field(default=None, repr=False)
    certificate_path: str | None = None
    certificate_thumbprint: str | None = None
    certificate_password: str | None = field(default=None, repr=False)
    authority_host: str = "https://login.microsoftonline.com"
    token_cache: str = field(default_factory=default_token_cache)
    scopes: str = DEFAULT_SCOPES
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def profile(self) -> ThrottleProfile:
        return THROTTLE_PROFILES[self.throttle_profile]

    @property
    def window(self) -> tuple[int, float] | None:
        """The rate the throttle keeps: ``rate`` when set anywhere, else the profile's."""
        if self.sources.get("rate", "default") != "default" or self.throttle_profile == "connector":
            return self.rate
        return self.profile.rate

    def masked(self) -> dict[str, Any]:
        """The settings as a dict with secrets replaced, safe to print."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "sources":
                continue
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS and value:
                value = "********"
            elif f.name == "rate":
                value = format_rate(value)
            out[f.name] = value
        return out


# What each setting means and which values it takes, for people: docs/configuration.md is
# generated from this (cog), and a test keeps it in step with ``Settings``.
SETTING_DOCS: dict[str, tuple[str, str]] = {
    "graph_url": ("Graph's base URL; the simulator's for tests and the demo", ""),
    "access_token": ("a static bearer token; when set, msal is not used", ""),
    "db": ("the archive's path", ""),
    "rate": (
        "calls per window, shared by every groupsync process on the archive "
        "(`<db>.throttle`); the default is the connector's limit",
        "`CALLS/SECONDS`: CALLS a whole number from 1 to 100,000, SECONDS from 0.001 to "
        "86,400; or `0` / `off`",
    ),
    "max_concurrency": (
        "requests in flight for the app (Outlook's limit is 4)",
        "a whole number from 1 to 64",
    ),
    "throttle_profile": (
        "whose budget the window keeps to: `connector` (`rate` per connection) or `graph` "
        "(10,000 requests per 10 minutes per group mailbox, unless `rate` is set)",
        "`connector`, `graph`",
    ),
    "mailbox_concurrency": (
        "requests in flight per group mailbox; 0: no cap of its own",
        "a whole number from 0 to 64",
    ),
    "timeout": ("seconds one request may take", "from 0.001 to 3,600"),
    "tenant_id": ("your Entra tenant; device login uses `organizations` without it", ""),
    "client_id": ("your Entra app registration", ""),
    "auth_mode": ("who signs in: a person, or the app itself", "`device`, `app`"),
    "client_secret": ("the app's secret, for `auth_mode = app`", ""),
    "certificate_path": ("the app's certificate, for `auth_mode = app`", "a PEM or PFX file"),
    "certificate_thumbprint": ("the PEM certificate's thumbprint", ""),
    "certificate_password": ("the certificate's password", ""),
    "authority_host": ("where msal signs in", ""),
    "token_cache": ("msal's token cache file (0600)", ""),
    "scopes": ("delegated permissions asked for at device login", ""),
}


_ENV = {f.name: "GROUPSYNC_" + f.name.upper() for f in dataclasses.fields(Settings)}
_ENV.pop("sources")
_FIELDS = {f.name: f for f in dataclasses.fields(Settings) if f.name != "sources"}
# The environment variables that carry a secret setting: what `config show` masks, never
# handed on to a hook.
SECRET_ENV_VARS = frozenset(_ENV[name] for name in SECRET_FIELDS)


# The ranges a number may take; the README's Configuration section lists them.
RATE_CALLS = (1, 100_000)  # calls per window
RATE_SECONDS = (0.001, 86_400.0)  # the window: a millisecond to a day
TIMEOUT_SECONDS = (0.001, 3_600.0)  # one request: a millisecond to an hour
MAX_CONCURRENCY = (1, 64)  # requests in flight


def parse_rate(value: Any) -> tuple[int, float] | None:
    """``"100/60"`` → ``(100, 60.0)``; ``"0"``, ``"off"`` or ``0`` → ``None`` (no throttle).

    CALLS is a whole number from 1 to 100,000, SECONDS a number from 0.001 to 86,400.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(f"rate must look like CALLS/SECONDS (e.g. 100/60) or 0, not {value!r}")
    if isinstance(value, tuple | list) and len(value) == 2:
        value = f"{value[0]}/{value[1]}"
    text = str(value).strip().lower()
    if text in {"0", "off", "none", ""}:
        return None
    calls, sep, seconds = text.partition("/")
    problem = (
        f"rate must look like CALLS/SECONDS (e.g. 100/60) or 0, with CALLS from "
        f"{RATE_CALLS[0]} to {RATE_CALLS[1]:,} and SECONDS from {RATE_SECONDS[0]:g} to "
        f"{RATE_SECONDS[1]:,g}, not {_shown(value)}"
    )
    try:
        n, s = int(calls), float(seconds) if sep else 0.0
    except ValueError:
        raise ConfigError(problem) from None
    if not (_within(n, RATE_CALLS) and _within(s, RATE_SECONDS)):
        raise ConfigError(problem)
    return n, s


def _within(number: float, bounds: tuple[float, float]) -> bool:
    """In range, and so finite: NaN is in no range."""
    return math.isfinite(number) and bounds[0] <= number <= bounds[1]


def _shown(value: Any) -> str:
    """A value for an error message: its repr, cut short (it may be a whole file's line)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _whole_number(name: str, value: Any, bounds: tuple[int, int]) -> int:
    problem = f"{name} must be a whole number from {bounds[0]} to {bounds[1]}, not {_shown(value)}"
    if isinstance(value, bool):
        raise ConfigError(problem)
    if isinstance(value, float):
        if not value.is_integer():
            raise ConfigError(problem)
        value = int(value)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(problem) from None
    if number < bounds[0]:
        raise ConfigError(f"{name} must be at least {bounds[0]}, not {_shown(value)}")
    if number > bounds[1]:
        raise ConfigError(problem)
    return number


def _seconds(name: str, value: Any, bounds: tuple[float, float]) -> float:
    problem = (
        f"{name} must be a number of seconds from {bounds[0]:g} to {bounds[1]:,g}, "
        f"not {_shown(value)}"
    )
    if isinstance(value, bool):
        raise ConfigError(problem)
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(problem) from None
    if not _within(number, bounds):
        raise ConfigError(problem)
    return number


def format_rate(rate: tuple[int, float] | None) -> str:
    if rate is None:
        return "0"
    calls, seconds = rate
    return f"{calls}/{seconds:g}"


def _coerce(name: str, value: Any) -> Any:
    if name == "rate":
        return parse_rate(value)
    if name == "max_concurrency":
        return _whole_number(name, value, MAX_CONCURRENCY)
    if name == "mailbox_concurrency":
        return _whole_number(name, value, (0, MAX_CONCURRENCY[1]))
    if name == "throttle_profile":
        profile = str(value).strip().lower()
        if profile not in THROTTLE_PROFILES:
            choices = ", ".join(THROTTLE_PROFILES)
            raise ConfigError(f"throttle_profile must be one of {choices}, not {value!r}")
        return profile
    if name == "timeout":
        return _seconds(name, value, TIMEOUT_SECONDS)
    if isinstance(value, str) and not _is_utf8(value):
        raw = value.encode("utf-8", "surrogateescape")
        raise ConfigError(f"{name} is not UTF-8 text: {_shown(raw)}")
    if name == "auth_mode":
        mode = str(value).strip().lower()
        if mode not in AUTH_MODES:
            raise ConfigError(f"auth_mode must be one of {', '.join(AUTH_MODES)}, not {value!r}")
        return mode
    if name == "graph_url":
        url = str(value).strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"graph_url must be an http(s) URL, not {value!r}")
        return url
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, not {value!r}")
    return value


def _is_utf8(text: str) -> bool:
    """False for text holding bytes that were not UTF-8 (an environment variable or an
    argument decoded with surrogateescape): they cannot reach a file name or a URL."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The TOML file's settings; unknown keys are an error so typos do not pass silently."""
    try:
        with open(path, "rb") as fp:
            data = tomllib.load(fp)
    except OSError as ex:
        raise ConfigError(f"cannot read config file {path}: {ex.strerror}") from None
    except tomllib.TOMLDecodeError as ex:
        raise ConfigError(f"config file {path} is not valid TOML: {ex}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text (TOML must be)") from None
    data = data.get("groupsync", data)
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
    return data


def load_settings(
    flags: Mapping[str, Any] | None = None,
    *,
    config_path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge the four layers. ``flags`` with value ``None`` mean "not given".

    An explicit ``config_path`` must exist; the default ``./groupsync.toml`` is optional.
    """
    environ = os.environ if environ is None else environ
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if config_path is not None:
        layers.append(("file", read_config_file(config_path)))
    elif os.path.exists(DEFAULT_CONFIG_FILE):
        layers.append(("file", read_config_file(DEFAULT_CONFIG_FILE)))
    env_values = {name: environ[var] for name, var in _ENV.items() if environ.get(var)}
    layers.append(("env", env_values))
    layers.append(("flag", {k: v for k, v in (flags or {}).items() if v is not None}))

    values: dict[str, Any] = {}
    sources = {name: "default" for name in _FIELDS}
    for source, layer in layers:
        for name, value in layer.items():
            if name not in _FIELDS:
                raise ConfigError(f"unknown setting {name!r}")
            try:
                values[name] = _coerce(name, value)
            except ConfigError as ex:
                where = {"env": _ENV[name], "flag": "--" + name.replace("_", "-")}
                shown = where.get(source, str(config_path or DEFAULT_CONFIG_FILE))
                raise ConfigError(f"{shown}: {ex}") from None
            sources[name] = source
    if values.get("certificate_path") and not values.get("certificate_thumbprint"):
        path = Path(values["certificate_path"])
        if path.suffix.lower() not in {".pfx", ".p12"}:
            raise ConfigError("a PEM certificate needs certificate_thumbprint as well")
    return Settings(**values, sources=sources)

