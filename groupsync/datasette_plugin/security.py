"""A Content-Security-Policy and its companions on every response Datasette sends.

Mail HTML reaches Datasette's own table and row pages too (sanitised by ``render_cell``), so
the policy is not the plugin's pages' alone: ``asgi_wrapper`` adds it to every response that
has none. Scripts run only from Datasette's origin or when they are one of the inline
scripts of the installed templates, allowed by hash; nonces would need Datasette's templates
to carry them. Styles may be inline: Datasette's templates use ``style`` attributes and
``<style>`` blocks, which CSP cannot allow by hash without ``'unsafe-hashes'`` for every
colour a database gets; the sanitiser removes what mail could do with CSS.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["content_security_policy", "page_headers", "trust_template_scripts", "with_headers"]

_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)
# Inline scripts of Datasette's templates that carry a value, with every value it renders.
_RENDERED = {"{{ datasette_allow_facet }}": ("true", "false")}
_SCRIPT_HASHES: list[str] = []

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
                   Awaitable[None]]  # fmt: skip


def _hash(script: str) -> str:
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def trust_template_scripts(jinja_env: Any) -> list[str]:
    """Allow by hash the inline scripts of the templates Datasette can render (its own,
    its plugins' and the operator's: code, not data). A script with any other template
    expression is left out: its text is not known in advance."""
    hashes: set[str] = set()
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
        for script in _SCRIPT.findall(source):
            variants = [script]
            for expression, values in _RENDERED.items():
                if expression in script:
                    variants = [script.replace(expression, value) for value in values]
            hashes.update(_hash(v) for v in variants if "{{" not in v and "{%" not in v)
    _SCRIPT_HASHES[:] = sorted(hashes)
    return list(_SCRIPT_HASHES)


def content_security_policy() -> str:
    scripts = " ".join(["'self'", *_SCRIPT_HASHES])
    return (
        f"default-src 'none'; script-src {scripts}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    )


def page_headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(),
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

        async def send_with_headers(message: Message) -> None:
            if message.get("type") == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {bytes(name).lower() for name, _ in headers}
                for name, value in page_headers().items():
                    key = name.lower().encode("latin-1")
                    if key not in present:
                        headers.append((key, value.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        await app(scope, receive, send_with_headers)

    return wrapped
