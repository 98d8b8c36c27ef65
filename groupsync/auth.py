"""Access tokens for Microsoft Graph, through msal, with a 0600 token cache file.

Three ways to a token, picked by :func:`token_provider`::

    GROUPSYNC_ACCESS_TOKEN set ──► StaticToken        (a fixed token; cannot refresh)
    auth_mode = "device"       ──► MsalTokens ──► PublicClientApplication
                                   (device code at `groupsync login`, then silent refresh)
    auth_mode = "app"          ──► MsalTokens ──► ConfidentialClientApplication
                                   (client credentials: secret, PEM or PFX certificate)

This is the only module that imports ``msal``. The only test seam is msal's own
``http_client`` parameter, passed through unchanged.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import getpass
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import msal
from msal.exceptions import MsalError

from .config import Settings
from .errors import AuthError, ConfigError, GroupsyncError
from .files import create_private, private_dir
from .graph import TokenProvider

__all__ = [
    "CACHE_FORMAT_VERSION",
    "GRAPH_APP_SCOPE",
    "MsalTokens",
    "StaticToken",
    "TokenCacheFile",
    "audit_identity",
    "identity_label",
    "login_app",
    "login_device",
    "logout",
    "os_user",
    "token_provider",
    "whoami",
]

CACHE_FORMAT_VERSION = 1
# App-only tokens can only ask for "whatever application roles an admin granted".
GRAPH_APP_SCOPE = "https://graph.microsoft.com/.default"
NOT_SIGNED_IN = "not signed in; run `groupsync login`"
_GRAPH_RESOURCE = "https://graph.microsoft.com/"
_RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})
_MULTI_TENANT = frozenset({"common", "organizations", "consumers"})
_PFX_SUFFIXES = frozenset({".pfx", ".p12"})
# Failures msal lets through: requests' errors are OSErrors, bad answers ValueError/KeyError.
_MSAL_FAILURES = (OSError, ValueError, KeyError, MsalError)

_ACCOUNT = msal.TokenCache.CredentialType.ACCOUNT
_ACCESS_TOKEN = msal.TokenCache.CredentialType.ACCESS_TOKEN
_REFRESH_TOKEN = msal.TokenCache.CredentialType.REFRESH_TOKEN


class StaticToken:
    """A fixed access token from ``GROUPSYNC_ACCESS_TOKEN``.

    It cannot be refreshed, so ``force_refresh=True`` (Graph said 401) is an error
    telling the person to fetch a new one.
    """

    def __init__(self, token: str) -> None:
        token = token.strip()
        if token[:7].lower() == "bearer ":
            token = token[7:].strip()
        if not token:
            raise ConfigError("GROUPSYNC_ACCESS_TOKEN is empty")
        self._token = token

    def __call__(self, force_refresh: bool = False) -> str:
        if force_refresh:
            raise AuthError("the access token in GROUPSYNC_ACCESS_TOKEN was refused; get a new one")
        return self._token

    @property
    def identity(self) -> dict[str, Any]:
        """Nothing is known about a bare token's owner; groupsync does not decode it."""
        return {"mode": "token", "username": None, "app_id": None, "tenant_id": None}

    def __repr__(self) -> str:
        return "StaticToken(token='********')"


class TokenCacheFile:
    """An ``msal.SerializableTokenCache`` kept in a file only its owner can read.

    ``path``: the file (``~`` is expanded). The file holds
    ``{"version": 1, "msal": <msal's cache>}``; a missing file is an empty cache,
    a corrupt one an :class:`AuthError` naming the path. :meth:`save` replaces the
    file atomically, so a crash leaves either the old cache or the new one.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        self.cache = msal.SerializableTokenCache()
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._load()

    def _load(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as fp:
                stamp = _stamp(os.fstat(fp.fileno()))
                text = fp.read()
        except FileNotFoundError:
            self.cache.deserialize(None)
            self._stamp = None
            return
        except (OSError, UnicodeDecodeError) as ex:
            detail = getattr(ex, "strerror", None) or "not UTF-8 text"
            raise AuthError(f"cannot read the token cache {self.path}: {detail}") from None
        self.cache.deserialize(json.dumps(self._parse(text)))
        self._stamp = stamp

    def reload_if_changed(self) -> None:
        """Pick up another process's login or logout, unless this one has unsaved changes.

        A long-running ``groupsync watch`` and a ``groupsync login`` in another terminal
        share the file; without this, the next save here would undo that login.
        """
        with self._lock:
            if self.cache.has_state_changed:
                return
            try:
                current: tuple[int, int, int] | None = _stamp(os.stat(self.path))
            except FileNotFoundError:
                current = None
            except OSError:
                return
            if current != self._stamp:
                self._load()

    def _parse(self, text: str) -> dict[str, Any]:
        problem = f"the token cache {self.path} is corrupt; run `groupsync logout` and log in again"
        try:
            data = json.loads(text)
        except ValueError:
            raise AuthError(problem) from None
        if not isinstance(data, dict) or not isinstance(data.get("version"), int):
            raise AuthError(problem)
        if data["version"] != CACHE_FORMAT_VERSION:
            raise AuthError(
                f"the token cache {self.path} has format version {data['version']}, "
                f"this groupsync reads version {CACHE_FORMAT_VERSION}; "
                "run `groupsync logout` and log in again"
            )
        content = data.get("msal")
        if not isinstance(content, dict) or not all(isinstance(v, dict) for v in content.values()):
            raise AuthError(problem)
        return content

    def save(self) -> None:
        """Write the cache if msal changed it; never leaves a readable-by-others copy."""
        with self._lock:
            if not self.cache.has_state_changed:
                return
            payload = {"version": CACHE_FORMAT_VERSION, "msal": json.loads(self.cache.serialize())}
            try:
                self._stamp = _write_private(
                    self.path, json.dumps(payload, indent=2, sort_keys=True) + "\n"
                )
            except OSError as ex:
                self.cache.has_state_changed = True  # serialize() cleared it; keep trying later
                detail = ex.strerror or str(ex)
                raise AuthError(f"cannot write the token cache {self.path}: {detail}") from None

    def __repr__(self) -> str:
        return f"TokenCacheFile({str(self.path)!r})"


def _stamp(st: os.stat_result) -> tuple[int, int, int]:
    """Enough of a file's identity to notice that someone else replaced it."""
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _write_private(path: Path, text: str) -> tuple[int, int, int]:
    """Temp file in the same folder, created 0600, fsynced, then ``os.replace``d.

    Creating it with mode 0600 (rather than chmod after writing) means the secret is
    never world-readable, not even for an instant. Returns the new file's stamp.
    """
    parent = private_dir(path.parent)  # missing parents too, 0700 whatever the umask
    tmp = parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    try:
        with create_private(tmp) as fp:
            fp.write(text.encode("utf-8"))
            fp.flush()
            os.fsync(fp.fileno())
            stamp = _stamp(os.fstat(fp.fileno()))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if os.name == "posix":  # make the rename itself durable
        with contextlib.suppress(OSError):
            dir_fd = os.open(parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    return stamp


def _temp_files(path: Path) -> list[Path]:
    """Leftovers of a save that crashed between create and rename: they hold tokens too."""
    try:
        return sorted(path.parent.glob(f".{path.name}.*.tmp"))
    except OSError:
        return []


def _first_line(text: object) -> str:
    lines = str(text).strip().splitlines()
    return lines[0].strip() if lines else ""


def _describe(result: dict[str, Any] | None) -> str:
    """One line from an msal error dict: Entra's description starts ``AADSTS…: why``."""
    if not result:
        return "no answer"
    return (
        _first_line(result.get("error_description") or "")
        or str(result.get("error") or "")
        or "no access token in the answer"
    )


@contextlib.contextmanager
def _msal_errors(what: str) -> Iterator[None]:
    """Turn what msal raises (network, odd answers) into a one-line :class:`AuthError`."""
    try:
        yield
    except _MSAL_FAILURES as ex:
        detail = _first_line(ex) or type(ex).__name__
        raise AuthError(f"{what}: {detail}") from None


class MsalTokens:
    """A :class:`~groupsync.graph.TokenProvider` over msal, for both ``auth_mode`` values.

    ``settings``: tenant, client id, credentials, scopes and the cache path.
    ``http_client``: handed to msal unchanged (msal's own seam); ``None`` lets msal
    use ``requests``. The msal application is built on first use, because building
    it asks the tenant's OpenID configuration over the network. Calls are serialised
    with a lock, so one provider can serve several threads.
    """

    def __init__(self, settings: Settings, *, http_client: object | None = None) -> None:
        self._mode = _check_mode(settings)
        self._settings = settings
        self._authority = _authority(settings, self._mode)
        self._scopes = _delegated_scopes(settings) if self._mode == "device" else [GRAPH_APP_SCOPE]
        if self._mode == "app":
            _check_app_credential(settings)
        self._host = (urlparse(self._authority).hostname or "").lower()
        self._http_client = http_client
        self._lock = threading.RLock()
        self._cache_file: TokenCacheFile | None = None
        self._app: Any = None

    def __repr__(self) -> str:
        return (
            f"MsalTokens(mode={self._mode!r}, app_id={self._settings.client_id!r}, "
            f"authority={self._authority!r}, token_cache={str(self._settings.token_cache)!r})"
        )

    def __call__(self, force_refresh: bool = False) -> str:
        with self._lock:
            cache = self._open_cache()
            try:
                if self._mode == "app":
                    return self._app_token(force_refresh)
                return self._user_token(force_refresh)
            finally:
                cache.save()

    @property
    def identity(self) -> dict[str, Any]:
        """Who the tokens are for, read from the cache without network. Never a token."""
        with self._lock:
            self._open_cache()
            account = self._account() if self._mode == "device" else None
        return self._identity(account)

    # -- internals shared with login_device / login_app / whoami ------------------

    def _cache(self) -> TokenCacheFile:
        if self._cache_file is None:
            self._cache_file = TokenCacheFile(self._settings.token_cache)
        return self._cache_file

    def _open_cache(self) -> TokenCacheFile:
        """The cache as the file has it now: entry points call this once, under the lock."""
        if self._cache_file is None:
            return self._cache()
        self._cache_file.reload_if_changed()
        return self._cache_file

    def _msal_app(self) -> Any:
        if self._app is not None:
            return self._app
        options: dict[str, Any] = {
            "authority": self._authority,
            "token_cache": self._cache().cache,
            "timeout": self._settings.timeout,
            "app_name": "groupsync",
        }
        if self._http_client is not None:
            options["http_client"] = self._http_client
        client_id = self._settings.client_id
        with _msal_errors(f"cannot prepare the sign-in with {self._authority}"):
            if self._mode == "app":
                credential = _app_credential(self._settings)
                self._app = msal.ConfidentialClientApplication(
                    client_id, client_credential=credential, **options
                )
            else:
                self._app = msal.PublicClientApplication(client_id, **options)
        return self._app

    def _accounts(self) -> list[dict[str, Any]]:
        """Accounts in the cache, those of this authority's host first; no network."""
        accounts = list(self._cache().cache.search(_ACCOUNT))
        same_host = [a for a in accounts if str(a.get("environment", "")).lower() == self._host]
        return same_host or accounts

    def _account(self) -> dict[str, Any] | None:
        accounts = self._accounts()
        return accounts[0] if accounts else None

    def _identity(self, account: dict[str, Any] | None) -> dict[str, Any]:
        tenant = self._settings.tenant_id
        username = None
        if account:
            username = account.get("username") or None
            home = str(account.get("home_account_id") or "")
            # home_account_id is "<object id>.<home tenant id>" (msal's client_info uid.utid)
            if "." in home:
                tenant = home.split(".", 1)[1]
            elif account.get("realm") and account["realm"] not in _MULTI_TENANT:
                tenant = account["realm"]
        return {
            "mode": self._mode,
            "username": username,
            "app_id": self._settings.client_id,
            "tenant_id": tenant,
        }

    def _user_token(self, force_refresh: bool) -> str:
        wanted = self._account()
        if wanted is None:  # nothing to refresh from; do not touch the network
            raise AuthError(NOT_SIGNED_IN)
        app = self._msal_app()
        with _msal_errors("cannot refresh the sign-in"):
            accounts = app.get_accounts()
            account = next(
                (a for a in accounts if a.get("home_account_id") == wanted["home_account_id"]),
                accounts[0] if accounts else None,
            )
            if account is None:
                raise AuthError(NOT_SIGNED_IN)
            result = app.acquire_token_silent_with_error(
                self._scopes, account=account, force_refresh=force_refresh
            )
        if not result:
            raise AuthError(NOT_SIGNED_IN)
        if "access_token" not in result:
            raise AuthError(
                f"the sign-in could not be refreshed ({_describe(result)}); run `groupsync login`"
            )
        return str(result["access_token"])

    def _drop_app_tokens(self) -> None:
        """msal 1.39's acquire_token_for_client refuses force_refresh: forget its tokens."""
        cache = self._cache().cache
        query = {"client_id": self._settings.client_id, "home_account_id": None}
        for entry in list(cache.search(_ACCESS_TOKEN, query=query)):
            cache.remove_at(entry)

    def _app_token(self, force_refresh: bool) -> str:
        app = self._msal_app()
        if force_refresh:
            self._drop_app_tokens()
        with _msal_errors("cannot get an app-only token"):
            result = app.acquire_token_for_client(scopes=[GRAPH_APP_SCOPE])
        if not result or "access_token" not in result:
            raise AuthError(f"the app could not get a token: {_describe(result)}")
        return str(result["access_token"])

    def _login_device(self, show: Callable[[str], None]) -> dict[str, Any]:
        with self._lock:
            cache = self._open_cache()
            app = self._msal_app()
            try:
                with _msal_errors("device code sign-in failed"):
                    flow = app.initiate_device_flow(scopes=self._scopes)
                if "user_code" not in flow:
                    raise AuthError(f"cannot start the device code sign-in: {_describe(flow)}")
                show(str(flow["message"]))
                with _msal_errors("device code sign-in failed"):
                    result = app.acquire_token_by_device_flow(flow)
                if not result or "access_token" not in result:
                    raise AuthError(f"sign-in failed: {_describe(result)}")
                self._forget_other_accounts(app, result)
            finally:
                cache.save()
            claims = result.get("id_token_claims") or {}
            account = next(
                (a for a in self._accounts() if a.get("local_account_id") == claims.get("oid")),
                self._account(),
            )
            return self._identity(account)

    def _forget_other_accounts(self, app: Any, result: dict[str, Any]) -> None:
        """One person per cache: signing in as someone else replaces the previous account."""
        oid = (result.get("id_token_claims") or {}).get("oid")
        if not oid:
            return
        for account in self._accounts():
            if account.get("local_account_id") != oid:
                app.remove_account(account)

    def _login_app(self) -> dict[str, Any]:
        with self._lock:
            cache = self._open_cache()
            try:
                # A cached token would prove nothing about today's secret or certificate.
                self._app_token(force_refresh=True)
            finally:
                cache.save()
            return self._identity(None)

    def _whoami(self) -> dict[str, Any]:
        with self._lock:
            cache = self._open_cache().cache
            account = None
            token_query: dict[str, Any] = {"client_id": self._settings.client_id}
            if self._mode == "device":
                account = self._account()
                if account is None:
                    raise AuthError(NOT_SIGNED_IN)
                token_query["home_account_id"] = account.get("home_account_id")
            else:
                token_query["home_account_id"] = None
            now = time.time()
            expiries = [
                int(at["expires_on"])
                for at in cache.search(_ACCESS_TOKEN, query=token_query)
                if int(at.get("expires_on", 0)) > now
            ]
            info = self._identity(account)
            info["token_cached"] = bool(expiries)
            info["token_expires_on"] = max(expiries) if expiries else None
            if self._mode == "device":
                refresh_query = {
                    "client_id": self._settings.client_id,
                    "home_account_id": token_query["home_account_id"],
                }
                info["refresh_token_cached"] = any(
                    True for _ in cache.search(_REFRESH_TOKEN, query=refresh_query)
                )
            info["token_cache"] = str(self._cache().path)
            return info


def _check_mode(settings: Settings) -> str:
    if settings.auth_mode not in {"device", "app"}:
        raise ConfigError(f"auth_mode must be device or app, not {settings.auth_mode!r}")
    if not settings.client_id:
        raise ConfigError(
            "no client id: set GROUPSYNC_CLIENT_ID (the app registration's Application ID)"
        )
    return settings.auth_mode


def _authority(settings: Settings, mode: str) -> str:
    tenant = (settings.tenant_id or "").strip()
    if mode == "app":
        if not tenant or tenant.lower() in _MULTI_TENANT:
            raise ConfigError(
                "app mode needs the tenant id (GROUPSYNC_TENANT_ID), not common or organizations"
            )
    elif not tenant:
        tenant = "organizations"  # any work or school account
    elif tenant.lower() == "consumers":
        raise ConfigError("personal Microsoft accounts cannot use group conversations")
    host = settings.authority_host.strip().rstrip("/")
    if not host.startswith("https://"):
        raise ConfigError(f"authority_host must be an https URL, not {settings.authority_host!r}")
    return f"{host}/{tenant}"


def _delegated_scopes(settings: Settings) -> list[str]:
    """The configured scopes as msal wants them, Graph's by their short names.

    Entra answers a request for ``User.Read`` with ``scope: "User.Read ..."`` and msal
    finds cached tokens by that answer, so asking with the full
    ``https://graph.microsoft.com/User.Read`` would miss the cache on every call.
    """
    scopes: list[str] = []
    for scope in settings.scopes.split():
        if scope.lower() in _RESERVED_SCOPES:
            continue  # msal adds them itself and refuses them from callers
        if scope.lower().startswith(_GRAPH_RESOURCE) and not scope.endswith("/.default"):
            scope = scope[len(_GRAPH_RESOURCE) :]
        if scope not in scopes:
            scopes.append(scope)
    if not scopes:
        raise ConfigError("scopes is empty: name the Graph permissions to ask for")
    return scopes


def _check_app_credential(settings: Settings) -> None:
    """Cheap checks (no file reads) so a bad combination fails before any network."""
    if settings.client_secret and settings.certificate_path:
        raise ConfigError("give either client_secret or certificate_path, not both")
    if not settings.client_secret and not settings.certificate_path:
        raise ConfigError("app mode needs client_secret or certificate_path")
    if settings.certificate_path and not _is_pfx(settings.certificate_path):
        _thumbprint(settings.certificate_thumbprint)


def _is_pfx(path: str) -> bool:
    return Path(path).suffix.lower() in _PFX_SUFFIXES


def _thumbprint(value: str | None) -> str:
    """msal signs PEM keys with the SHA-1 thumbprint, as the portal shows it (hex)."""
    text = (value or "").replace(":", "").replace(" ", "").strip()
    if len(text) != 40 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise ConfigError(
            "a PEM certificate needs certificate_thumbprint: its SHA-1 thumbprint, 40 hex digits"
        )
    return text.upper()


def _app_credential(settings: Settings) -> str | dict[str, str]:
    """msal's ``client_credential``: the secret, or a certificate dict in msal's key names."""
    _check_app_credential(settings)
    if settings.client_secret:
        return settings.client_secret
    path = Path(str(settings.certificate_path)).expanduser()
    credential: dict[str, str]
    if _is_pfx(str(path)):
        try:
            with open(path, "rb"):
                pass
        except OSError as ex:
            raise ConfigError(f"cannot read certificate {path}: {ex.strerror}") from None
        credential = {"private_key_pfx_path": str(path)}  # msal >= 1.29
    else:
        try:
            pem = path.read_text(encoding="utf-8")
        except OSError as ex:
            raise ConfigError(f"cannot read certificate {path}: {ex.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(
                f"certificate {path} is not PEM text (use .pfx for PKCS#12)"
            ) from None
        if "PRIVATE KEY-----" not in pem:
            raise ConfigError(f"certificate {path} holds no PEM private key")
        credential = {
            "private_key": pem,
            "thumbprint": _thumbprint(settings.certificate_thumbprint),
        }
    if settings.certificate_password:
        credential["passphrase"] = settings.certificate_password
    return credential


def token_provider(settings: Settings, *, http_client: object | None = None) -> TokenProvider:
    """The provider Graph calls should use: a fixed token wins over msal."""
    if settings.access_token:
        return StaticToken(settings.access_token)
    return MsalTokens(settings, http_client=http_client)


def login_device(
    settings: Settings,
    show: Callable[[str], None],
    *,
    http_client: object | None = None,
) -> dict[str, Any]:
    """Sign a person in with a device code; ``show`` gets the instruction with the code.

    Blocks while msal polls. Works whatever ``settings.auth_mode`` says, and replaces
    any account signed in before. Returns the identity (no tokens).
    """
    tokens = MsalTokens(dataclasses.replace(settings, auth_mode="device"), http_client=http_client)
    return tokens._login_device(show)


def login_app(settings: Settings, *, http_client: object | None = None) -> dict[str, Any]:
    """Prove the app's secret or certificate works by getting a fresh token; cache it."""
    tokens = MsalTokens(dataclasses.replace(settings, auth_mode="app"), http_client=http_client)
    return tokens._login_app()


def logout(settings: Settings) -> bool:
    """Delete the token cache (and any crashed save's temp file). True if one existed.

    Needs no network and no valid settings, so it also cleans up after a broken config.
    """
    path = Path(settings.token_cache).expanduser()
    removed = False
    for victim in [path, *_temp_files(path)]:
        try:
            victim.unlink()
        except FileNotFoundError:
            continue
        except OSError as ex:
            raise AuthError(f"cannot remove the token cache {victim}: {ex.strerror}") from None
        removed = True
    return removed


def whoami(settings: Settings, *, http_client: object | None = None) -> dict[str, Any]:
    """Identity plus whether a token is cached, from the cache alone (no network).

    Device mode without an account raises :class:`AuthError`. App mode needs no
    sign-in, so it always answers (``token_cached`` may be False). With
    ``GROUPSYNC_ACCESS_TOKEN`` set, mode is ``"token"``, as that is what Graph calls use.
    ``http_client`` is accepted for symmetry with the other entry points.
    """
    if settings.access_token:
        info = StaticToken(settings.access_token).identity
        return {**info, "token_cached": True, "token_expires_on": None, "token_cache": None}
    return MsalTokens(settings, http_client=http_client)._whoami()


def is_app_only(settings: Settings) -> bool:
    """Whether Graph sees an application, not a person, behind these settings' tokens.

    Client credentials always are. A static token is read (not verified: only Graph does
    that) for what Entra puts in it: application tokens carry ``roles`` and no ``scp``.
    A token that is not a JWT (the simulator's) counts as a person's.
    """
    if settings.access_token:
        claims = _jwt_claims(settings.access_token)
        return bool(claims) and "scp" not in claims and "roles" in claims
    return settings.auth_mode == "app"


def _jwt_claims(token: str) -> dict[str, Any]:
    parts = token.removeprefix("Bearer ").strip().split(".")
    if len(parts) != 3:
        return {}
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, json.JSONDecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


def identity_label(token: TokenProvider) -> str | None:
    """Who a run acts as, for the audit trail: a UPN, an app id, or the token's mode."""
    identity = getattr(token, "identity", None) or {}
    return identity.get("username") or identity.get("app_id") or identity.get("mode")


def audit_identity(settings: Settings) -> str | None:
    """``identity_label`` for these settings, or None when they cannot name one (a token
    cache that is missing or unreadable): queueing and cancelling need no sign-in."""
    if settings.access_token:
        return "access-token"
    try:
        return identity_label(token_provider(settings))
    except GroupsyncError:
        return None


def os_user() -> str | None:
    """The operating-system account running this process, for the audit; None where the
    system cannot say (a container's uid with no passwd entry)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None
