"""The SQL of the modules above the archive, one module per caller, as functions of an
open archive (``test_boundaries`` keeps it here). Parameters are named (``:name``); a list
of values becomes ``:name_0, :name_1, ...``."""

from __future__ import annotations

from typing import Any


def in_list(name: str, values: list[Any] | tuple[Any, ...]) -> tuple[str, dict[str, Any]]:
    """``(:name_0, :name_1, ...)`` and its parameters, for ``column IN`` a list of values."""
    params = {f"{name}_{n}": value for n, value in enumerate(values)}
    return f"({', '.join(':' + key for key in params)})", params
