"""Typed errors raised inside the package; the magics turn them into one friendly line.

::

    OllamaError
    ├── ConnectionFailed      the server did not answer at all (refused, DNS, connect timeout)
    ├── ReadTimedOut          the server went quiet for longer than the read timeout
    ├── ResponseError         an HTTP error status, with the server's own message
    │   └── ModelNotFound     404 for a model the server does not have
    ├── StreamError           an in-band ``{"error": ...}`` line after output had started
    ├── StreamTruncated       the connection closed before the final ``done`` chunk
    └── UnexpectedReply       a reply of the wrong shape: whatever answered is not Ollama

Nothing here imports IPython or the network.
"""

from __future__ import annotations


class OllamaError(Exception):
    """Base class for every error this package raises about talking to Ollama."""


class ConnectionFailed(OllamaError):
    def __init__(self, url: str, detail: str = "") -> None:
        self.url = url
        self.detail = detail
        super().__init__(f"cannot connect to Ollama at {url}" + (f" ({detail})" if detail else ""))


class ReadTimedOut(OllamaError):
    def __init__(self, url: str, seconds: float | None) -> None:
        self.url = url
        self.seconds = seconds
        super().__init__(f"no data from {url} for {seconds} s")


class ResponseError(OllamaError):
    """An HTTP error status; ``message`` is the server's ``error`` text or its raw body."""

    def __init__(self, status: int, message: str, url: str = "") -> None:
        self.status = status
        self.message = message
        self.url = url
        super().__init__(f"{message} (status code: {status})")


class ModelNotFound(ResponseError):
    def __init__(self, model: str, message: str, url: str = "") -> None:
        self.model = model
        super().__init__(404, message, url)


class StreamError(OllamaError):
    """The server reported an error in the middle of a stream (HTTP status was already 200)."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class StreamTruncated(OllamaError):
    """The stream ended (or the connection dropped) without a ``done: true`` chunk."""

    def __init__(self, detail: str = "") -> None:
        self.detail = detail
        suffix = f": {detail}" if detail else ""
        super().__init__(f"the stream ended before the final chunk{suffix}")


class UnexpectedReply(OllamaError):
    """A reply whose shape no Ollama sends (a list for an object, a number for the answer text);
    ``what`` names it, e.g. ``"reply to /api/tags"``."""

    def __init__(self, what: str, url: str = "") -> None:
        self.what = what
        self.url = url
        super().__init__(f"the server sent an unexpected {what}")
