"""A small synchronous Ollama client over ``requests``; it knows nothing about Jupyter.

It resolves the host like the official clients (``OLLAMA_HOST``), sends ``OLLAMA_API_KEY`` as a
bearer token, keeps connect and read timeouts apart, reads NDJSON from raw bytes, and turns every
failure into one of the typed errors in :mod:`ollama_magic.errors`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import platform
import socket
import urllib.parse
from collections.abc import Iterator
from typing import Any

import requests
import urllib3

from . import __version__
from .errors import (
    ConnectionFailed,
    ModelNotFound,
    ReadTimedOut,
    ResponseError,
    StreamTruncated,
    UnexpectedReply,
)
from .fields import MAX_SECONDS, one_line, rows, seconds
from .ndjson import NDJSONDecoder

DEFAULT_PORT = 11434


class HostError(ValueError):
    """A server address that cannot be one. The message shows the value with its password
    replaced (:func:`redact`), the reason, and what an address looks like."""

    def __init__(self, reason: str, host: str | None = None) -> None:
        self.reason = reason
        self.host = redact(_clean(host))
        shown = f"{self.host!r} is not a server address: " if host is not None else ""
        super().__init__(f"{shown}{reason}; write it like http://127.0.0.1:11434 or HOST:PORT")


def parse_host(host: str | None) -> str:
    """Turn an ``OLLAMA_HOST``-style value into a base URL, without any ``user:password@``
    (see :func:`credentials`), so it can be shown anywhere.

    Follows the official Python client (``ollama/_client.py::_parse_host``), plus the Go side's
    leniency: surrounding quotes and spaces are stripped, a bare IPv6 address is bracketed, and
    the bind-all addresses are rewritten to loopback so they can be connected to everywhere.
    What cannot be an address (a space inside, no host after ``http://``, a port that is not a
    number, another scheme) is a :class:`HostError`.

    >>> parse_host(None)
    'http://127.0.0.1:11434'
    >>> parse_host("1.2.3.4")
    'http://1.2.3.4:11434'
    >>> parse_host(":56789")
    'http://127.0.0.1:56789'
    >>> parse_host("https://Example.com")
    'https://example.com:443'
    >>> parse_host("http://example.com")
    'http://example.com:80'
    >>> parse_host("example.com:56789/path/")
    'http://example.com:56789/path'
    >>> parse_host("[::1]:8080")
    'http://[::1]:8080'
    >>> parse_host("::1")
    'http://[::1]:11434'
    >>> parse_host(" '0.0.0.0' ")
    'http://127.0.0.1:11434'
    >>> parse_host("http://user:secret@example.com:8080")
    'http://example.com:8080'
    >>> parse_host("http://user:secret@example.com:port")  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    ollama_magic.client.HostError: 'http://user:***@example.com:port' is not a server address:
    the port must be a number from 1 to 65535; write it like http://127.0.0.1:11434 or HOST:PORT
    """
    try:
        return _parse(host)
    except HostError as exc:
        raise HostError(exc.reason, host) from None


def _parse(host: str | None) -> str:
    scheme, _, hostport, path, default_port = _split(host)
    if hostport.count(":") > 1 and not hostport.startswith("["):
        hostport = f"[{hostport}]"
    try:
        parts = urllib.parse.urlsplit(f"{scheme}://{hostport}")
    except ValueError:  # Python checks what is in brackets
        if "]" not in hostport:
            raise HostError("an IPv6 address needs its closing ]") from None
        inside = hostport[hostport.find("[") + 1 : hostport.find("]")]
        raise HostError(f"{inside!r} is not an IPv6 address") from None
    try:
        port = parts.port or default_port
    except ValueError:
        raise HostError("the port must be a number from 1 to 65535") from None
    name = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(parts.hostname or "", parts.hostname)
    name = name or "127.0.0.1"
    if ":" in name:
        try:
            ipaddress.IPv6Address(name.partition("%")[0])
        except ValueError:
            raise HostError(f"{name!r} is not an IPv6 address") from None
        name = f"[{name}]"
    elif not all(ch.isalnum() or ch in "-._~%" for ch in name):
        raise HostError(f"{name!r} is not a host name")
    path = path.strip("/")
    return f"{scheme}://{name}:{port}" + (f"/{path}" if path else "")


def credentials(host: str | None) -> tuple[str, str] | None:
    """The ``user:password`` written in a host (``http://user:pw@host``), for basic auth.

    >>> credentials("http://ann:p%40ss@h:1"), credentials("h:1")
    (('ann', 'p@ss'), None)
    """
    value = host or os.environ.get("OLLAMA_HOST")
    try:
        userinfo = _split(value)[1]
    except HostError as exc:
        raise HostError(exc.reason, value) from None
    if not userinfo:
        return None
    user, _, password = userinfo.partition(":")
    return urllib.parse.unquote(user), urllib.parse.unquote(password)


def redact(host: str) -> str:
    """A host as written, with any password replaced by ``***``: safe to show.

    >>> redact("http://ann:secret@h:1/x"), redact("ann:secret@h"), redact("h:1")
    ('http://ann:***@h:1/x', 'ann:***@h', 'h:1')
    """
    head, sep, rest = host.partition("://")
    if not sep:
        head, rest = "", host
    hostport, slash, path = rest.partition("/")
    userinfo, at, where = hostport.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.partition(":")[0] + ":***"
    shown = f"{userinfo}{at}{where}{slash}{path}"
    return f"{head}{sep}{shown}"


def _clean(host: str | None) -> str:
    return (host or "").strip().strip("\"'").strip()


def _split(host: str | None) -> tuple[str, str, str, str, int]:
    """(scheme, userinfo, host[:port], path, default port) of a host setting, checked for what
    no address has."""
    value = _clean(host)
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise HostError("it contains a space or a control character")
    scheme, sep, rest = value.partition("://")
    scheme = scheme.lower()
    default_port = {"http": 80, "https": 443}.get(scheme, DEFAULT_PORT)
    if not sep:
        scheme, rest, default_port = "http", value, DEFAULT_PORT
    elif scheme not in ("http", "https"):
        raise HostError(f"{scheme}:// is not supported: use http:// or https://")
    hostport, _, path = rest.partition("/")
    userinfo, _, hostport = hostport.rpartition("@")
    if sep and not hostport:
        raise HostError(f"no server after {scheme}://")
    return scheme, userinfo, hostport, path, default_port


def resolve_host(host: str | None = None) -> str:
    """The explicit ``host`` if given, else ``$OLLAMA_HOST``, else the default, as a base URL."""
    return parse_host(host or os.environ.get("OLLAMA_HOST"))


def check_timeout(value: float | None, name: str) -> float | None:
    """A timeout for ``requests``: ``None`` (wait forever) or a number of seconds above 0."""
    if value is None:
        return None
    checked = seconds(value)
    if checked is None:
        raise ValueError(
            f"{name} {value!r}: use a number of seconds above 0 (at most {MAX_SECONDS}), "
            "or None to wait forever"
        )
    return checked


class Stream:
    """The objects of one streamed (or single-object) response; close it to stop the server."""

    def __init__(self, response: requests.Response, url: str, read_timeout: float | None) -> None:
        self._response = response
        self._url = url
        self._read_timeout = read_timeout
        self._content: Iterator[bytes] | None = None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        decoder = NDJSONDecoder()
        self._content = self._response.iter_content(chunk_size=None)
        try:
            for data in self._content:
                yield from decoder.feed(data)
            yield from decoder.flush()
        except (requests.exceptions.ChunkedEncodingError, urllib3.exceptions.ProtocolError) as exc:
            raise StreamTruncated("the connection was closed by the server") from exc
        except requests.exceptions.ConnectionError as exc:
            if exc.args and isinstance(exc.args[0], urllib3.exceptions.ReadTimeoutError):
                raise ReadTimedOut(self._url, self._read_timeout) from exc
            raise StreamTruncated(str(exc)) from exc

    def close(self) -> None:
        """Close the socket at once (not back to the pool), so the server stops generating."""
        self._response.close()

    def release(self, wait: float = 0.5) -> None:
        """End a stream that reached its final object and keep its connection for the next
        request, when the rest of the body (the chunked ending) comes within ``wait`` s; else
        close it as :meth:`close` does. A batch sends hundreds of requests: a new connection for
        each would cost more than everything else it does per item."""
        connection = getattr(self._response.raw, "_connection", None)
        sock = getattr(connection, "sock", None)
        if sock is not None and self._content is not None:
            with contextlib.suppress(Exception):  # a slow or chatty server: just close
                sock.settimeout(wait)
                extra = 0
                for data in self._content:  # read to the end: the pool takes it back
                    extra += len(data)
                    if extra > 65536:
                        break
        self.close()

    def abort(self) -> None:
        """Stop the stream from another thread: shut its socket down, so a read blocked in the
        reading thread returns at once and the stream ends early (``close`` alone would wait for
        the next bytes). The reader then closes it as usual."""
        connection = getattr(self._response.raw, "_connection", None)
        sock = getattr(connection, "sock", None)
        if sock is None:
            return  # already finished and released
        with contextlib.suppress(OSError):  # already closed
            sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class OllamaClient:
    """One server's API.

    **Parameters:** ``host`` (else ``$OLLAMA_HOST``; a ``user:password@`` in it is sent as basic
    auth, never shown: :attr:`base_url` leaves it out), ``connect_timeout`` and ``read_timeout``
    in seconds (``None`` waits forever; the read timeout is the longest silence allowed between
    two pieces of a stream, not a limit on the whole answer).

    **Usage:** ``OllamaClient().stream("/api/generate", {"model": "m", "prompt": "hi"})``.
    """

    def __init__(
        self,
        host: str | None = None,
        *,
        connect_timeout: float | None = 5.0,
        read_timeout: float | None = 600.0,
        api_key: str | None = None,
    ) -> None:
        self.base_url = resolve_host(host)
        self.timeout = (
            check_timeout(connect_timeout, "connect_timeout"),
            check_timeout(read_timeout, "read_timeout"),
        )
        self._session = requests.Session()
        self._session.headers.update(
            {
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": f"ollama-magic/{__version__} ({platform.machine()} "
                f"{platform.system().lower()}) Python/{platform.python_version()}",
            }
        )
        key = api_key if api_key is not None else os.environ.get("OLLAMA_API_KEY")
        if key:
            self._session.headers["Authorization"] = f"Bearer {key}"
        else:
            self._session.auth = credentials(host)

    def __repr__(self) -> str:
        return f"OllamaClient({self.base_url!r})"  # never a password: base_url has none

    def stream(self, path: str, body: dict[str, Any], method: str = "POST") -> Stream:
        """Send ``body`` and return the response's objects as a :class:`Stream`."""
        response = self._send(method, path, body, stream=True)
        return Stream(response, self.base_url, self.timeout[1])

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """A request with a single JSON (or empty) reply; returns the parsed body or ``None``."""
        response = self._send(method, path, body, stream=False)
        if not response.content.strip():
            return None
        try:
            return response.json()
        except ValueError:
            return response.text

    def object(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """A request whose reply must be a JSON object (an empty reply is ``{}``)."""
        answer = self.call(method, path, body)
        if answer is None:
            return {}
        if not isinstance(answer, dict):
            raise UnexpectedReply(f"reply to {path}", self.base_url)
        return answer

    def listing(self, path: str) -> list[dict[str, Any]]:
        """The ``models`` rows of ``/api/tags`` or ``/api/ps`` (rows that are not objects are
        left out; a ``models`` that is not a list means this is not Ollama)."""
        models = self.object("GET", path).get("models")
        if models is None:
            return []
        if not isinstance(models, list):
            raise UnexpectedReply(f"model list from {path}", self.base_url)
        return rows(models)

    def tags(self) -> list[dict[str, Any]]:
        """The installed models (``/api/tags``)."""
        return self.listing("/api/tags")

    def close(self) -> None:
        self._session.close()

    def _send(
        self, method: str, path: str, body: dict[str, Any] | None, *, stream: bool
    ) -> requests.Response:
        url = self.base_url + path
        data = None if body is None else json.dumps(body).encode()
        try:
            response = self._session.request(
                method, url, data=data, stream=stream, timeout=self.timeout
            )
        except requests.exceptions.ConnectTimeout as exc:
            raise ConnectionFailed(self.base_url, "connect timed out") from exc
        except requests.exceptions.ReadTimeout as exc:
            raise ReadTimedOut(self.base_url, self.timeout[1]) from exc
        except requests.exceptions.ConnectionError as exc:
            raise ConnectionFailed(self.base_url, _reason(exc)) from exc
        except requests.exceptions.InvalidURL as exc:
            raise ConnectionFailed(self.base_url, "invalid URL") from exc
        if response.status_code >= 400:
            raise _status_error(response, body, self.base_url)
        return response


def _status_error(response: requests.Response, body: dict[str, Any] | None, url: str) -> Exception:
    text = response.text.strip()
    try:
        message, from_ollama = one_line(json.loads(text)["error"]), True
    except (ValueError, KeyError, TypeError):  # gin's text/plain 404/405, empty 403s, proxies
        message, from_ollama = one_line(text or response.reason), False
    message = message or "no message"
    response.close()
    body = body or {}
    model = body.get("model") or body.get("name") or body.get("source")  # copy names a source
    if response.status_code == 404 and from_ollama and model and "model" in message:
        return ModelNotFound(str(model), message, url)
    return ResponseError(response.status_code, message, url)


def _reason(exc: Exception) -> str:
    text = str(exc)
    for hint in ("Connection refused", "Name or service not known", "No route to host"):
        if hint in text:
            return hint.lower()
    return one_line(text.split(": ", 1)[-1], limit=120)
