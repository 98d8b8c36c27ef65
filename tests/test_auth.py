"""groupsync.auth against a fake Microsoft Entra ID behind msal's own ``http_client`` seam."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from groupsync import auth
from groupsync.auth import (
    CACHE_FORMAT_VERSION,
    GRAPH_APP_SCOPE,
    MsalTokens,
    StaticToken,
    TokenCacheFile,
    login_app,
    login_device,
    logout,
    token_provider,
    whoami,
)
from groupsync.config import Settings
from groupsync.errors import AuthError, ConfigError

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "0f5c2a6e-1d2b-4c3d-9e8f-123456789abc"
USER_OID = "b1b2b3b4-0000-4000-8000-000000000001"
OTHER_OID = "c1c2c3c4-0000-4000-8000-000000000002"
HOST = "https://login.microsoftonline.com"
SECRET = "s3cr3t-client-value"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unsigned_jwt(claims: dict[str, Any]) -> str:
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64url(json.dumps(claims).encode())}."


class FakeResponse:
    """The shape msal reads: status_code, text, headers, raise_for_status()."""

    def __init__(self, status_code: int, body: Any) -> None:
        self.status_code = status_code
        self.text = json.dumps(body)
        self.headers = {"Content-Type": "application/json; charset=utf-8"}

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise OSError(f"HTTP {self.status_code}")


class FakeEntra:
    """Answers msal's GETs and POSTs like login.microsoftonline.com; records every request.

    ``pending`` is how many ``authorization_pending`` answers the device poll gets before
    success; ``token_error`` (a dict) makes the token endpoint refuse every request.
    """

    def __init__(self, *, oid: str = USER_OID, username: str = "adele@contoso.example") -> None:
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        self.pending = 1
        self.token_error: dict[str, Any] | None = None
        self.oid = oid
        self.username = username
        self.issued: list[str] = []  # every access and refresh token handed out
        self.access_tokens: list[str] = []
        self.device_scope = ""
        self.post_error: Exception | None = None  # raised by post(), as a dead network would
        self.refresh_tokens: set[str] = set()
        self._n = 0
        self._lock = threading.Lock()

    # -- what msal calls --------------------------------------------------------

    def get(self, url: str, params: Any = None, headers: Any = None, **kw: Any) -> FakeResponse:
        self.requests.append(("GET", url, dict(params or {})))
        parsed = urlparse(url)
        if parsed.path.endswith("/v2.0/.well-known/openid-configuration"):
            tenant = parsed.path.split("/")[1]
            if tenant == "no-such-tenant":
                return FakeResponse(
                    400, {"error": "invalid_tenant", "error_description": "AADSTS90002: not found"}
                )
            base = f"https://{parsed.hostname}/{tenant}"
            return FakeResponse(
                200,
                {
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                    "issuer": f"https://login.microsoftonline.com/{TENANT}/v2.0",
                },
            )
        if parsed.path == "/common/discovery/instance":
            aliases = ["login.microsoftonline.com", "login.windows.net", "login.microsoft.com"]
            return FakeResponse(
                200,
                {
                    "tenant_discovery_endpoint": "unused",
                    "metadata": [
                        {
                            "preferred_network": "login.microsoftonline.com",
                            "preferred_cache": "login.windows.net",
                            "aliases": aliases,
                        }
                    ],
                },
            )
        return FakeResponse(404, {"error": "not_found"})

    def post(
        self, url: str, params: Any = None, data: Any = None, headers: Any = None, **kw: Any
    ) -> FakeResponse:
        form = dict(data or {})
        self.requests.append(("POST", url, form))
        if self.post_error is not None:
            raise self.post_error
        path = urlparse(url).path
        if path.endswith("/oauth2/v2.0/devicecode"):
            self.device_scope = str(form.get("scope", ""))
            return FakeResponse(
                200,
                {
                    "device_code": "device-code-123",
                    "user_code": "ABCD-EFGH",
                    "verification_uri": "https://microsoft.com/devicelogin",
                    "expires_in": 900,
                    "interval": 0,  # msal sleeps this many seconds between polls
                    "message": "To sign in, open https://microsoft.com/devicelogin "
                    "and enter the code ABCD-EFGH to authenticate.",
                },
            )
        if path.endswith("/oauth2/v2.0/token"):
            return self._token(form)
        return FakeResponse(404, {"error": "not_found"})

    # -- the token endpoint -----------------------------------------------------

    def _token(self, form: dict[str, Any]) -> FakeResponse:
        if self.token_error is not None:
            return FakeResponse(401, self.token_error)
        grant = form.get("grant_type")
        if grant == DEVICE_GRANT:
            if self.pending > 0:
                self.pending -= 1
                return FakeResponse(
                    400,
                    {
                        "error": "authorization_pending",
                        "error_description": "AADSTS70016: pending",
                    },
                )
            return FakeResponse(200, self._user_tokens(self.device_scope))
        if grant == "refresh_token":
            if form.get("refresh_token") not in self.refresh_tokens:
                return FakeResponse(
                    400, {"error": "invalid_grant", "error_description": "AADSTS9002313: bad RT"}
                )
            return FakeResponse(200, self._user_tokens(str(form.get("scope", ""))))
        if grant == "client_credentials":
            return FakeResponse(
                200,
                {
                    "token_type": "Bearer",
                    "expires_in": 3599,
                    "access_token": self._new("app-at"),
                },
            )
        return FakeResponse(400, {"error": "unsupported_grant_type"})

    def _new(self, kind: str) -> str:
        with self._lock:
            self._n += 1
            token = f"{kind}-{os.urandom(6).hex()}"
        self.issued.append(token)
        if "-at-" in token:
            self.access_tokens.append(token)
        return token

    def _user_tokens(self, scope: str) -> dict[str, Any]:
        now = int(time.time())
        id_token = unsigned_jwt(
            {
                "aud": CLIENT_ID,
                "iss": f"https://login.microsoftonline.com/{TENANT}/v2.0",
                "iat": now,
                "nbf": now,
                "exp": now + 3600,
                "oid": self.oid,
                "sub": "subject-" + self.oid,
                "tid": TENANT,
                "preferred_username": self.username,
                "name": "Adele Vance",
            }
        )
        refresh_token = self._new("rt")
        self.refresh_tokens.add(refresh_token)
        client_info = b64url(json.dumps({"uid": self.oid, "utid": TENANT}).encode())
        # Entra answers Graph's scopes by their short names, minus offline_access, plus email.
        granted = set(scope.split()) - {"offline_access"} | {"email"}
        return {
            "token_type": "Bearer",
            "scope": " ".join(sorted(granted)),
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": self._new("user-at"),
            "refresh_token": refresh_token,
            "id_token": id_token,
            "client_info": client_info,
        }

    # -- what tests ask ---------------------------------------------------------

    def token_posts(self, grant: str | None = None) -> list[dict[str, Any]]:
        return [
            form
            for method, url, form in self.requests
            if method == "POST"
            and url.endswith("/oauth2/v2.0/token")
            and (grant is None or form.get("grant_type") == grant)
        ]


@pytest.fixture(autouse=True)
def _no_msal_region(monkeypatch: pytest.MonkeyPatch) -> None:
    # msal reads MSAL_FORCE_REGION for confidential clients; keep the host machine's out.
    monkeypatch.delenv("MSAL_FORCE_REGION", raising=False)


@pytest.fixture
def entra() -> FakeEntra:
    return FakeEntra()


@pytest.fixture
def cache_path(tmp_path: Path) -> Path:
    return tmp_path / "config" / "groupsync" / "token_cache.json"


def settings(cache_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "tenant_id": TENANT,
        "client_id": CLIENT_ID,
        "auth_mode": "device",
        "token_cache": str(cache_path),
        "scopes": "User.Read Group.ReadWrite.All",
    }
    values.update(overrides)
    return Settings(**values)


def device_login(cache_path: Path, entra: FakeEntra, **overrides: Any) -> dict[str, Any]:
    shown: list[str] = []
    identity = login_device(settings(cache_path, **overrides), shown.append, http_client=entra)
    assert shown and "ABCD-EFGH" in shown[0]
    return identity


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- device code ----------------------------------------------------------------


def test_device_login_saves_private_versioned_cache(cache_path: Path, entra: FakeEntra) -> None:
    identity = device_login(cache_path, entra)

    assert identity == {
        "mode": "device",
        "username": "adele@contoso.example",
        "app_id": CLIENT_ID,
        "tenant_id": TENANT,
    }
    assert mode(cache_path) == 0o600
    assert mode(cache_path.parent) == 0o700
    saved = json.loads(cache_path.read_text())
    assert saved["version"] == CACHE_FORMAT_VERSION == 1
    assert set(saved["msal"]) >= {"AccessToken", "RefreshToken", "IdToken", "Account"}
    # polled once while pending, once more to succeed; asked for the configured scopes
    polls = entra.token_posts(DEVICE_GRANT)
    assert len(polls) == 2
    device = [form for method, url, form in entra.requests if url.endswith("/devicecode")]
    assert set(device[0]["scope"].split()) == {
        "User.Read",
        "Group.ReadWrite.All",
        "openid",
        "profile",
        "offline_access",
    }


def test_second_provider_reads_cache_without_token_endpoint(
    cache_path: Path, entra: FakeEntra
) -> None:
    device_login(cache_path, entra)
    issued_at = entra.access_tokens[0]
    before = len(entra.token_posts())

    tokens = MsalTokens(settings(cache_path), http_client=entra)
    assert tokens() == issued_at
    assert tokens() == issued_at
    assert len(entra.token_posts()) == before
    assert tokens.identity["username"] == "adele@contoso.example"


def test_force_refresh_uses_refresh_token(cache_path: Path, entra: FakeEntra) -> None:
    device_login(cache_path, entra)
    first_at, first_rt = entra.access_tokens[0], sorted(entra.refresh_tokens)[0]
    tokens = MsalTokens(settings(cache_path), http_client=entra)

    fresh = tokens(force_refresh=True)

    refreshes = entra.token_posts("refresh_token")
    assert len(refreshes) == 1
    assert refreshes[0]["refresh_token"] == first_rt
    assert fresh != first_at and fresh in entra.issued
    # the new tokens were saved: a third provider gets the fresh one from the file
    assert MsalTokens(settings(cache_path), http_client=entra)() == fresh
    assert mode(cache_path) == 0o600


def test_failed_refresh_says_to_log_in_again(cache_path: Path, entra: FakeEntra) -> None:
    device_login(cache_path, entra)
    entra.refresh_tokens.clear()  # the service revoked it
    tokens = MsalTokens(settings(cache_path), http_client=entra)
    with pytest.raises(AuthError, match=r"AADSTS9002313.*groupsync login"):
        tokens(force_refresh=True)


def test_not_signed_in_needs_no_network(cache_path: Path, entra: FakeEntra) -> None:
    tokens = MsalTokens(settings(cache_path), http_client=entra)
    with pytest.raises(AuthError, match="not signed in; run `groupsync login`"):
        tokens()
    assert entra.requests == []
    assert not cache_path.exists()


def test_device_login_defaults_to_organizations(cache_path: Path, entra: FakeEntra) -> None:
    identity = device_login(cache_path, entra, tenant_id=None)
    urls = [url for _, url, _ in entra.requests]
    assert f"{HOST}/organizations/v2.0/.well-known/openid-configuration" in urls
    assert f"{HOST}/organizations/oauth2/v2.0/devicecode" in urls
    assert identity["tenant_id"] == TENANT  # the user's home tenant, from client_info
    assert (
        MsalTokens(settings(cache_path, tenant_id=None), http_client=entra)()
        == entra.access_tokens[0]
    )


def test_device_login_as_someone_else_replaces_account(cache_path: Path, entra: FakeEntra) -> None:
    device_login(cache_path, entra)
    other = FakeEntra(oid=OTHER_OID, username="megan@contoso.example")
    identity = device_login(cache_path, other)

    assert identity["username"] == "megan@contoso.example"
    saved = json.loads(cache_path.read_text())["msal"]
    assert [a["username"] for a in saved["Account"].values()] == ["megan@contoso.example"]
    assert MsalTokens(settings(cache_path), http_client=other)() == other.access_tokens[0]


def test_graph_scopes_asked_by_short_name(cache_path: Path, entra: FakeEntra) -> None:
    scopes = "https://graph.microsoft.com/User.Read offline_access Group.ReadWrite.All User.Read"
    device_login(cache_path, entra, scopes=scopes)
    device = [form for method, url, form in entra.requests if url.endswith("/devicecode")]
    assert sorted(device[0]["scope"].split()) == [
        "Group.ReadWrite.All",
        "User.Read",
        "offline_access",
        "openid",
        "profile",
    ]
    tokens = MsalTokens(settings(cache_path, scopes=scopes), http_client=entra)
    assert tokens() == entra.access_tokens[0]  # a cache hit, thanks to the short names
    assert len(entra.token_posts()) == 2


def test_long_running_provider_sees_other_process_login_and_logout(
    cache_path: Path, entra: FakeEntra
) -> None:
    device_login(cache_path, entra)
    watcher = MsalTokens(settings(cache_path), http_client=entra)
    assert watcher() == entra.access_tokens[0]

    other = FakeEntra(oid=OTHER_OID, username="megan@contoso.example")
    device_login(cache_path, other)  # `groupsync login` in another terminal
    assert watcher() == other.access_tokens[0]
    assert watcher.identity["username"] == "megan@contoso.example"

    logout(settings(cache_path))
    with pytest.raises(AuthError, match="not signed in"):
        watcher()
    assert not cache_path.exists()  # nothing stale was written back


def test_unknown_tenant_is_one_line_auth_error(cache_path: Path, entra: FakeEntra) -> None:
    s = settings(cache_path, auth_mode="app", client_secret=SECRET, tenant_id="no-such-tenant")
    with pytest.raises(AuthError) as info:
        login_app(s, http_client=entra)
    message = str(info.value)
    assert message.startswith(f"cannot prepare the sign-in with {HOST}/no-such-tenant: ")
    assert "\n" not in message and SECRET not in message


def test_network_failure_is_auth_error(cache_path: Path, entra: FakeEntra) -> None:
    entra.post_error = ConnectionRefusedError(111, "Connection refused")
    s = settings(cache_path, auth_mode="app", client_secret=SECRET)
    with pytest.raises(AuthError, match="cannot get an app-only token: .*Connection refused"):
        MsalTokens(s, http_client=entra)()
    with pytest.raises(AuthError, match="device code sign-in failed: .*Connection refused"):
        device_login(cache_path, entra)


def test_device_flow_refused(cache_path: Path, entra: FakeEntra) -> None:
    entra.token_error = {
        "error": "authorization_declined",
        "error_description": "AADSTS70000: The user declined.\r\nTrace ID: 1234",
    }
    with pytest.raises(AuthError) as info:
        device_login(cache_path, entra)
    assert str(info.value) == "sign-in failed: AADSTS70000: The user declined."


# -- client credentials ------------------------------------------------------------


def test_app_login_with_secret(cache_path: Path, entra: FakeEntra) -> None:
    s = settings(cache_path, auth_mode="app", client_secret=SECRET)
    identity = login_app(s, http_client=entra)

    assert identity == {"mode": "app", "username": None, "app_id": CLIENT_ID, "tenant_id": TENANT}
    (form,) = entra.token_posts("client_credentials")
    assert form["client_secret"] == SECRET
    assert form["scope"] == GRAPH_APP_SCOPE
    assert mode(cache_path) == 0o600

    # a provider reuses the cached app token; force_refresh gets a new one
    tokens = MsalTokens(s, http_client=entra)
    assert tokens() == entra.access_tokens[0]
    assert len(entra.token_posts()) == 1
    fresh = tokens(force_refresh=True)
    assert fresh == entra.access_tokens[1]
    assert len(entra.token_posts()) == 2
    assert MsalTokens(s, http_client=entra)() == fresh


def test_app_login_ignores_cached_token(cache_path: Path, entra: FakeEntra) -> None:
    s = settings(cache_path, auth_mode="app", client_secret=SECRET)
    login_app(s, http_client=entra)
    login_app(s, http_client=entra)  # proves the credentials again
    assert len(entra.token_posts("client_credentials")) == 2


def test_invalid_client_becomes_auth_error(cache_path: Path, entra: FakeEntra) -> None:
    entra.token_error = {
        "error": "invalid_client",
        "error_description": "AADSTS7000215: Invalid client secret provided.\r\n"
        "Trace ID: 0000\r\nCorrelation ID: 1111",
    }
    s = settings(cache_path, auth_mode="app", client_secret=SECRET)
    with pytest.raises(AuthError) as info:
        login_app(s, http_client=entra)
    assert "AADSTS7000215: Invalid client secret provided." in str(info.value)
    assert "Trace ID" not in str(info.value)
    assert SECRET not in str(info.value)
    with pytest.raises(AuthError, match="AADSTS7000215"):
        MsalTokens(s, http_client=entra)()


@pytest.fixture(scope="module")
def certificate() -> tuple[Any, Any]:
    """A throwaway RSA key and self-signed certificate (msal needs cryptography anyway)."""
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "groupsync-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _assertion_header(form: dict[str, Any], key: Any) -> dict[str, Any]:
    jwt = pytest.importorskip("jwt")
    assert form["client_assertion_type"] == (
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    )
    assertion = form["client_assertion"]
    claims = jwt.decode(
        assertion,
        key.public_key(),
        algorithms=["RS256", "PS256"],
        audience=f"{HOST}/{TENANT}/oauth2/v2.0/token",
    )
    assert claims["iss"] == claims["sub"] == CLIENT_ID
    return jwt.get_unverified_header(assertion)


def test_app_login_with_pem_certificate(
    tmp_path: Path, cache_path: Path, entra: FakeEntra, certificate: tuple[Any, Any]
) -> None:
    from cryptography.hazmat.primitives import hashes, serialization

    key, cert = certificate
    pem = tmp_path / "app.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + cert.public_bytes(serialization.Encoding.PEM)
    )
    sha1 = cert.fingerprint(hashes.SHA1()).hex()
    portal_style = ":".join(sha1[i : i + 2] for i in range(0, 40, 2)).upper()
    s = settings(
        cache_path,
        auth_mode="app",
        certificate_path=str(pem),
        certificate_thumbprint=portal_style,
    )

    assert login_app(s, http_client=entra)["mode"] == "app"

    (form,) = entra.token_posts("client_credentials")
    assert "client_secret" not in form
    header = _assertion_header(form, key)
    assert header["alg"] == "RS256"
    assert header["x5t"].rstrip("=") == b64url(bytes.fromhex(sha1))


def write_pfx(path: Path, certificate: tuple[Any, Any], name: bytes, password: bytes) -> Path:
    """The key and certificate as a PKCS#12 file encrypted with ``password``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    key, cert = certificate
    encryption = serialization.BestAvailableEncryption(password)
    path.write_bytes(pkcs12.serialize_key_and_certificates(name, key, cert, None, encryption))
    return path


def test_app_login_with_encrypted_pfx(
    tmp_path: Path, cache_path: Path, entra: FakeEntra, certificate: tuple[Any, Any]
) -> None:
    from cryptography.hazmat.primitives import hashes

    key, cert = certificate
    pfx = write_pfx(tmp_path / "app.pfx", certificate, b"groupsync", b"hunter2")
    s = settings(
        cache_path, auth_mode="app", certificate_path=str(pfx), certificate_password="hunter2"
    )

    login_app(s, http_client=entra)

    (form,) = entra.token_posts("client_credentials")
    header = _assertion_header(form, key)
    assert header["alg"] == "PS256"  # msal uses the SHA-256 thumbprint for PFX files
    assert header["x5t#S256"].rstrip("=") == b64url(cert.fingerprint(hashes.SHA256()))


def test_wrong_pfx_password_is_one_line_auth_error(
    tmp_path: Path, cache_path: Path, entra: FakeEntra, certificate: tuple[Any, Any]
) -> None:
    pfx = write_pfx(tmp_path / "app.p12", certificate, b"x", b"right")
    wrong = "wrong-passphrase-42"
    s = settings(cache_path, auth_mode="app", certificate_path=str(pfx), certificate_password=wrong)
    with pytest.raises(AuthError, match="password") as info:
        login_app(s, http_client=entra)
    assert "\n" not in str(info.value)
    assert wrong not in str(info.value)
    assert entra.token_posts() == []


# -- configuration errors ------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"client_id": None}, "no client id"),
        ({"client_id": ""}, "no client id"),
        ({"auth_mode": "app", "client_secret": SECRET, "tenant_id": None}, "tenant id"),
        ({"auth_mode": "app", "client_secret": SECRET, "tenant_id": "common"}, "tenant id"),
        ({"auth_mode": "app", "client_secret": SECRET, "tenant_id": "organizations"}, "tenant"),
        ({"auth_mode": "app"}, "client_secret or certificate_path"),
        (
            {"auth_mode": "app", "client_secret": SECRET, "certificate_path": "a.pfx"},
            "not both",
        ),
        ({"auth_mode": "app", "certificate_path": "a.pem"}, "certificate_thumbprint"),
        (
            {"auth_mode": "app", "certificate_path": "a.pem", "certificate_thumbprint": "abc"},
            "40 hex digits",
        ),
        ({"tenant_id": "consumers"}, "personal Microsoft accounts"),
        ({"scopes": "openid profile"}, "scopes is empty"),
        ({"authority_host": "http://login.example"}, "https"),
        ({"auth_mode": "browser"}, "auth_mode"),
    ],
)
def test_config_errors(cache_path: Path, overrides: dict[str, Any], message: str) -> None:
    entra = FakeEntra()
    with pytest.raises(ConfigError, match=message) as info:
        MsalTokens(settings(cache_path, **overrides), http_client=entra)
    assert "\n" not in str(info.value)
    assert entra.requests == []


@pytest.mark.parametrize("name", ["missing.pem", "missing.pfx"])
def test_unreadable_certificate_is_config_error(
    tmp_path: Path, cache_path: Path, entra: FakeEntra, name: str
) -> None:
    s = settings(
        cache_path,
        auth_mode="app",
        certificate_path=str(tmp_path / name),
        certificate_thumbprint="AB" * 20,
    )
    with pytest.raises(ConfigError, match=f"cannot read certificate .*{name}"):
        login_app(s, http_client=entra)
    assert entra.token_posts() == []


def test_pem_without_private_key_is_config_error(
    tmp_path: Path, cache_path: Path, entra: FakeEntra
) -> None:
    pem = tmp_path / "public.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    s = settings(
        cache_path, auth_mode="app", certificate_path=str(pem), certificate_thumbprint="ab" * 20
    )
    with pytest.raises(ConfigError, match="holds no PEM private key"):
        login_app(s, http_client=entra)


# -- the cache file -------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        '{"msal": {}}',
        '{"version": 1, "msal": "nope"}',
        '{"version": 1, "msal": {"AccessToken": []}}',
    ],
)
def test_corrupt_cache_file_names_the_path(cache_path: Path, content: str) -> None:
    cache_path.parent.mkdir(parents=True)
    cache_path.write_text(content)
    with pytest.raises(AuthError, match="token cache .*token_cache.json is corrupt"):
        TokenCacheFile(cache_path)
    with pytest.raises(AuthError, match="corrupt"):
        MsalTokens(settings(cache_path), http_client=FakeEntra())()


def test_newer_cache_format_is_refused(cache_path: Path) -> None:
    cache_path.parent.mkdir(parents=True)
    cache_path.write_text('{"version": 2, "msal": {}}')
    with pytest.raises(AuthError, match="format version 2"):
        TokenCacheFile(cache_path)


def test_cache_save_is_atomic_and_private(cache_path: Path, entra: FakeEntra) -> None:
    device_login(cache_path, entra)
    cache_path.chmod(0o644)  # as if someone loosened it; the next save must not inherit it
    stale = cache_path.read_text()

    MsalTokens(settings(cache_path), http_client=entra)(force_refresh=True)

    assert cache_path.read_text() != stale
    assert mode(cache_path) == 0o600
    assert sorted(p.name for p in cache_path.parent.iterdir()) == ["token_cache.json"]


def test_cache_save_only_when_changed(cache_path: Path, entra: FakeEntra) -> None:
    device_login(cache_path, entra)
    before = cache_path.stat().st_mtime_ns
    os.utime(cache_path, ns=(before - 10**9, before - 10**9))
    file = TokenCacheFile(cache_path)
    file.save()
    assert cache_path.stat().st_mtime_ns == before - 10**9


def test_failed_save_removes_temp_file_and_keeps_old_cache(
    cache_path: Path, entra: FakeEntra, monkeypatch: pytest.MonkeyPatch
) -> None:
    device_login(cache_path, entra)
    old = cache_path.read_text()
    file = TokenCacheFile(cache_path)
    file.cache.has_state_changed = True

    seen: list[tuple[int, str]] = []

    def broken_replace(src: Any, dst: Any) -> None:
        seen.append((mode(Path(src)), Path(src).read_text()))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(auth.os, "replace", broken_replace)
    with pytest.raises(AuthError, match="cannot write the token cache .*No space left"):
        file.save()
    monkeypatch.undo()

    # the temp file was private and complete before the rename was attempted
    ((tmp_mode, tmp_text),) = seen
    assert tmp_mode == 0o600
    assert json.loads(tmp_text)["version"] == 1
    assert cache_path.read_text() == old
    assert sorted(p.name for p in cache_path.parent.iterdir()) == ["token_cache.json"]
    assert file.cache.has_state_changed  # the next save tries again
    file.save()
    assert mode(cache_path) == 0o600


def test_new_cache_file_is_never_readable_by_others(tmp_path: Path) -> None:
    path = tmp_path / "new" / "cache.json"
    file = TokenCacheFile(path)
    file.cache.has_state_changed = True
    old_umask = os.umask(0)  # the most permissive umask: the mode must come from os.open
    try:
        file.save()
    finally:
        os.umask(old_umask)
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert json.loads(path.read_text()) == {"version": 1, "msal": {}}


# -- logout and whoami ----------------------------------------------------------


def test_logout_removes_cache_and_stray_temp_files(cache_path: Path, entra: FakeEntra) -> None:
    device_login(cache_path, entra)
    stray = cache_path.parent / f".{cache_path.name}.deadbeef.tmp"
    stray.write_text("{}")
    s = settings(cache_path)

    assert logout(s) is True
    assert list(cache_path.parent.iterdir()) == []
    assert logout(s) is False
    with pytest.raises(AuthError, match="not signed in"):
        MsalTokens(s, http_client=entra)()


def test_logout_needs_no_valid_settings(cache_path: Path) -> None:
    cache_path.parent.mkdir(parents=True)
    cache_path.write_text("corrupt")
    assert logout(settings(cache_path, client_id=None)) is True
    assert not cache_path.exists()


def test_whoami_device(cache_path: Path, entra: FakeEntra) -> None:
    s = settings(cache_path)
    with pytest.raises(AuthError, match="not signed in"):
        whoami(s, http_client=entra)
    device_login(cache_path, entra)
    requests_before = len(entra.requests)

    info = whoami(s, http_client=entra)

    assert info["mode"] == "device"
    assert info["username"] == "adele@contoso.example"
    assert info["tenant_id"] == TENANT
    assert info["app_id"] == CLIENT_ID
    assert info["token_cached"] is True
    assert info["refresh_token_cached"] is True
    assert info["token_expires_on"] > time.time() + 3000
    assert info["token_cache"] == str(cache_path)
    assert len(entra.requests) == requests_before  # no network
    assert not any(token in json.dumps(info) for token in entra.issued)


def test_whoami_app_without_token(cache_path: Path, entra: FakeEntra) -> None:
    info = whoami(settings(cache_path, auth_mode="app", client_secret=SECRET), http_client=entra)
    assert info["mode"] == "app"
    assert info["username"] is None
    assert info["token_cached"] is False
    assert entra.requests == []


def test_whoami_static_token(cache_path: Path) -> None:
    info = whoami(settings(cache_path, access_token="eyJ.static.token"))
    assert info["mode"] == "token"
    assert "eyJ" not in json.dumps(info)


# -- StaticToken and token_provider ----------------------------------------------


def test_static_token() -> None:
    token = StaticToken("  Bearer eyJ0eXAi.static.sig\n")
    assert token() == "eyJ0eXAi.static.sig"
    with pytest.raises(AuthError) as info:
        token(force_refresh=True)
    assert str(info.value) == (
        "the access token in GROUPSYNC_ACCESS_TOKEN was refused; get a new one"
    )
    assert "eyJ" not in repr(token) and "eyJ" not in str(info.value)
    with pytest.raises(ConfigError):
        StaticToken("   ")


def test_token_provider_picks_static_token_first(cache_path: Path) -> None:
    assert isinstance(token_provider(settings(cache_path, access_token="abc")), StaticToken)
    provider = token_provider(settings(cache_path))
    assert isinstance(provider, MsalTokens)
    assert provider.identity["username"] is None  # not signed in yet: no account, no error


# -- secrets stay secret -------------------------------------------------------------


def test_tokens_and_secrets_never_in_repr_or_errors(cache_path: Path, entra: FakeEntra) -> None:
    device_login(cache_path, entra)
    user = MsalTokens(settings(cache_path), http_client=entra)
    user()
    app_settings = settings(cache_path, auth_mode="app", client_secret=SECRET)
    app = MsalTokens(app_settings, http_client=entra)
    app()
    file = TokenCacheFile(cache_path)

    messages = [repr(user), repr(app), repr(file), str(user.identity), str(app.identity)]
    entra.refresh_tokens.clear()
    entra.token_error = {"error": "invalid_client", "error_description": "AADSTS7000215: no"}
    for call in (lambda: user(force_refresh=True), lambda: app(force_refresh=True)):
        with pytest.raises(AuthError) as info:
            call()
        messages.append(str(info.value))

    assert len(entra.issued) == 3  # a refresh token and two access tokens
    for secret in [*entra.issued, SECRET]:
        assert not any(secret in message for message in messages), secret


def test_provider_is_thread_safe(cache_path: Path, entra: FakeEntra) -> None:
    device_login(cache_path, entra)
    tokens = MsalTokens(settings(cache_path), http_client=entra)
    results: list[str] = []

    def work() -> None:
        results.append(tokens(force_refresh=True))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 8 and all(r in entra.issued for r in results)
    # the file is still valid and holds the newest refresh token
    assert MsalTokens(settings(cache_path), http_client=entra)() in entra.issued
