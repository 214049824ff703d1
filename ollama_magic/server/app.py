"""The HTTP side of the local server: Ollama's native API on a stdlib ``ThreadingHTTPServer``.

This module owns the wire and nothing else: routing (gin's text/plain 404/405), request decoding
and validation in Ollama's order of checks, status codes and error bodies, NDJSON framing over
chunked transfer encoding, timestamps, ``keep_alive`` and ``/api/ps`` (through
:class:`~ollama_magic.server.scheduler.Scheduler`). Models come from engines
(:mod:`~ollama_magic.server.engine`) through a :class:`~ollama_magic.server.store.ModelStore`,
which pull, push, create, copy and delete change. The latest requests are recorded as
:class:`RecordedRequest`, so tests can check what a client sent and whether the server saw it
disconnect.

Hostile input is bounded: bodies over ``max_body`` get a 413 before they are read, undecodable
ones a 400 with Go's text, requests from web pages that are not local get Ollama's 403 (CORS
and the Host guard of ``ollama-api.md`` §0), and connections are served by
:class:`~ollama_magic.server.connections.ConnectionServer`, which gives a thread only to a
request whose head has arrived and drops clients that stall.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import math
import os
import re
import select
import socket
import socketserver
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol, cast

from ..common.gotime import format_time, utc_now
from ..common.names import RefError, parse_name, pull_name
from .connections import Connection, ConnectionServer, SocketReader, discard_input
from .decoding import (
    CHAT_REQUEST,
    COPY_REQUEST,
    CREATE_REQUEST,
    DELETE_REQUEST,
    EMBED_REQUEST,
    GENERATE_REQUEST,
    PULL_REQUEST,
    PUSH_REQUEST,
    SHOW_REQUEST,
    DecodeError,
    OptionError,
    Struct,
    decode_struct,
    parse_parameters,
    think_enabled,
    validate_options,
)
from .engine import (
    ChatJob,
    Done,
    Drop,
    Engine,
    Event,
    Fail,
    GenerateJob,
    LoadError,
    ModelCard,
    Pause,
    Token,
)
from .gojson import (
    EmptyBody,
    GoJSONError,
    decode_first,
    dumps,
    dumps_str,
    float32,
    format_g,
    go_quote,
    raw_field,
)
from .gotemplate import TemplateError
from .gotemplate import parse as parse_template
from .scheduler import DEFAULT_KEEP_ALIVE, LoadedModel, Scheduler, model_options
from .scripted import ScriptedEngine
from .store import (
    CREATE_FROM_MODEL_ONLY,
    MODELS_DIR,
    ModelStore,
    Progress,
    ProgressError,
    Steps,
    create,
    pull,
    push,
)

log = logging.getLogger(__name__)

JSON = "application/json; charset=utf-8"
JSON_NO_CHARSET = "application/json"  # Ollama's content type for errors raised inside a stream
NDJSON = "application/x-ndjson"
TEXT = "text/plain"

_DEFAULT_HOST = "registry.ollama.ai"
_DEFAULT_NAMESPACE = "library"
_WIRE_SPLIT_PAUSE = 0.001  # after a split piece that ends mid-character, so reads stop there
_ALIVE_CHECK_EVERY = 0.1  # seconds between disconnect checks while an engine streams

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


class _HTTPError(Exception):
    """Answer with ``{"error": message}`` and this status instead of going on."""

    def __init__(self, status: int, message: str, content_type: str = JSON) -> None:
        super().__init__(message)
        self.status, self.message, self.content_type = status, message, content_type


class _ClientGone(Exception):
    """The client closed the connection (or the server is stopping) mid-response."""


def _name_parts(name: str) -> tuple[str, str, str, str]:
    """(host, namespace, model, tag) of an Ollama model reference, with Ollama's defaults."""
    parts = name.split("/")
    model, _, tag = parts[-1].partition(":")
    host, namespace = _DEFAULT_HOST, _DEFAULT_NAMESPACE
    if len(parts) >= 3:
        host, namespace = parts[-3], parts[-2]
    elif len(parts) == 2:
        namespace = parts[0]
    return host, namespace, model, tag or "latest"


def short_name(name: str) -> str:
    """How Ollama displays a model reference: ``echo`` → ``echo:latest``."""
    host, namespace, model, tag = _name_parts(name)
    prefix = "" if host == _DEFAULT_HOST else host + "/"
    if namespace != _DEFAULT_NAMESPACE or prefix:
        prefix += namespace + "/"
    return f"{prefix}{model}:{tag}"


def qualified_name(name: str) -> str:
    """The full form some Ollama errors use: ``registry.ollama.ai/library/echo:latest``."""
    return "{}/{}/{}:{}".format(*_name_parts(name))


def _parameter_count(size: str) -> int:
    units = {"K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}
    try:
        return int(float(size[:-1]) * units[size[-1].upper()])
    except (KeyError, ValueError, IndexError):
        return 0


def _details(card: ModelCard) -> dict[str, Any]:
    return {
        "parent_model": card.parent_model,
        "format": card.format,
        "family": card.family,
        "families": [card.family],
        "parameter_size": card.parameter_size,
        "quantization_level": card.quantization_level,
    }


def _readable(sock: socket.socket, timeout: float) -> bool:
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN | select.POLLPRI)
        return bool(poller.poll(max(0, timeout) * 1000))
    return bool(select.select([sock], [], [], max(0, timeout))[0])


class _Shape:
    """How a streaming endpoint frames tokens, the final chunk and load/unload replies.

    Subclasses say where the text goes (``_OPEN``/``_CLOSE`` around it in a chunk, :meth:`head`
    for whole objects) and what the final chunk adds (:meth:`_extra`).
    """

    _OPEN = b""  # a chunk's bytes between the created_at value and the JSON string of the text
    _CLOSE = b""  # a chunk's bytes after the text (and its thinking)

    def __init__(self, model: str, started_ns: int, load_ns: int) -> None:
        self.model, self.started_ns, self.load_ns = model, started_ns, load_ns
        self._prefix = b'{"model":' + dumps_str(model) + b',"created_at":"'

    def chunk(self, token: Token) -> bytes:
        """One NDJSON line, written by hand: this is the per-token hot path."""
        thinking = b',"thinking":' + dumps_str(token.thinking) if token.thinking else b""
        text = dumps_str(token.response)
        return b"".join((self._prefix, utc_now().encode(), self._OPEN, text, thinking, self._CLOSE))

    def head(self, response: str, thinking: str, done: bool) -> dict[str, Any]:
        raise NotImplementedError

    def final(self, done: Done, response: str, thinking: str) -> dict[str, Any]:
        body = self.head(response, thinking, True)
        if done.done_reason:
            body["done_reason"] = done.done_reason
        body.update(self._extra(done))
        body.update(_metrics(done, self.started_ns, self.load_ns))
        return body

    def _extra(self, done: Done) -> dict[str, Any]:
        """Fields of the final chunk between ``done_reason`` and the metrics."""
        return {}


class _GenerateShape(_Shape):
    """``/api/generate``: the text in ``response``; the final chunk has ``context``."""

    _OPEN = b'","response":'
    _CLOSE = b',"done":false}\n'

    def __init__(self, model: str, started_ns: int, load_ns: int, raw: bool) -> None:
        super().__init__(model, started_ns, load_ns)
        self.raw = raw

    def head(self, response: str, thinking: str, done: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "created_at": utc_now(), "response": response}
        if thinking:
            body["thinking"] = thinking
        body["done"] = done
        return body

    def _extra(self, done: Done) -> dict[str, Any]:
        return {"context": list(done.context)} if done.context and not self.raw else {}


class _ChatShape(_Shape):
    """``/api/chat``: the text in a ``message`` object, and no ``context``."""

    _OPEN = b'","message":{"role":"assistant","content":'
    _CLOSE = b'},"done":false}\n'

    def head(self, response: str, thinking: str, done: bool) -> dict[str, Any]:
        message = {"role": "assistant", "content": response}
        if thinking:
            message["thinking"] = thinking
        return {"model": self.model, "created_at": utc_now(), "message": message, "done": done}


def _metrics(done: Done, started_ns: int, load_ns: int) -> dict[str, int]:
    values = {
        "total_duration": time.perf_counter_ns() - started_ns,
        "load_duration": load_ns,
        "prompt_eval_count": done.prompt_eval_count,
        "prompt_eval_duration": done.prompt_eval_duration,
        "eval_count": done.eval_count,
        "eval_duration": done.eval_duration,
    }
    return {key: value for key, value in values.items() if value}  # Go's omitempty


class _ChunkedWriter:
    """NDJSON over chunked transfer encoding; the status line goes out with the first chunk."""

    def __init__(self, handler: _Handler) -> None:
        self.handler = handler
        self.started = False

    def _start(self) -> None:
        handler = self.handler
        handler.send_response(200)
        handler.send_header("Content-Type", NDJSON)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        self.started = True

    def line(self, data: bytes, split: int = 0) -> None:
        """Write one NDJSON line as one chunk, or as several chunks of ``split`` bytes."""
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
            raise _ClientGone from exc

    def finish(self) -> None:
        """End the stream properly (the zero-length chunk)."""
        try:
            if not self.started:
                self._start()
            self.handler.wfile.write(b"0\r\n\r\n")
        except OSError as exc:
            raise _ClientGone from exc


_ROUTES: dict[str, dict[str, str]] = {
    "/": {"GET": "_root", "HEAD": "_root"},
    "/api/version": {"GET": "_version", "HEAD": "_version"},
    "/api/generate": {"POST": "_generate"},
    "/api/chat": {"POST": "_chat"},
    "/api/embed": {"POST": "_embed"},
    "/api/tags": {"GET": "_tags", "HEAD": "_tags"},
    "/api/show": {"POST": "_show"},
    "/api/ps": {"GET": "_ps"},
    "/api/pull": {"POST": "_pull"},
    "/api/push": {"POST": "_push"},
    "/api/create": {"POST": "_create"},
    "/api/copy": {"POST": "_copy"},
    "/api/delete": {"DELETE": "_delete"},
}


class _Handler(BaseHTTPRequestHandler):
    """One connection; HTTP/1.1 keep-alive, so possibly several requests."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # tokens are tiny writes; don't let Nagle batch them
    server: _HTTPServer
    record: RecordedRequest | None = None  # the request being handled (None before it's read)
    started_ns: int = 0
    kept = False  # the connection went back to the server to wait for its next request
    rfile: SocketReader  # type: ignore[assignment]
    _extra_headers: list[tuple[str, str]]  # added to this request's response (CORS)

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
        except _ClientGone:
            record.disconnected_at = time.monotonic()
        finally:
            self.close_connection = True
            discard_input(self.connection, _DRAIN_SECONDS)
            record.finished.set()

    def _dispatch(self) -> None:
        self.started_ns = time.perf_counter_ns()
        self.record = None
        self._extra_headers = []
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
            except _HTTPError as exc:
                self._send_error(exc.status, exc.message, exc.content_type)
        except _ClientGone:
            record.disconnected_at = time.monotonic()
            self.close_connection = True
        except Exception as exc:  # a bug here must still answer, as Go's recovery middleware does
            log.exception("unhandled error in %s %s", self.command, path)
            self.close_connection = True
            if record.status is None:
                with contextlib.suppress(_ClientGone):
                    self._send_error(500, str(exc) or type(exc).__name__)
        finally:
            record.finished.set()

    def _route(self, path: str) -> None:
        if self._guarded():
            return
        routes = _ROUTES.get(path)
        if routes is None:
            if len(path) > 1 and path.endswith("/") and path.rstrip("/") in _ROUTES:
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
            raise _ClientGone from exc

    def _send_json(self, status: int, value: Any, content_type: str = JSON) -> None:
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
        """Raise :class:`_ClientGone` if the client hung up (or the server is stopping).

        With ``wait``, sleep that long while watching the socket, so a disconnect during a
        slow model's pause is noticed at once rather than at the next write.
        """
        deadline = time.monotonic() + wait
        while True:
            if self.app._stopping.is_set():
                raise _ClientGone
            remaining = deadline - time.monotonic()
            if _readable(self.connection, min(max(remaining, 0), 0.25)):
                try:
                    peeked = self.connection.recv(1, socket.MSG_PEEK)
                except OSError as exc:
                    raise _ClientGone from exc
                if not peeked:
                    raise _ClientGone
                # The client sent more (a pipelined request): nothing to learn; just wait.
                time.sleep(max(0.0, deadline - time.monotonic()))
                return
            if remaining <= 0:
                return

    def _body(self) -> bytes:
        return self.record.body if self.record is not None else b""

    def _decode(self, struct: Struct) -> dict[str, Any]:
        try:
            body = decode_first(self._body())
        except EmptyBody:
            raise _HTTPError(400, "missing request body") from None
        except GoJSONError as exc:
            raise _HTTPError(400, str(exc)) from None
        try:
            return decode_struct(body, struct)
        except DecodeError as exc:
            raise _HTTPError(400, str(exc)) from None

    # -- small endpoints ---------------------------------------------------------------------

    def _root(self) -> None:
        self._send(200, b"Ollama is running", TEXT)

    def _version(self) -> None:
        self._send_json(200, {"version": self.app.version})

    def _tags(self) -> None:
        models = []
        for card in self.app._cards():
            modified = card.modified_at or self.app._started_at
            models.append(
                (
                    modified.timestamp(),
                    {
                        "name": card.name,
                        "model": card.name,
                        "modified_at": format_time(int(modified.timestamp() * 1e9), utc=False),
                        "size": card.size,
                        "digest": card.digest,
                        "details": _details(card),
                        "capabilities": list(card.capabilities),
                    },
                )
            )
        models.sort(key=lambda row: row[0], reverse=True)
        self._send_json(200, {"models": [row for _, row in models]})

    def _show(self) -> None:
        req = self._decode(SHOW_REQUEST)
        name = _requested_model(req)
        if not name:
            raise _HTTPError(400, "model is required")
        found = self.app._find(name)
        if found is None:
            raise _HTTPError(404, f"model '{short_name(name)}' not found")
        self._send_json(200, _show_body(found[1], verbose=req.get("verbose", False)))

    def _ps(self) -> None:
        models = []
        for entry, expires_ns in self.app.scheduler.loaded():
            card = entry.card
            models.append(
                {
                    "name": card.name,
                    "model": card.name,
                    "size": card.size,
                    "digest": card.digest,
                    "details": _details(card),
                    "expires_at": format_time(expires_ns, utc=False),
                    "size_vram": 0,
                    "context_length": entry.num_ctx,
                }
            )
        self._send_json(200, {"models": models})

    # -- pull, push, create, copy, delete ----------------------------------------------------

    def _progress(self, steps: Steps, stream: bool) -> None:
        """Run a pull, push or create: NDJSON progress, or (``stream: false``) only the last
        object, as Ollama's waitForStream sends it (``application/json`` without charset).

        A client that hangs up ends the operation where it is (the generator is closed).
        """
        out = _ChunkedWriter(self)
        last: dict[str, Any] = {"status": ""}
        try:
            for step in steps:
                if not isinstance(step, Progress):
                    self._check_alive(step.seconds)
                    continue
                last = step.body()
                if stream:
                    out.line(dumps(last) + b"\n")
                else:
                    self._check_alive()
        except ProgressError as exc:
            if stream and out.started:
                out.line(dumps({"error": str(exc)}) + b"\n")
                out.finish()
            else:
                self._send_error(exc.status, str(exc), JSON_NO_CHARSET)
            return
        finally:
            steps.close()  # after a hang-up: the operation stops where it is
        if stream:
            out.finish()
        else:
            self._send_json(200, last, JSON_NO_CHARSET)

    def _pull(self) -> None:
        req = self._decode(PULL_REQUEST)
        try:
            name = parse_name(pull_name(_requested_model(req)))
        except RefError as exc:
            raise _HTTPError(400, "invalid model name" if exc.required else str(exc)) from None
        if not name.is_valid():
            raise _HTTPError(400, "invalid model name")
        store = self.app.store
        self._progress(
            pull(store, store.canonical(name), self.app.pull_speed), req.get("stream", True)
        )

    def _push(self) -> None:
        req = self._decode(PUSH_REQUEST)
        given = _requested_model(req)
        if not given:
            raise _HTTPError(400, "model is required")
        store = self.app.store
        name = store.canonical(parse_name(given))
        self._progress(push(store, name, self.app.pull_speed), req.get("stream", True))

    def _create(self) -> None:
        """``/api/create`` from an existing model; Ollama's checks before streaming first."""
        req = self._decode(CREATE_REQUEST)
        for field_name in ("files", "draft_files"):
            for path, digest in req.get(field_name, {}).items():
                if not _valid_fs_path(path):
                    raise _HTTPError(400, "file path must be relative")
                if not digest:
                    raise _HTTPError(400, "invalid digest format")
        if req.get("draft_quantize") and not req.get("draft_files"):
            raise _HTTPError(400, "--draft-quantize requires a DRAFT model")
        if any(not digest for digest in req.get("adapters", {}).values()):
            raise _HTTPError(400, "invalid digest format")
        name = parse_name(_requested_model(req))
        if not name.is_valid():
            raise _HTTPError(400, "invalid model name")
        from_files = req.get("files") and not req.get("from")
        if from_files or req.get("adapters") or req.get("draft_files"):
            raise _HTTPError(400, CREATE_FROM_MODEL_ONLY)
        store = self.app.store
        steps = create(store, store.canonical(name), req, self.app.pull_speed)
        self._progress(steps, req.get("stream", True))

    def _copy(self) -> None:
        req = self._decode(COPY_REQUEST)
        source, destination = req.get("source", ""), req.get("destination", "")
        src, dst = parse_name(source), parse_name(destination)
        if not src.is_valid():
            raise _HTTPError(400, f"source {go_quote(source)} is invalid")
        if not dst.is_valid():
            raise _HTTPError(400, f"destination {go_quote(destination)} is invalid")
        store = self.app.store
        if not store.copy(store.canonical(src), store.canonical(dst)):
            raise _HTTPError(404, f"model {go_quote(source)} not found")
        self._send(200, b"", None)

    def _delete(self) -> None:
        """``DELETE /api/delete``: the model goes, but a loaded one stays loaded (as in Ollama)."""
        req = self._decode(DELETE_REQUEST)
        given = _requested_model(req)
        try:
            name = parse_name(pull_name(given))
        except RefError as exc:  # "model is required", or a conflicting :local/:cloud
            raise _HTTPError(400, str(exc)) from None
        if not name.is_valid():
            raise _HTTPError(400, f"name {go_quote(given)} is invalid")
        if self.app.store.delete(name) is None:
            raise _HTTPError(404, f"model '{given}' not found")
        self._send(200, b"", None)

    # -- generate and chat -------------------------------------------------------------------

    def _common_checks(
        self, req: dict[str, Any], card: ModelCard, model: str, endpoint: str
    ) -> None:
        """Ollama's thinking and capability checks (steps 8–9 of the generate handler)."""
        if "thinking" not in card.capabilities and think_enabled(req.get("think")):
            raise _HTTPError(400, f"{go_quote(model)} does not support thinking")
        if "completion" not in card.capabilities:
            raise _HTTPError(400, f"{go_quote(model)} does not support {endpoint}")
        if req.get("suffix") and "insert" not in card.capabilities:
            raise _HTTPError(400, f"{qualified_name(card.name)} does not support insert")
        if req.get("tools") and "tools" not in card.capabilities:
            raise _HTTPError(400, f"{qualified_name(card.name)} does not support tools")

    def _options(self, req: dict[str, Any], card: ModelCard) -> dict[str, Any]:
        try:
            return model_options(card, validate_options(req.get("options") or {}))
        except OptionError as exc:
            raise _HTTPError(500, str(exc)) from None

    def _format(self, req: dict[str, Any]) -> tuple[str | dict[str, Any] | None, Fail | None]:
        """The ``format`` to pass on, or the Fail Ollama's runner raises for a bad one.

        Ollama checks ``format`` only when the model starts generating, so the error travels
        like any pre-output model error (a 500; ``application/json`` without charset in a
        stream).
        """
        value = req.get("format")
        if value is None or value == "":
            return None, None
        if value == "json" or isinstance(value, dict):
            return value, None
        raw = raw_field(self._body(), "format")
        text = go_quote((raw or dumps(value)).decode("utf-8", "replace"))
        message = f'invalid format: {text}; expected "json" or a valid JSON Schema object'
        return None, Fail(message)

    def _lookup(self, model: str) -> tuple[Engine, ModelCard]:
        found = self.app._find(model)
        if found is None:
            raise _HTTPError(404, f"model '{model}' not found")
        return found

    def _acquire(
        self, engine: Engine, card: ModelCard, options: dict[str, Any], keep_alive: int | None
    ) -> tuple[LoadedModel, int]:
        try:
            lease = self.app.scheduler.acquire(
                engine, card, options, DEFAULT_KEEP_ALIVE if keep_alive is None else keep_alive
            )
        except LoadError as exc:  # a bad GGUF: one line, no traceback
            log.error("loading %s failed: %s", card.name, exc)
            raise _HTTPError(500, str(exc)) from None
        except Exception as exc:
            log.exception("loading %s failed", card.name)
            raise _HTTPError(500, str(exc) or type(exc).__name__) from None
        return lease, max(1, time.perf_counter_ns() - self.started_ns)

    def _generate(self) -> None:
        req = self._decode(GENERATE_REQUEST)
        if not 0 <= req.get("top_logprobs", 0) <= 20:
            raise _HTTPError(400, "top_logprobs must be between 0 and 20")
        model = req.get("model", "")
        engine, card = self._lookup(model)
        prompt = req.get("prompt", "")
        keep_alive = req.get("keep_alive")
        if prompt == "" and keep_alive == 0:
            self.app.scheduler.unload(card.name)
            self._send_json(200, _GenerateShape(model, 0, 0, False).head("", "", True) | _UNLOAD)
            return
        raw = req.get("raw", False)
        if raw and (req.get("template") or req.get("system") or req.get("context")):
            raise _HTTPError(400, "raw mode does not support template, system, or context")
        self._common_checks(req, card, model, "generate")
        options = self._options(req, card)
        lease, load_ns = self._acquire(engine, card, options, keep_alive)
        try:
            if prompt == "":
                self._send_json(200, _GenerateShape(model, 0, 0, False).head("", "", True) | _LOAD)
                return
            template = req.get("template") or None
            if template and not raw:
                try:
                    parse_template(template)
                except TemplateError as exc:
                    raise _HTTPError(500, str(exc)) from None
            fmt, bad_format = self._format(req)
            job = GenerateJob(
                model=model,
                card=card,
                prompt=prompt,
                suffix=req.get("suffix", ""),
                system=req.get("system") or None,
                template=template,
                raw=raw,
                images=tuple(req.get("images", ())),
                format=fmt,
                options=options,
                context=tuple(req.get("context", ())),
                think=req.get("think"),
                truncate=req.get("truncate", True),
                shift=req.get("shift", True),
            )
            shape = _GenerateShape(model, self.started_ns, load_ns, raw)
            start = (lambda: iter([bad_format])) if bad_format else (lambda: engine.generate(job))
            self._respond(start, shape, req.get("stream", True))
        finally:
            self.app.scheduler.release(lease)

    def _chat(self) -> None:
        req = self._decode(CHAT_REQUEST)
        if not 0 <= req.get("top_logprobs", 0) <= 20:
            raise _HTTPError(400, "top_logprobs must be between 0 and 20")
        model = req.get("model", "")
        if not model:
            raise _HTTPError(400, "model is required")
        engine, card = self._lookup(model)
        messages = req.get("messages", [])
        keep_alive = req.get("keep_alive")
        if not messages and keep_alive == 0:
            self.app.scheduler.unload(card.name)
            self._send_json(200, _ChatShape(model, 0, 0).head("", "", True) | _UNLOAD)
            return
        self._common_checks(req, card, model, "chat")
        options = self._options(req, card)
        lease, load_ns = self._acquire(engine, card, options, keep_alive)
        try:
            if not messages:
                self._send_json(200, _ChatShape(model, 0, 0).head("", "", True) | _LOAD)
                return
            fmt, bad_format = self._format(req)
            job = ChatJob(
                model=model,
                card=card,
                messages=tuple(messages),
                format=fmt,
                options=options,
                think=req.get("think"),
                tools=tuple(req.get("tools", ())),
                truncate=req.get("truncate", True),
                shift=req.get("shift", True),
            )
            shape = _ChatShape(model, self.started_ns, load_ns)
            start = (lambda: iter([bad_format])) if bad_format else (lambda: engine.chat(job))
            self._respond(start, shape, req.get("stream", True))
        finally:
            self.app.scheduler.release(lease)

    def _embed(self) -> None:
        """``/api/embed``: Ollama's order of checks; empty input only loads the model."""
        req = self._decode(EMBED_REQUEST)
        inputs = _embed_inputs(req.get("input"))
        model = req.get("model", "")
        if not model.strip():
            raise _HTTPError(404, f"model '{model}' not found")
        found = self.app._find(model)
        if found is None:
            raise _HTTPError(404, f"model {go_quote(model)} not found, try pulling it first")
        engine, card = found
        options = self._options(req, card)
        lease, load_ns = self._acquire(engine, card, options, req.get("keep_alive"))
        try:
            if not inputs:
                self._send_json(200, {"model": model, "embeddings": []})
                return
            try:
                vectors, count = _embed_counted(engine, card.base or card.name, inputs, options)
            except Exception as exc:
                log.exception("embedding with %s failed", card.name)
                raise _HTTPError(500, str(exc) or type(exc).__name__) from None
            dimensions = req.get("dimensions", 0)
            body: dict[str, Any] = {
                "model": model,
                "embeddings": [_embedding(vector, dimensions) for vector in vectors],
                "total_duration": time.perf_counter_ns() - self.started_ns,
                "load_duration": load_ns,
                "prompt_eval_count": count,
            }
            omitempty = {key: value for key, value in body.items() if value != 0}
            self._send_json(200, omitempty)
        finally:
            self.app.scheduler.release(lease)

    def _respond(self, start: Callable[[], Iterator[Event]], shape: _Shape, stream: bool) -> None:
        """Run the engine and answer, streamed or as one object; always close the engine."""
        events: Iterator[Event] | None = None
        try:
            try:
                events = start()
            except Exception as exc:
                log.exception("engine failed to start")
                events = iter([Fail(str(exc) or type(exc).__name__)])
            if stream:
                self._stream(events, shape)
            else:
                self._collect(events, shape)
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()  # GeneratorExit inside the engine: it stops and cleans up

    def _events(self, events: Iterator[Event]) -> Iterator[Event]:
        """The engine's events, with disconnect checks and engine crashes turned into Fail."""
        last_check = time.monotonic()
        while True:
            try:
                event = next(events)
            except StopIteration:
                return
            except Exception as exc:
                log.exception("engine failed")
                yield Fail(f"an error was encountered while running the model: {exc}")
                return
            if isinstance(event, Pause):
                self._check_alive(event.seconds)
                last_check = time.monotonic()
                continue
            now = time.monotonic()
            if now - last_check >= _ALIVE_CHECK_EVERY:
                self._check_alive()
                last_check = now
            yield event

    def _stream(self, events: Iterator[Event], shape: _Shape) -> None:
        out = _ChunkedWriter(self)
        split = 0
        for event in self._events(events):
            if isinstance(event, Token):
                split = event.wire_split
                out.line(shape.chunk(event), split)
            elif isinstance(event, Done):
                out.line(dumps(shape.final(event, "", "")) + b"\n", split)
                break
            elif isinstance(event, Fail):
                if not out.started:  # nothing sent yet: a real HTTP error, as Ollama does
                    self._send_error(event.status, event.message, JSON_NO_CHARSET)
                    return
                out.line(dumps({"error": event.message}) + b"\n", split)
                break
            elif isinstance(event, Drop):
                self._drop()
                return
        out.finish()

    def _collect(self, events: Iterator[Event], shape: _Shape) -> None:
        response: list[str] = []
        thinking: list[str] = []
        for event in self._events(events):
            if isinstance(event, Token):
                response.append(event.response)
                thinking.append(event.thinking)
            elif isinstance(event, Done):
                self._send_json(200, shape.final(event, "".join(response), "".join(thinking)))
                return
            elif isinstance(event, Fail):
                self._send_error(event.status, event.message)
                return
            elif isinstance(event, Drop):
                self._drop()
                return
        # The engine stopped without Done (Ollama's repeated-token abort does this): done false.
        self._send_json(200, shape.head("".join(response), "".join(thinking), False))


def _requested_model(req: dict[str, Any]) -> str:
    """The request's ``model``, or the deprecated ``name`` that Ollama still accepts."""
    return str(req.get("model") or req.get("name") or "")


def _valid_fs_path(path: str) -> bool:
    """Go's ``fs.ValidPath``: relative, slash-separated, no empty, ``.`` or ``..`` element."""
    return path == "." or all(part not in ("", ".", "..") for part in path.split("/"))


def _embed_inputs(value: Any) -> list[str]:
    """Ollama's reading of ``input``: absent, a string (empty: none) or an array of strings."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise _HTTPError(400, "invalid input type")


class _CountingEmbedder(Protocol):
    """An engine that also says how many tokens it read (``prompt_eval_count``)."""

    def embed_with_count(
        self, name: str, inputs: list[str], options: dict[str, Any]
    ) -> tuple[list[list[float]], int]: ...


def _embed_counted(
    engine: Engine, name: str, inputs: list[str], options: dict[str, Any]
) -> tuple[list[list[float]], int]:
    """Vectors and input token count; the count is 0 (left out) if the engine does not say."""
    if hasattr(engine, "embed_with_count"):
        return cast(_CountingEmbedder, engine).embed_with_count(name, inputs, options)
    return engine.embed(name, inputs, options), 0


def _embedding(vector: list[float], dimensions: int) -> list[float]:
    """One vector as Ollama sends it: cut to ``dimensions`` (then L2-normalised again) if that
    is positive and shorter, and float32 values."""
    if 0 < dimensions < len(vector):
        vector = vector[:dimensions]
        norm = math.sqrt(sum(x * x for x in vector)) or 1.0
        vector = [x / norm for x in vector]
    return [float32(x) for x in vector]


_LOAD = {"done_reason": "load"}
_UNLOAD = {"done_reason": "unload"}


def _go_value(value: Any) -> str:
    """A parameter as Ollama's show prints it (Go's ``%#v`` of a decoded JSON value)."""
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return format_g(float(value))  # JSON numbers are float64 to Go: 1e+06, not 1000000
    return json.dumps(value)


def _show_body(card: ModelCard, *, verbose: bool) -> dict[str, Any]:
    """``/api/show`` for one card, field order and omitempty as Ollama's ShowResponse."""
    arch = str(card.model_info.get("general.architecture", card.family))
    info: dict[str, Any] = {
        "general.architecture": arch,
        "general.parameter_count": _parameter_count(card.parameter_size),
        f"{arch}.context_length": card.context_length,
        **card.model_info,
    }
    if not verbose:  # Ollama hides long arrays (tokenizer tables) unless asked
        info = {k: [] if isinstance(v, list) and len(v) > 5 else v for k, v in info.items()}
    params = parse_parameters(card.parameters)
    lines = []
    for key, value in params.items():
        for item in value if isinstance(value, list) else [value]:
            lines.append(f"{key:<30} {_go_value(item)}")
    modelfile = [
        '# Modelfile generated by "ollama show"',
        "# To build a new Modelfile based on this, replace FROM with:",
        f"# FROM {card.name}",
        "",
        f"FROM {MODELS_DIR}/blobs/sha256-{card.digest}",
        f'TEMPLATE """{card.template}"""',
    ]
    if card.system:
        modelfile.append(f'SYSTEM """{card.system}"""')
    modelfile += [f"PARAMETER {line}" for line in card.parameters.splitlines() if line.strip()]
    if card.license:
        modelfile.append(f'LICENSE """{card.license}"""')
    messages = [{"role": m.get("role", ""), "content": m.get("content", "")} for m in card.messages]
    modelfile += [f'MESSAGE {m["role"]} """{m["content"]}"""' for m in messages]
    body: dict[str, Any] = {
        "license": card.license,
        "modelfile": "\n".join(modelfile) + "\n",
        "parameters": "\n".join(lines),
        "template": card.template,
        "system": card.system,
        "details": _details(card),
        "messages": messages,
        "model_info": dict(sorted(info.items())),  # Go writes map keys sorted
        "capabilities": list(card.capabilities),
    }
    body = {key: value for key, value in body.items() if value}
    modified = card.modified_at
    body["modified_at"] = (
        format_time(int(modified.timestamp() * 1e9), utc=False)
        if modified
        else (format_time(time.time_ns(), utc=False))
    )
    return body


class _HTTPServer(ConnectionServer):
    def __init__(self, address: tuple[str, int], app: OllamaServer) -> None:
        self.app = app
        super().__init__(
            address,
            _Handler,
            read_timeout=app.read_timeout,
            idle_timeout=max(app.read_timeout, KEEP_ALIVE_TIMEOUT),
            max_pending=MAX_PENDING,
            max_workers=MAX_WORKERS,
        )

    def serve_connection(self, connection: Connection) -> bool:
        return _Handler(connection, connection.address, self).kept

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


class OllamaServer:
    """An Ollama-compatible server on a background thread, for tests, notebooks and CI.

    **Parameters:**

    * ``engines`` – where models come from; default ``[ScriptedEngine()]``. On a name clash the
      first engine wins.
    * ``host``, ``port`` – bind address; port 0 picks a free port (see :attr:`url`).
    * ``version`` – what ``/api/version`` reports.
    * ``log_requests`` – print one line per request to stderr (the CLI turns this on).
    * ``pull_speed`` – bytes per second of simulated ``/api/pull`` and ``/api/push`` transfers
      (attribute of the same name; default :data:`DEFAULT_PULL_SPEED`, about 2 s for the
      96 MB ``haiku``).
    * ``max_body`` – largest request body in bytes (:data:`DEFAULT_MAX_BODY`); larger ones get
      413 ``{"error":"http: request body too large"}`` without being read.
    * ``read_timeout`` – seconds a client may take to send a request head, or stall while
      sending a body (:data:`DEFAULT_READ_TIMEOUT`); then its connection is dropped.
    * ``keep_requests`` – how many of the latest requests :attr:`requests` keeps (0: none).
    * ``origins`` – the allowed web origins; default: ``OLLAMA_ORIGINS`` plus the local ones
      (:func:`allowed_origins`). Requests without an ``Origin`` header (``requests``, the
      ``ollama`` client, kernels) are not affected.

    Installed models live in :attr:`store` (a :class:`~ollama_magic.server.store.ModelStore`):
    at first every engine's models, then whatever pull, create, copy and delete make of them.

    **Usage:**

    ``with OllamaServer() as server: requests.post(server.url + "/api/generate", ...)``. The
    socket is bound in the constructor, so :attr:`url` is known before :meth:`start`.
    """

    def __init__(
        self,
        engines: list[Engine] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        version: str = "0.12.6",
        *,
        log_requests: bool = False,
        pull_speed: float = DEFAULT_PULL_SPEED,
        max_body: int = DEFAULT_MAX_BODY,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        keep_requests: int = DEFAULT_KEEP_REQUESTS,
        origins: Sequence[str] | None = None,
    ) -> None:
        if not pull_speed > 0:
            raise ValueError(f"pull_speed must be positive, not {pull_speed!r}")
        if not read_timeout > 0:
            raise ValueError(f"read_timeout must be positive, not {read_timeout!r}")
        self.engines: list[Engine] = list(engines) if engines is not None else [ScriptedEngine()]
        self.version = version
        self.log_requests = log_requests
        self.pull_speed = pull_speed
        self.max_body = max_body
        self.read_timeout = read_timeout
        self.keep_requests = keep_requests
        self.origins = list(origins) if origins is not None else allowed_origins()
        self._origins = Origins(self.origins)
        self.store = ModelStore(self.engines)
        self.scheduler = Scheduler()
        self._records: deque[RecordedRequest] = deque()
        self._recorded_bytes = 0
        self._records_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_at = datetime.now().astimezone()
        self._httpd = _HTTPServer((host, port), self)
        bound_host, bound_port = self._httpd.server_address[:2]
        self.host = str(bound_host)
        self.port = int(bound_port)
        try:
            self._loopback = ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            self._loopback = self.host == "localhost"

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321`` (no trailing slash)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        """The latest requests, in arrival order (a snapshot list): at most ``keep_requests``,
        and older ones go early when their bodies pass :data:`RECORDED_BODY_BYTES`."""
        with self._records_lock:
            return list(self._records)

    def clear(self) -> None:
        """Forget the recorded requests."""
        with self._records_lock:
            self._records.clear()
            self._recorded_bytes = 0

    def start(self) -> OllamaServer:
        """Serve on a daemon thread; returns ``self`` so ``OllamaServer().start()`` chains."""
        if self._thread is None:
            self.scheduler.start()
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"ollama-magic-server-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve on the calling thread until Ctrl-C, then stop."""
        self.scheduler.start()
        try:
            self._httpd.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop serving, end in-flight streams, close the socket and unload every model."""
        self._stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()
        self.scheduler.close()

    def __enter__(self) -> OllamaServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _record(self, record: RecordedRequest) -> None:
        """Keep ``record``, within ``keep_requests`` and :data:`RECORDED_BODY_BYTES`."""
        with self._records_lock:
            self._records.append(record)
            self._recorded_bytes += len(record.body)
            while self._records and (
                len(self._records) > self.keep_requests
                or (self._recorded_bytes > RECORDED_BODY_BYTES and len(self._records) > 1)
            ):
                self._recorded_bytes -= len(self._records.popleft().body)

    def _cards(self) -> list[ModelCard]:
        return self.store.cards()

    def _find(self, name: str) -> tuple[Engine, ModelCard] | None:
        return self.store.find(name)


def serve(
    host: str = "127.0.0.1",
    port: int = 11434,
    engines: list[Engine] | None = None,
    version: str = "0.12.6",
    *,
    log_requests: bool = True,
    announce: Callable[[str], None] | None = None,
    pull_speed: float = DEFAULT_PULL_SPEED,
    max_body: int = DEFAULT_MAX_BODY,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
) -> None:
    """Serve in the foreground until Ctrl-C (what ``python -m ollama_magic.server`` runs).

    Announces (default: prints) the URL, then the installed model names, then (if any) the
    names ``/api/pull`` can install, one line each. No requests are recorded: nobody could
    read them, and a long-running server must not grow.
    """
    server = OllamaServer(
        engines,
        host=host,
        port=port,
        version=version,
        log_requests=log_requests,
        pull_speed=pull_speed,
        max_body=max_body,
        read_timeout=read_timeout,
        keep_requests=0,
    )
    say = announce or _print_flushed
    say(f"Ollama-compatible server on {server.url}")  # first: it has the port when port is 0
    installed = [card.name for card in server._cards()]
    say("Models: " + ", ".join(installed))
    pullable = [card.name for card in server.store.library() if card.name not in installed]
    if pullable:
        say("Pullable: " + ", ".join(pullable))
    server.serve_forever()


def _print_flushed(line: str) -> None:
    print(line, flush=True)  # flushed: a parent process may be waiting for this line
