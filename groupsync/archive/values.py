"""How Python values become column values: one spelling for times, JSON and flags."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any


def utc_now() -> str:
    """Now as Graph writes times: ISO 8601, UTC, ``Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(data: Any) -> str:
    """One spelling of a JSON value, so equal content always has the same SHA-256."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def json_or_none(value: Any) -> str | None:
    """A JSON column: None stays NULL."""
    return None if value is None else json.dumps(value, ensure_ascii=False)


def json_list(text: str | None) -> list[Any]:
    """A JSON list column read back: NULL, bad JSON or another value are an empty list
    (mail decides what lands in these columns)."""
    if not text:
        return []
    try:
        data = json.loads(text)
    except ValueError:
        return []
    return data if isinstance(data, list) else []


def int_or_none(value: Any) -> int | None:
    """A boolean column: 0 or 1, None stays NULL."""
    return None if value is None else int(bool(value))


def name_and_address(recipient: Any) -> tuple[str | None, str | None]:
    """A Graph recipient's display name and lower-cased address."""
    if not isinstance(recipient, dict):
        return None, None
    email = recipient.get("emailAddress") or {}
    address = email.get("address")
    return email.get("name"), (address.lower() if isinstance(address, str) and address else None)
