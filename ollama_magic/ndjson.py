"""Incremental NDJSON decoding: bytes in, parsed objects out, no I/O.

Ollama streams one JSON object per ``\\n``-terminated line, but a network read can end anywhere:
inside a line and inside a multi-byte UTF-8 character. Splitting raw bytes on ``\\n`` is safe
(the byte 0x0A never occurs inside a UTF-8 sequence), so lines are buffered as bytes and decoded
only when complete.
"""

from __future__ import annotations

import array
import json
import re
from collections.abc import Iterable
from typing import Any, cast

from .errors import StreamError
from .fields import one_line


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


class TokenIds(array.array):  # type: ignore[type-arg]
    """Token ids (a final chunk's ``context``) stored as machine ints, not one object each.

    A long conversation's ``context`` holds every token of it: as a Python list that costs
    about 36 bytes a token. It reads like a list (``repr``, ``==``, slicing, ``len``);
    ``list(ids)`` gives a plain list for ``json.dumps``.

    >>> ids = TokenIds([1, 2, 3])
    >>> ids, ids == [1, 2, 3], ids[:2], ids.itemsize
    ([1, 2, 3], True, [1, 2], 4)
    """

    def __new__(cls, ids: Iterable[int] = ()) -> TokenIds:
        # typeshed's array.__new__ returns array[int], not the subclass it builds.
        return cast("TokenIds", super().__new__(cls, "i", ids))

    def __repr__(self) -> str:
        return repr(self.tolist())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, tuple)):
            return self.tolist() == list(other)
        return super().__eq__(other)

    __hash__ = None

    def __getitem__(self, index: Any) -> Any:
        item = super().__getitem__(index)
        return TokenIds(item) if isinstance(index, slice) else item


_CONTEXT = re.compile(rb'"context"\s*:\s*\[')
#: Lines longer than this have their ``context`` read without a Python int per token.
BIG_LINE = 1 << 16


def _token_ids(data: bytes, start: int, end: int, block: int = 1 << 15) -> TokenIds:
    """Parse ``1,2,3`` between ``start`` and ``end`` a block at a time (no list of the whole).

    >>> _token_ids(b"[10, 20,30]", 1, 10, block=4), _token_ids(b"[123456,7]", 1, 9, block=2)
    ([10, 20, 30], [123456, 7])
    """
    ids = TokenIds()
    while start < end:
        stop = data.find(b",", min(start + block, end), end)  # a block ends at a comma
        stop = end if stop < 0 else stop
        piece = data[start:stop]
        if piece.strip():
            ids.extend(map(int, piece.split(b",")))
        start = stop + 1
    return ids


def _parse(line: bytes) -> dict[str, Any]:
    ids = None
    found = _CONTEXT.search(line) if len(line) > BIG_LINE else None
    if found:
        begin = found.end()
        end = line.find(b"]", begin)
        if end > begin:
            try:
                ids = _token_ids(line, begin, end)
            except (ValueError, OverflowError):  # not ints, or too large for a C int
                ids = None
            else:
                line = line[:begin] + line[end:]
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise StreamError(f"the server sent a line that is not JSON: {line[:80]!r}") from exc
    if not isinstance(obj, dict):
        raise StreamError(f"the server sent a JSON line that is not an object: {line[:80]!r}")
    error = obj.get("error")
    if error:
        raise StreamError(one_line(error))
    if ids is not None:
        obj["context"] = ids
    return obj
