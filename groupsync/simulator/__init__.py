"""A local Microsoft Graph v1.0 server for group mail, loaded from a sample_data folder.

Stdlib only, and independent of ``groupsync.graph``/``groupsync.archive`` so that the client
and the fake server cannot end up agreeing with each other instead of with Graph.
"""

from __future__ import annotations

from .app import Simulator, SimulatorOptions, make_app
from .data import DataError
from .log import RequestLog
from .server import run_server, serve_in_thread
from .state import TenantState

__all__ = [
    "DataError",
    "RequestLog",
    "Simulator",
    "SimulatorOptions",
    "TenantState",
    "make_app",
    "run_server",
    "serve_in_thread",
]
