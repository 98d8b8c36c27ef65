"""Put settings, tokens, the shared throttle and the Graph client together."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .auth import token_provider
from .config import Settings
from .graph import GraphClient, TokenProvider
from .throttle import Throttle

if TYPE_CHECKING:
    import httpx

__all__ = ["connect", "throttle_for"]


def throttle_key(settings: Settings) -> str:
    """One window per connection: the Graph endpoint plus the identity behind the tokens."""
    if settings.access_token:
        who = "token:" + hashlib.sha256(settings.access_token.encode()).hexdigest()[:16]
    else:
        who = f"{settings.auth_mode}:{settings.tenant_id}:{settings.client_id}"
    return f"{settings.graph_url}|{who}"


def throttle_for(settings: Settings) -> Throttle:
    """The throttle every process using this archive shares, in ``<db>.throttle``."""
    return Throttle(settings.rate, settings.db + ".throttle", key=throttle_key(settings))


def connect(
    settings: Settings,
    *,
    token: TokenProvider | None = None,
    transport: httpx.BaseTransport | None = None,
    log: Callable[[dict[str, Any]], None] | None = None,
) -> GraphClient:
    """A ``GraphClient`` for these settings; the caller closes it and its throttle."""
    return GraphClient(
        settings.graph_url,
        token if token is not None else token_provider(settings),
        transport=transport,
        throttle=throttle_for(settings),
        max_concurrency=settings.max_concurrency,
        timeout=settings.timeout,
        log=log,
    )
