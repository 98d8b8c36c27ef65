"""A Content-Security-Policy and its companions on every response Datasette sends.

Mail HTML reaches Datasette's own table and row pages too (sanitised by ``render_cell``), so
the policy is not the plugin's pages' alone: ``asgi_wrapper`` adds it to every response that
has none. Scripts run only from Datasette's origin or when they are one of the inline
scripts of the installed templates, allowed by hash; nonces would need Datasette's templates
to carry them. Styles may be inline: Datasette's templates use ``style`` attributes and
``<style>`` blocks, which CSP cannot allow by hash without ``'unsafe-hashes'`` for every
colour a database gets; the sanitiser removes what mail could do with CSS.

Datasette 1.0's templates also carry per-page data in inline scripts
(``window._datasetteTableData = {{ table_page_data|tojson }};``), which no hash computed
in advance can match: for those, an HTML response is read whole and each inline script is
allowed by its hash when, and only when, it is one of the templates' scripts with JSON in
each ``tojson`` slot (``tojson`` escapes ``<``, so mail inside the data cannot end the
script, and the code around the data is the template's, byte for byte).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from datasette.version import __version__ as _DATASETTE_VERSION

__all__ = [
    "content_security_policy",
    "data_script_hashes",
    "page_headers",
    "trust_template_scripts",
    "with_headers",
]

_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)
# Inline scripts of Datasette's templates that carry a value, with every value it renders.
_RENDERED = {
    "{{ datasette_allow_facet }}": ("true", "false"),
    "{{ datasette_version }}": (_DATASETTE_VERSION, ""),  # error pages render it empty
}
_IF_ELSE = re.compile(r"\{%\s*if\b[^%]*%\}(.*?)(?:\{%\s*else\s*%\}(.*?))?\{%\s*endif\s*%\}", re.S)
_TOJSON = re.compile(r"\{\{(?:(?!\}\}).)*?\|\s*tojson(?:\(\s*\d*\s*\))?\s*\}\}", re.S)
_SCRIPT_HASHES: list[str] = []
# Inline event handlers of the templates (1.0's column chooser: onclick="openColumnChooser()"),
# allowed by hash under 'unsafe-hashes': only these exact handlers, never mail's (which the
# sanitiser removes anyway).
_HANDLER = re.compile(r'\son[a-z]+="([^"{}%]*)"')
_HANDLER_HASHES: list[str] = []
# Templates' scripts with JSON slots: (literal parts, as a pattern with one group per slot)
_DATA_SCRIPTS: list[re.Pattern[str]] = []

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
                   Awaitable[None]]  # fmt: skip


def _hash(script: str) -> str:
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def _branches(script: str) -> list[str]:
    """The script as each (unnested) ``{% if %}``/``{% else %}`` choice renders it."""
    match = _IF_ELSE.search(script)
    if match is None:
        return [script]
    head, tail = script[: match.start()], script[match.end() :]
    return [
        variant
        for branch in (match.group(1), match.group(2) or "")
        for variant in _branches(head + branch + tail)
    ]


def trust_template_scripts(jinja_env: Any) -> list[str]:
    """Allow by hash the inline scripts of the templates Datasette can render (its own,
    its plugins' and the operator's: code, not data). A script whose only expressions are
    ``tojson`` slots is matched per page (``data_script_hashes``); one with any other
    template expression is left out: its text is not known in advance."""
    hashes: set[str] = set()
    handlers: set[str] = set()
    patterns: dict[str, re.Pattern[str]] = {}
    try:
        names = jinja_env.loader.list_templates()
    except (TypeError, AttributeError):  # a loader that cannot list its templates
        names = ["_close_open_menus.html", "_codemirror_foot.html", "table.html"]
    for name in names:
        if not name.endswith(".html"):
            continue
        try:
            source = jinja_env.loader.get_source(jinja_env, name)[0]
        except Exception:  # noqa: BLE001 - jinja2.TemplateNotFound and friends: nothing to hash
            continue
        handlers.update(_hash(html.unescape(h)) for h in _HANDLER.findall(source) if h.strip())
        for script in _SCRIPT.findall(source):
            variants = _branches(script)
            for expression, values in _RENDERED.items():
                variants = [
                    v.replace(expression, value) if expression in v else v
                    for v in variants
                    for value in (values if expression in v else values[:1])
                ]
            for v in variants:
                if "{{" not in v and "{%" not in v:
                    hashes.add(_hash(v))
                    continue
                parts = _TOJSON.split(v)
                if len(parts) > 1 and not any("{{" in p or "{%" in p for p in parts):
                    pattern = "(.*?)".join(re.escape(p) for p in parts)
                    patterns[pattern] = re.compile(pattern, re.S)
    _SCRIPT_HASHES[:] = sorted(hashes)
    _DATA_SCRIPTS[:] = list(patterns.values())
    _HANDLER_HASHES[:] = sorted(handlers)
    return list(_SCRIPT_HASHES)


def data_script_hashes(html: str) -> list[str]:
    """Hashes of the page's inline scripts that are a template's script with JSON in
    every ``tojson`` slot (see above)."""
    found = []
    for script in _SCRIPT.findall(html) if _DATA_SCRIPTS else []:
        for pattern in _DATA_SCRIPTS:
            match = pattern.fullmatch(script)
            if match is None:
                continue
            try:
                for value in match.groups():
                    json.loads(value)
            except ValueError:
                continue
            found.append(_hash(script))
            break
    return found


def content_security_policy(extra_scripts: list[str] | None = None) -> str:
    unsafe_hashes = ["'unsafe-hashes'", *_HANDLER_HASHES] if _HANDLER_HASHES else []
    scripts = " ".join(["'self'", *_SCRIPT_HASHES, *(extra_scripts or []), *unsafe_hashes])
    return (
        f"default-src 'none'; script-src {scripts}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    )


def page_headers(extra_scripts: list[str] | None = None) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(extra_scripts),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
    }


def with_headers(app: ASGIApp) -> ASGIApp:
    """``app`` with ``page_headers()`` added to each HTTP response that lacks them (an
    attachment download keeps its own, stricter, policy)."""

    async def wrapped(scope: Scope, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await app(scope, receive, send)
            return
        held: list[Message] = []

        async def start(message: Message, body: bytes) -> None:
            headers = list(message.get("headers") or [])
            present = {bytes(name).lower() for name, _ in headers}
            extra = data_script_hashes(body.decode("utf-8", "replace")) if body else []
            for name, value in page_headers(extra).items():
                key = name.lower().encode("latin-1")
                if key not in present:
                    headers.append((key, value.encode("latin-1")))
            message["headers"] = headers
            await send(message)

        async def send_with_headers(message: Message) -> None:
            if message.get("type") == "http.response.start":
                headers = {bytes(k).lower(): bytes(v) for k, v in message.get("headers") or []}
                html = headers.get(b"content-type", b"").startswith(b"text/html")
                if html and b"content-security-policy" not in headers:
                    held.append(message)  # until the body is known
                    return
                await start(message, b"")
            elif held and message.get("type") == "http.response.body":
                held.append(message)
                if message.get("more_body"):
                    return
                body = b"".join(bytes(m.get("body") or b"") for m in held[1:])
                await start(held[0], body)
                await send({"type": "http.response.body", "body": body})
                held.clear()
            else:
                await send(message)

        await app(scope, receive, send_with_headers)

    return wrapped
