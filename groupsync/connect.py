"""Put settings, tokens, the shared throttle and the Graph client together."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .auth import token_provider
from .config import Settings
from .graph import GraphClient, TokenProvider
from .throttle import Throttle

if TYPE_CHECKING:
    import httpx

__all__ = ["SENDS_PER_MINUTE", "connect", "sending_cap", "throttle_for"]

SENDS_PER_MINUTE = 30  # Exchange caps the messages a mailbox sends at about 30 a minute


def throttle_key(settings: Settings) -> str:
    """One window per connection: the Graph endpoint plus the identity behind the tokens."""
    if settings.access_token:
        who = "token:" + hashlib.sha256(settings.access_token.encode()).hexdigest()[:16]
    else:
        who = f"{settings.auth_mode}:{settings.tenant_id}:{settings.client_id}"
    return f"{settings.graph_url}|{who}"


def throttle_for(settings: Settings) -> Throttle:
    """The throttle every process using this archive shares, in ``<db>.throttle``: one
    window per connection (``connector`` profile) or per mailbox (``graph``)."""
    return Throttle(
        settings.window,
        settings.db + ".throttle",
        key=throttle_key(settings),
        per_mailbox=settings.profile.per_mailbox,
    )


@contextmanager
def sending_cap(
    settings: Settings, per_minute: int = SENDS_PER_MINUTE
) -> Iterator[Throttle | None]:
    """The cap on messages sent, shared like the call throttle (``<db>.throttle``) by every
    process sending as this identity; ``per_minute`` 0 yields None: no cap."""
    if not per_minute:
        yield None
        return
    key = "send|" + throttle_key(settings)
    with Throttle((per_minute, 60.0), settings.db + ".throttle", key=key) as cap:
        yield cap


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
        mailbox_concurrency=settings.mailbox_concurrency,
        timeout=settings.timeout,
        log=log,
    )
