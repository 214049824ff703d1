"""Reading untrusted values: what a server sent, and timeouts from settings. Pure: no I/O.

Anything that answers on the Ollama port can send any JSON: a size of ``"abc"``, a system
prompt of ``5``, a total of ``1e400``, a list where an object belongs. Every field the package
reads goes through one of these helpers, which return the type the caller needs or a fallback,
so a wrong type costs a ``?`` or an empty cell, never a traceback.
"""

from __future__ import annotations

import array
import math
import re
from typing import Any

#: The largest count, size or duration accepted: Go's int64, what Ollama's numbers fit in.
MAX_COUNT = 2**63 - 1
#: Token ids fit in a C int (``TokenIds`` stores them as such).
MAX_TOKEN = 2**31 - 1
#: The longest timeout (seconds, about 11 days): a socket cannot wait for ever-larger ones.
MAX_SECONDS = 1_000_000


def count(value: Any) -> int | None:
    """A size, token count or duration: a whole number from 0 to ``MAX_COUNT``, else ``None``.

    >>> count(8), count(8.0), count(2.5), count(-1), count("8"), count(True), count(10**30)
    (8, 8, 2, None, None, None, None)
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= MAX_COUNT else None
    if isinstance(value, float) and math.isfinite(value) and 0 <= value <= MAX_COUNT:
        return int(value)
    return None


def number(value: Any) -> float | None:
    """A finite number (not a bool), else ``None``.

    >>> number(1), number(0.5), number(float("nan")), number("1"), number(10**400)
    (1.0, 0.5, None, None, None)
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        result = float(value)
    except OverflowError:
        return None
    return result if math.isfinite(result) else None


def seconds(value: Any) -> float | None:
    """A timeout: a finite number of seconds above 0 and at most ``MAX_SECONDS``, else ``None``.

    >>> seconds(0.5), seconds(0), seconds(-3), seconds(float("inf")), seconds(float("nan"))
    (0.5, None, None, None, None)
    """
    found = number(value)
    return found if found is not None and 0 < found <= MAX_SECONDS else None


# Control characters a terminal would act on (ESC sequences, carriage returns, line and record
# separators), kept out of anything shown; newlines and tabs stay.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def printable(value: str) -> str:
    r"""``value`` with control characters made spaces, so a server cannot steer a terminal.

    >>> printable("a\x1b[2Jb\rc\nd")
    'a [2Jb c\nd'
    """
    return _CONTROL.sub(" ", value)


def text(value: Any, default: str = "") -> str:
    """A string field; a plain number is shown as written, anything else is ``default``.

    >>> text("qwen3"), text(5), text(None, "?"), text([1], "?"), text(True, "?")
    ('qwen3', '5', '?', '?', '?')
    """
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, bool):
        return default
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return str(value)
    return default


def mapping(value: Any) -> dict[str, Any]:
    """An object field, or ``{}``."""
    return value if isinstance(value, dict) else {}


def rows(value: Any) -> list[dict[str, Any]]:
    """A list of objects; entries that are not objects are left out."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def texts(value: Any) -> list[str]:
    """A list of strings (e.g. capabilities); other entries, or a non-list, give nothing.

    >>> texts(["completion", 5, "vision"]), texts("vision")
    (['completion', 'vision'], [])
    """
    return [printable(v) for v in value if isinstance(v, str)] if isinstance(value, list) else []


def token_ids(value: Any) -> list[int] | None:
    """A ``context``: token ids, or ``None`` when it is anything else.

    >>> token_ids([1, 2]), token_ids([1, "2"]), token_ids("12"), token_ids([2**40])
    ([1, 2], None, None, None)
    """
    if isinstance(value, array.array):  # the decoder's TokenIds: already machine ints
        return value  # type: ignore[return-value]
    if isinstance(value, list) and all(type(t) is int and 0 <= t <= MAX_TOKEN for t in value):
        return value
    return None


def vectors(value: Any) -> list[list[float]] | None:
    """``/api/embed``'s ``embeddings``: equally long lists of finite numbers, else ``None``.

    >>> vectors([[0.5, 1], [2, 3.0]]), vectors([[1], [1, 2]]), vectors([["a"]]), vectors({})
    ([[0.5, 1], [2, 3.0]], None, None, None)
    """
    if not isinstance(value, list) or not all(isinstance(v, list) for v in value):
        return None
    if len({len(v) for v in value}) > 1:
        return None
    if not all(number(x) is not None for v in value for x in v):
        return None
    return value


def one_line(message: Any, limit: int = 300) -> str:
    """A server's message as one short line: whitespace folded, long text cut.

    >>> one_line("model\\n  not found"), one_line("x" * 10, limit=4), one_line(None)
    ('model not found', 'xxx…', '')
    """
    if message is None:
        return ""
    folded = " ".join(str(message).split())
    return folded if len(folded) <= limit else folded[: limit - 1] + "…"
