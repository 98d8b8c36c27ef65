"""Serving the simulator over real sockets: a threaded wsgiref server, quiet per request."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from .app import Simulator, SimulatorOptions, make_app


class _QuietHandler(WSGIRequestHandler):
    """No stderr line per request, and the raw request URI kept for exact id segments."""

    def log_message(self, format: str, *args: Any) -> None:
        return

    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        environ["RAW_URI"] = self.path
        return environ


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    """One daemon thread per connection, so concurrent clients really overlap."""

    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn, a reverse DNS lookup that can stall
        # offline; the name is only used for SERVER_NAME, so the bound host will do.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)
        self.setup_environ()


def _make_server(app: Simulator, host: str, port: int) -> _ThreadingServer:
    server_class = _ThreadingServer
    if ":" in host:
        server_class = type("_ThreadingServer6", (_ThreadingServer,),
                            {"address_family": socket.AF_INET6})
    server = server_class((host, port), _QuietHandler)
    server.set_app(app)
    return server


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/v1.0"


@contextmanager
def serve_in_thread(app: Simulator, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` on ``host`` (port 0 = any free port) in a background thread.

    Yields the base URL (``http://127.0.0.1:PORT/v1.0``); the server is shut down and its
    socket closed on exit.
    """
    server = _make_server(app, host, port)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
        name="groupsync-simulator",
    )
    thread.start()
    try:
        yield _url(host, server.server_port)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def run_server(
    data_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 8765,
    options: SimulatorOptions | None = None,
) -> None:
    """Serve ``data_dir`` until Ctrl-C, printing one line with the base URL."""
    app = make_app(data_dir, options)
    server = _make_server(app, host, port)
    with server, suppress(KeyboardInterrupt):
        # The line is inside: a Ctrl-C the moment it is printed still ends quietly.
        print(f"Graph simulator on {_url(host, server.server_port)}", flush=True)
        server.serve_forever(poll_interval=0.2)
