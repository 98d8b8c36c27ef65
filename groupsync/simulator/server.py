"""Serving the simulator over real sockets: a threaded wsgiref server, quiet per request,
speaking HTTP/1.1 with keep-alive as Graph does (a client reuses its connections)."""

from __future__ import annotations

import io
import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, cast
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

from .app import Simulator, SimulatorOptions, make_app

MAX_BODY = 256 * 1024 * 1024  # a request body larger than this closes the connection
IDLE_TIMEOUT = 120.0  # seconds an idle kept-alive connection is held open


class _KeepAliveServerHandler(ServerHandler):
    http_version = "1.1"


class _QuietHandler(WSGIRequestHandler):
    """HTTP/1.1 keep-alive, no stderr line per request, and the raw request URI kept for
    exact id segments.

    wsgiref answers one request per connection in HTTP/1.0; this handler loops over the
    requests of a connection. Each request's body is read whole before the app runs, so
    a body the app never reads cannot be taken for the next request line.
    """

    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT
    # Headers and body leave in separate writes; with Nagle's algorithm on, the body of a
    # kept-alive connection waits for the client's delayed ACK (40 ms a response).
    disable_nagle_algorithm = True

    def handle(self) -> None:
        self.close_connection = True
        self._handle_one()
        while not self.close_connection:
            self._handle_one()

    def _handle_one(self) -> None:
        try:
            self.raw_requestline = self.rfile.readline(65537)
        except (TimeoutError, ConnectionError):
            self.close_connection = True
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        if len(self.raw_requestline) > 65536:
            self.requestline = self.request_version = self.command = ""
            self.send_error(414)
            self.close_connection = True
            return
        if not self.parse_request():  # an error was sent; parse_request closes as needed
            return
        body: Any = self.rfile
        if self.headers.get("Transfer-Encoding"):
            # Chunked request bodies are not decoded here: answer, then close.
            self.close_connection = True
        else:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if 0 <= length <= MAX_BODY:
                body = io.BytesIO(self.rfile.read(length))
            else:
                self.close_connection = True
        # The handler hands its stdin to the app as wsgi.input.
        # As wsgiref's own WSGIRequestHandler.handle does (typeshed knows less than it).
        handler = _KeepAliveServerHandler(
            body, self.wfile, self.get_stderr(), self.get_environ(),  # type: ignore[arg-type]
            multithread=False,
        )
        handler.request_handler = self  # type: ignore[attr-defined]  # backpointer for logging
        handler.run(cast(WSGIServer, self.server).get_app())  # type: ignore[arg-type]
        self.wfile.flush()

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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.discard(request)

    def server_close(self) -> None:
        """Close the listening socket and every kept-alive connection: a stopped simulator
        answers nothing more, as a server that went away."""
        super().server_close()
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn, a reverse DNS lookup that can stall
        # offline; the name is only used for SERVER_NAME, so the bound host will do.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)
        self.setup_environ()


def _make_server(app: Simulator, host: str, port: int) -> _ThreadingServer:
    server_class: type[_ThreadingServer] = _ThreadingServer
    if ":" in host:
        server_class = type(
            "_ThreadingServer6", (_ThreadingServer,), {"address_family": socket.AF_INET6}
        )
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
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        daemon=True,
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
