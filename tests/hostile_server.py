"""A hostile Ollama look-alike for tests: canned replies per path, wrong types and all.

The package's own server always answers correctly; this one answers whatever a test sets
(a ``size`` of ``"abc"``, a ``response`` of ``5``, a ``total`` of ``1e400``), or accepts a
request and never answers, so the magic can be shown to treat a server as untrusted input.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: A reply that never comes: the request is read, then nothing is sent until the server closes.
HANG = object()


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Canned:
    """What a path answers: a JSON value, NDJSON lines, raw bytes, or :data:`HANG`."""

    value: Any = None
    lines: list[Any] | None = None
    raw: bytes | None = None
    status: int = 200


@dataclass
class HostileServer:
    """``with HostileServer() as srv:``; ``srv.answer(path, value)`` sets a reply; ``srv.url``.

    ``srv.arrived`` is set each time a request comes in (tests wait on it before interrupting).
    """

    replies: dict[str, Canned] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)
    _release: threading.Event = field(default_factory=threading.Event)

    def answer(self, path: str, value: Any = None, *, lines: list[Any] | None = None,
               raw: bytes | None = None, status: int = 200) -> None:
        self.replies[path] = Canned(value, lines, raw, status)

    def hang(self, path: str) -> None:
        self.replies[path] = Canned(HANG)

    def clear(self) -> None:
        self.replies.clear()
        self.requests.clear()
        self.arrived.clear()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> HostileServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _handle(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(size) if size else b""
                server.requests.append(
                    Seen(self.command, self.path, dict(self.headers.items()), body)
                )
                server.arrived.set()
                canned = server.replies.get(self.path, Canned({"error": "not canned"}, status=404))
                if canned.value is HANG:
                    server._release.wait()
                    return
                if canned.lines is not None:
                    data = b"".join(json.dumps(line).encode() + b"\n" for line in canned.lines)
                    kind = "application/x-ndjson"
                elif canned.raw is not None:
                    data, kind = canned.raw, "application/json"
                else:
                    data, kind = json.dumps(canned.value).encode(), "application/json"
                self.send_response(canned.status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_HEAD = _handle

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
