"""HTTP plumbing of the local server: everything below the endpoints.

Request reading within ``max_body`` (413 unread beyond it), Go-style JSON decoding errors,
Ollama's CORS and Host guards (``ollama-api.md`` §0, applied to every route, ``/v1`` too),
gin's text/plain 404/405 and trailing-slash redirects, NDJSON over chunked transfer encoding,
disconnect checks, and :class:`RecordedRequest` for tests. Connections are served by
:class:`~ollama_magic.server.connections.ConnectionServer`, which gives a thread only to a
request whose head has arrived and drops clients that stall.

The endpoints are mixins of :class:`BaseHandler` (``routes_models``, ``routes_generate``,
``routes_openai``); ``app.py`` joins them into one handler with the route table. A route may
set :attr:`BaseHandler.translator` to reshape what a native handler writes (the ``/v1``
routes turn Ollama's JSON and NDJSON into OpenAI's JSON and server-sent events, as Ollama's
own middleware does).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import re
import select
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from .connections import Connection, ConnectionServer, SocketReader, discard_input
from .decoding import DecodeError, Struct, decode_struct
from .gojson import EmptyBody, GoJSONError, decode_first, dumps

if TYPE_CHECKING:
    from .app import OllamaServer

log = logging.getLogger("ollama_magic.server")

JSON = "application/json; charset=utf-8"
JSON_NO_CHARSET = "application/json"  # Ollama's content type for errors raised inside a stream
NDJSON = "application/x-ndjson"
TEXT = "text/plain"

_WIRE_SPLIT_PAUSE = 0.001  # after a split piece that ends mid-character, so reads stop there

DEFAULT_PULL_SPEED = 50_000_000
"""Bytes per second of simulated pulls and pushes: a 100 MB model takes about 2 s."""

DEFAULT_MAX_BODY = 32 << 20
"""Largest request body read (32 MiB); a larger one gets a 413 unread. Images travel in
``images`` as base64 (4/3 of the file), and a chat resends every image each turn: a 12 MP
phone JPEG is 4-6 MB, about 8 MB in base64, so a few photos fit. Decoding holds a few copies
of the body at once, so this also keeps one request's memory to a couple of hundred MB."""

DEFAULT_READ_TIMEOUT = 10.0
"""Seconds a client may take to send a request head, or stall while sending its body."""

KEEP_ALIVE_TIMEOUT = 60.0
"""Seconds a kept-alive connection may sit idle before its next request (at least the read
timeout)."""

WRITE_TIMEOUT = 120.0
"""Seconds one write of a response may wait for a client that does not read. A streaming
reader, however slow, empties the socket buffers (hundreds of kB) long before that."""

MAX_WORKERS = 64
"""Requests served at once; more wait, already read, for a free thread."""

MAX_PENDING = 1024
"""Connections waiting for a request head; past it the oldest is dropped."""

DEFAULT_KEEP_REQUESTS = 1000
"""How many of the latest requests :attr:`OllamaServer.requests` keeps."""

RECORDED_BODY_BYTES = 64 << 20
"""Bodies :attr:`OllamaServer.requests` keeps in total; older records go first (the newest
always stays)."""

BODY_TOO_LARGE = "http: request body too large"  # Go's http.MaxBytesError text
_DRAIN_SECONDS = 5.0  # how long to read and discard a refused body so the client sees the 413
_CHUNK_SIZE_LINE = re.compile(rb"[0-9a-fA-F]{1,15}")
_LINE_LIMIT = 4096  # a chunk-size or trailer line
_MAX_TRAILERS = 100

ORIGIN_SCHEMES = (
    "http://",
    "https://",
    "chrome-extension://",
    "safari-extension://",
    "moz-extension://",
    "ms-browser-extension://",
)
"""Schemes an ``OLLAMA_ORIGINS`` entry without ``*`` may have (gin-contrib/cors with browser
extensions on; Ollama refuses to start on any other)."""

_LOCAL_ORIGINS = (
    *(
        f"{scheme}://{host}{port}"
        for host in ("localhost", "127.0.0.1", "0.0.0.0")
        for port in ("", ":*")
        for scheme in ("http", "https")
    ),
    *("app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*"),
)

_CORS_PREFLIGHT = (
    ("Access-Control-Allow-Methods", "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS"),
    (
        "Access-Control-Allow-Headers",
        "Authorization,Content-Type,User-Agent,Accept,X-Requested-With,Openai-Beta,"
        "X-Stainless-Arch,X-Stainless-Async,X-Stainless-Custom-Poll-Interval,"
        "X-Stainless-Helper-Method,X-Stainless-Lang,X-Stainless-Os,"
        "X-Stainless-Package-Version,X-Stainless-Poll-Helper,X-Stainless-Retry-Count,"
        "X-Stainless-Runtime,X-Stainless-Runtime-Version,X-Stainless-Timeout",
    ),
    ("Access-Control-Max-Age", "43200"),
)
"""What an allowed preflight gets: gin-contrib/cors v1.7.2 with Ollama's configuration."""
_CORS_VARY_PREFLIGHT = (
    ("Vary", "Origin"),
    ("Vary", "Access-Control-Request-Method"),
    ("Vary", "Access-Control-Request-Headers"),
)


def allowed_origins(env: str | None = None) -> list[str]:
    """Ollama's allowed origins: the ``OLLAMA_ORIGINS`` entries (split on ``,``, not trimmed),
    then the local ones (``envconfig.AllowedOrigins``)."""
    value = (os.environ.get("OLLAMA_ORIGINS", "") if env is None else env).strip().strip("\"'")
    return [*(value.split(",") if value else []), *_LOCAL_ORIGINS]


class Origins:
    """Which ``Origin`` headers may call, matched as gin-contrib/cors v1.7.2 does.

    An entry is an exact origin (compared trimmed and lower-cased), ``*`` for all, or has one
    ``*`` that matches anything (``http://localhost:*``). Entries Ollama would refuse to start
    with (no ``*`` and no known scheme, or two ``*``) are left out with a warning.
    """

    def __init__(self, entries: Sequence[str]) -> None:
        self.allow_all = "*" in entries
        self.exact: set[str] = set()
        self.wildcards: list[tuple[str, str]] = []
        for entry in entries:
            stars = entry.count("*")
            if stars > 1 or (stars == 0 and not entry.startswith(ORIGIN_SCHEMES)):
                log.warning("ignoring the allowed origin %r: Ollama would refuse it", entry)
                continue
            self.exact.add(entry.strip().lower())
            if stars:
                prefix, _, suffix = entry.partition("*")
                self.wildcards.append((prefix, suffix))

    def allows(self, origin: str) -> bool:
        if self.allow_all or origin in self.exact:
            return True
        return any(
            origin.startswith(prefix) and origin.endswith(suffix)
            for prefix, suffix in self.wildcards
        )


class _BodyTooLarge(Exception):
    """The request body is over ``max_body``; nothing more of it should be read."""


class _CaseInsensitiveHeaders(dict):  # type: ignore[type-arg]
    """Header names as the client sent them; lookups ignore case, as HTTP does."""

    def _key(self, key: object) -> object:
        if isinstance(key, str) and not super().__contains__(key):
            folded = key.lower()
            return next((k for k in self if k.lower() == folded), key)
        return key

    def __getitem__(self, key: object) -> str:
        return super().__getitem__(self._key(key))  # type: ignore[no-any-return]

    def __contains__(self, key: object) -> bool:
        return super().__contains__(self._key(key))

    def get(self, key: object, default: Any = None) -> Any:
        return super().get(self._key(key), default)


@dataclass(eq=False)
class RecordedRequest:
    """One request as the server received it, plus what became of it.

    ``headers`` keeps the client's spelling but looks names up case-insensitively. ``json`` is the
    parsed body (None when empty or not JSON). ``status`` is the status line sent (None if the
    connection was dropped first). ``disconnected_at`` is the :func:`time.monotonic` time at which
    the server noticed the client had gone mid-response and stopped the engine (also set when
    :meth:`OllamaServer.stop` cut the response short), else None.
    ``finished`` is set when the server is done with the request: wait on it instead of sleeping.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any
    query: str = ""
    received_at: float = field(default_factory=time.monotonic)
    status: int | None = None
    disconnected_at: float | None = None
    finished: threading.Event = field(default_factory=threading.Event, repr=False)


class HTTPError(Exception):
    """Answer with ``{"error": message}`` and this status instead of going on."""

    def __init__(self, status: int, message: str, content_type: str = JSON) -> None:
        super().__init__(message)
        self.status, self.message, self.content_type = status, message, content_type


class ClientGone(Exception):
    """The client closed the connection (or the server is stopping) mid-response."""



class Translator(Protocol):
    """Reshapes a native handler's output for another API (the ``/v1`` routes)."""

    stream_content_type: str

    def json(self, status: int, value: Any) -> tuple[bytes, str]:
        """A whole response (or error, for ``status`` ≥ 400): its body and content type."""
        ...

    def stream_line(self, value: dict[str, Any]) -> bytes:
        """One NDJSON object of a stream, as the bytes to send instead (maybe none)."""
        ...


def _readable(sock: socket.socket, timeout: float) -> bool:
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN | select.POLLPRI)
        return bool(poller.poll(max(0, timeout) * 1000))
    return bool(select.select([sock], [], [], max(0, timeout))[0])



class ChunkedWriter:
    """NDJSON over chunked transfer encoding; the status line goes out with the first chunk."""

    def __init__(self, handler: BaseHandler) -> None:
        self.handler = handler
        self.started = False

    def _start(self) -> None:
        handler = self.handler
        handler.send_response(200)
        translator = handler.translator
        content_type = translator.stream_content_type if translator else NDJSON
        handler.send_header("Content-Type", content_type)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        self.started = True

    def line(self, data: bytes, split: int = 0) -> None:
        """Write one NDJSON line as one chunk, or as several chunks of ``split`` bytes."""
        translator = self.handler.translator
        if translator is not None:
            data = translator.stream_line(json.loads(data))
            if not data:
                return
        try:
            if not self.started:
                self._start()
            write = self.handler.wfile.write
            if split <= 0 or split >= len(data):
                write(b"%x\r\n%b\r\n" % (len(data), data))
                return
            for start in range(0, len(data), split):
                end = start + split
                piece = data[start:end]
                write(b"%x\r\n%b\r\n" % (len(piece), piece))
                if end < len(data) and 0x80 <= data[end] < 0xC0:
                    # The piece ended inside a UTF-8 character: pause so the client's read
                    # really stops there (sleeping after every piece would be needlessly slow).
                    time.sleep(_WIRE_SPLIT_PAUSE)
        except OSError as exc:
            raise ClientGone from exc

    def finish(self) -> None:
        """End the stream properly (the zero-length chunk)."""
        try:
            if not self.started:
                self._start()
            self.handler.wfile.write(b"0\r\n\r\n")
        except OSError as exc:
            raise ClientGone from exc



class BaseHandler(BaseHTTPRequestHandler):
    """One connection; HTTP/1.1 keep-alive, so possibly several requests."""

    ROUTES: ClassVar[dict[str, dict[str, str]]] = {}
    """Path -> method -> name of the handler method (filled in by ``app.py``)."""
    PREFIX_ROUTES: ClassVar[tuple[tuple[str, dict[str, str]], ...]] = ()
    """Paths with a parameter after the prefix (gin's ``/v1/models/:model``)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # tokens are tiny writes; don't let Nagle batch them
    server: HTTPServer
    record: RecordedRequest | None = None  # the request being handled (None before it's read)
    started_ns: int = 0
    kept = False  # the connection went back to the server to wait for its next request
    rfile: SocketReader  # type: ignore[assignment]
    _extra_headers: list[tuple[str, str]]  # added to this request's response (CORS)
    translator: Translator | None = None  # set by a /v1 route: reshapes what is written
    body_override: bytes | None = None  # set by a /v1 route: the native request it became
    path_param: str = ""  # the part after a PREFIX_ROUTES prefix

    # -- plumbing ----------------------------------------------------------------------------

    @property
    def app(self) -> OllamaServer:
        return self.server.app

    def setup(self) -> None:
        """Read from what the server has read ahead (the head, maybe more), then the socket."""
        connection: Connection = self.request
        self.request = connection.sock
        super().setup()
        self.rfile.close()
        self.rfile = SocketReader(connection)
        self.connection.settimeout(self.app.read_timeout)
        self._extra_headers = []

    def handle(self) -> None:
        """One request; a kept-alive connection then waits for the next without a thread."""
        self.close_connection = True
        self.handle_one_request()
        if not self.close_connection:
            next_request = Connection(self.connection, self.client_address, self.rfile.pending())
            self.kept = self.server.keep(next_request)

    def handle_expect_100(self) -> bool:
        """No ``100 Continue`` for a body that will be refused: the 413 comes at once."""
        with contextlib.suppress(ValueError):  # a bad length is answered once the body is read
            if self._declared_length() > self.app.max_body:
                return True
        return super().handle_expect_100()

    def end_headers(self) -> None:
        for name, value in self._extra_headers:
            self.send_header(name, value)
        super().end_headers()

    def send_response(self, code: int, message: str | None = None) -> None:
        """Like the base class, minus the ``Server`` header (Go sends none)."""
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())
        if self.record is not None:
            self.record.status = code

    def log_message(self, format: str, *args: Any) -> None:
        if self.app.log_requests:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def _chunked(self) -> bool:
        return "chunked" in self.headers.get("Transfer-Encoding", "").lower()

    def _declared_length(self) -> int:
        """The Content-Length (0 if chunked or absent); ValueError if it is not a number."""
        if self._chunked():
            return 0
        text = (self.headers.get("Content-Length") or "0").strip()
        if not text.isdigit() or not text.isascii():
            raise ValueError(f"bad Content-Length {text!r}")
        return int(text)

    def _read_body(self) -> bytes:
        """The body, read only while it stays within ``max_body`` (else :class:`_BodyTooLarge`).

        A stalled client times out here (``read_timeout`` per read): TimeoutError.
        """
        limit = self.app.max_body
        if not self._chunked():
            length = self._declared_length()
            if length > limit:
                raise _BodyTooLarge
            return self.rfile.read(length) if length > 0 else b""
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(_LINE_LIMIT)
            size_text = line.split(b";")[0].strip()
            if not line.endswith(b"\n") or not _CHUNK_SIZE_LINE.fullmatch(size_text):
                raise ValueError("bad chunk size line")
            size = int(size_text, 16)
            if size == 0:
                for _ in range(_MAX_TRAILERS):
                    if self.rfile.readline(_LINE_LIMIT) in (b"\r\n", b"\n", b""):
                        return b"".join(parts)
                raise ValueError("too many trailers")
            total += size
            if total > limit:
                raise _BodyTooLarge
            parts.append(self.rfile.read(size))
            self.rfile.readline(_LINE_LIMIT)

    def _refuse_body(self, path: str, query: str) -> None:
        """Answer a body over ``max_body`` with 413 unread (or the guards' 403), then close."""
        record = self.record = RecordedRequest(
            method=self.command,
            path=path,
            headers=_CaseInsensitiveHeaders(self.headers.items()),
            body=b"",
            json=None,
            query=query,
        )
        self.app._record(record)
        self._extra_headers.append(("Connection", "close"))
        try:
            if not self._guarded():
                self._send_error(413, BODY_TOO_LARGE)
        except ClientGone:
            record.disconnected_at = time.monotonic()
        finally:
            self.close_connection = True
            discard_input(self.connection, _DRAIN_SECONDS)
            record.finished.set()

    def _dispatch(self) -> None:
        self.started_ns = time.perf_counter_ns()
        self.record = None
        self._extra_headers = []
        self.translator = None
        self.body_override = None
        self.path_param = ""
        path, _, query = self.path.partition("?")
        try:
            body = self._read_body()
        except _BodyTooLarge:
            self._refuse_body(path, query)
            return
        except ValueError:
            self.close_connection = True
            self.send_error(400, "bad request body")
            return
        # The request is in: from now on the client only has to read, at its own pace.
        self.connection.settimeout(WRITE_TIMEOUT)
        try:
            parsed = json.loads(body) if body.strip() else None
        except (ValueError, RecursionError):  # not JSON, or nested deeper than json goes
            parsed = None
        record = self.record = RecordedRequest(
            method=self.command,
            path=path,
            headers=_CaseInsensitiveHeaders(self.headers.items()),
            body=body,
            json=parsed,
            query=query,
        )
        self.app._record(record)
        try:
            try:
                self._route(path)
            except HTTPError as exc:
                self._send_error(exc.status, exc.message, exc.content_type)
        except ClientGone:
            record.disconnected_at = time.monotonic()
            self.close_connection = True
        except Exception as exc:  # a bug here must still answer, as Go's recovery middleware does
            log.exception("unhandled error in %s %s", self.command, path)
            self.close_connection = True
            if record.status is None:
                with contextlib.suppress(ClientGone):
                    self._send_error(500, str(exc) or type(exc).__name__)
        finally:
            record.finished.set()

    def _route(self, path: str) -> None:
        if self._guarded():
            return
        routes = self.ROUTES.get(path)
        if routes is None:
            for prefix, prefixed in self.PREFIX_ROUTES:
                param = path[len(prefix) :]
                if path.startswith(prefix) and param and "/" not in param:
                    routes, self.path_param = prefixed, param
                    break
        if routes is None:
            if len(path) > 1 and path.endswith("/") and path.rstrip("/") in self.ROUTES:
                self._redirect(path.rstrip("/"))
                return
            self._send(404, b"404 page not found", TEXT)
            return
        method = routes.get(self.command)
        if method is None:
            self._send(405, b"405 method not allowed", TEXT)
            return
        getattr(self, method)()

    def _guarded(self) -> bool:
        """Ollama's middleware, in its order: CORS, then the Host guard. True if it answered.

        A disallowed ``Origin`` gets 403 with an empty body; an allowed preflight gets 204 with
        the CORS headers; other allowed cross-origin requests go on with ``Vary`` and
        ``Access-Control-Allow-Origin`` added to their answer.
        """
        origin = self.headers.get("Origin", "")
        host = self.headers.get("Host", "")
        if origin and origin not in (f"http://{host}", f"https://{host}"):  # same-origin: no CORS
            origins = self.app._origins
            if not origins.allows(origin):
                self._send(403, b"", None)
                return True
            allow_origin = [("Access-Control-Allow-Origin", "*" if origins.allow_all else origin)]
            if self.command == "OPTIONS":
                vary = () if origins.allow_all else _CORS_VARY_PREFLIGHT
                self._extra_headers += [*_CORS_PREFLIGHT, *vary, *allow_origin]
                self._send(204, b"", None)
                return True
            self._extra_headers += [] if origins.allow_all else [("Vary", "Origin")]
            self._extra_headers += allow_origin
        if not self._host_allowed():
            self._send(403, b"", None)
            return True
        if self.command == "OPTIONS" and self.app._loopback and not self._host_is_ip():
            self._send(204, b"", None)  # the Host guard answers preflights for allowed names
            return True
        return False

    def _host(self) -> str:
        host = self.headers.get("Host", "")
        if host.startswith("["):
            return host[1:].partition("]")[0]
        return host.rpartition(":")[0] if host.count(":") == 1 else host

    def _host_is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self._host())
        except ValueError:
            return False
        return True

    def _host_allowed(self) -> bool:
        """Ollama's DNS-rebinding guard, active only when bound to loopback."""
        if not self.app._loopback:
            return True
        host = self._host().lower()
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            return (
                address.is_loopback
                or address.is_private
                or address.is_unspecified
                or address.is_link_local
            )
        if host in ("", "localhost", socket.gethostname().lower()):
            return True
        return host.endswith((".localhost", ".local", ".internal"))

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str | None,
        headers: dict[str, str] | None = None,
    ) -> None:
        try:
            self.send_response(status)
            if content_type:
                self.send_header("Content-Type", content_type)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if status != 204:  # a 204 has no body, so no Content-Length (Go sends none)
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body and self.command != "HEAD":
                self.wfile.write(body)
        except OSError as exc:
            raise ClientGone from exc

    def _send_json(self, status: int, value: Any, content_type: str = JSON) -> None:
        if self.translator is not None:
            body, content_type = self.translator.json(status, value)
            self._send(status, body, content_type)
            return
        self._send(status, dumps(value), content_type)

    def _send_error(self, status: int, message: str, content_type: str = JSON) -> None:
        self._send_json(status, {"error": message}, content_type)

    def _redirect(self, location: str) -> None:
        """gin's trailing-slash redirect: 301 for GET, 307 (method kept) otherwise."""
        if self.command in ("GET", "HEAD"):
            body = f'<a href="{location}">Moved Permanently</a>.\n\n'.encode()
            self._send(301, body, "text/html; charset=utf-8", {"Location": location})
        else:
            self._send(307, b"", None, {"Location": location})

    def _drop(self) -> None:
        """Close the connection at once: no final chunk, no chunked terminator."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _check_alive(self, wait: float = 0.0) -> None:
        """Raise :class:`ClientGone` if the client hung up (or the server is stopping).

        With ``wait``, sleep that long while watching the socket, so a disconnect during a
        slow model's pause is noticed at once rather than at the next write.
        """
        deadline = time.monotonic() + wait
        while True:
            if self.app._stopping.is_set():
                raise ClientGone
            remaining = deadline - time.monotonic()
            if _readable(self.connection, min(max(remaining, 0), 0.25)):
                try:
                    peeked = self.connection.recv(1, socket.MSG_PEEK)
                except OSError as exc:
                    raise ClientGone from exc
                if not peeked:
                    raise ClientGone
                # The client sent more (a pipelined request): nothing to learn; just wait.
                time.sleep(max(0.0, deadline - time.monotonic()))
                return
            if remaining <= 0:
                return

    def _body(self) -> bytes:
        if self.body_override is not None:
            return self.body_override
        return self.record.body if self.record is not None else b""

    def _decode(self, struct: Struct) -> dict[str, Any]:
        try:
            body = decode_first(self._body())
        except EmptyBody:
            raise HTTPError(400, "missing request body") from None
        except GoJSONError as exc:
            raise HTTPError(400, str(exc)) from None
        try:
            return decode_struct(body, struct)
        except DecodeError as exc:
            raise HTTPError(400, str(exc)) from None


class HTTPServer(ConnectionServer):
    def __init__(
        self, address: tuple[str, int], app: OllamaServer, handler: type[BaseHandler]
    ) -> None:
        self.app = app
        self.handler = handler
        super().__init__(
            address,
            handler,
            read_timeout=app.read_timeout,
            idle_timeout=max(app.read_timeout, KEEP_ALIVE_TIMEOUT),
            max_pending=MAX_PENDING,
            max_workers=MAX_WORKERS,
        )

    def serve_connection(self, connection: Connection) -> bool:
        # BaseHandler.setup() unwraps the Connection to its socket (typeshed wants a socket).
        return self.handler(connection, connection.address, self).kept  # type: ignore[arg-type]

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn), slow on some CI machines.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Print real bugs, but not a client that hung up (e.g. reset an idle kept-alive
        connection): that is normal, and a traceback for it would litter notebooks and CI logs.
        """
        if isinstance(sys.exc_info()[1], _HANGUPS):
            return
        super().handle_error(request, client_address)


_HANGUPS = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, TimeoutError)
"""Errors that mean the client went away (or an idle socket timed out), not a server bug."""

