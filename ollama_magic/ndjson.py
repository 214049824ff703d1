"""Incremental NDJSON decoding: bytes in, parsed objects out, no I/O.

Ollama streams one JSON object per ``\\n``-terminated line, but a network read can end anywhere:
inside a line and inside a multi-byte UTF-8 character. Splitting raw bytes on ``\\n`` is safe
(the byte 0x0A never occurs inside a UTF-8 sequence), so lines are buffered as bytes and decoded
only when complete.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import StreamError


class NDJSONDecoder:
    """Feed it raw byte chunks; it returns the complete JSON objects seen so far.

    >>> d = NDJSONDecoder()
    >>> d.feed(b'{"response": "\\xe4')
    []
    >>> d.feed(b'\\xbd\\xa0"}\\n{"done"')
    [{'response': '你'}]
    >>> d.feed(b': true}\\n')
    [{'done': True}]
    >>> d.flush()
    []
    """

    def __init__(self) -> None:
        self._pending: list[bytes] = []

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        if b"\n" not in data:
            if data:
                self._pending.append(data)
            return []
        lines = data.split(b"\n")
        if self._pending:
            self._pending.append(lines[0])
            lines[0] = b"".join(self._pending)
            self._pending.clear()
        tail = lines.pop()
        if tail:
            self._pending.append(tail)
        return [_parse(line) for line in lines if line.strip()]

    def flush(self) -> list[dict[str, Any]]:
        """Parse a last line that had no trailing newline (a well-formed stream leaves none)."""
        rest = b"".join(self._pending)
        self._pending.clear()
        return [_parse(rest)] if rest.strip() else []


def _parse(line: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise StreamError(f"the server sent a line that is not JSON: {line[:80]!r}") from exc
    if not isinstance(obj, dict):
        raise StreamError(f"the server sent a JSON line that is not an object: {line[:80]!r}")
    error = obj.get("error")
    if error:
        raise StreamError(str(error))
    return obj
