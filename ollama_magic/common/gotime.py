"""Go's ``time.ParseDuration`` and RFC 3339 timestamps, ported so the wire matches Ollama's.

Ollama parses a string ``keep_alive`` with ``time.ParseDuration`` and returns Go's error text as
a 400, and writes every timestamp with ``time.RFC3339Nano`` (nanoseconds, trailing zeros trimmed,
``Z`` for UTC). Both are pure functions here; nothing in this module does I/O, and only
:func:`utc_now` reads the clock.

>>> parse_duration("1h30m")
5400000000000
>>> parse_duration("-1.5s")
-1500000000
>>> parse_duration("300")
Traceback (most recent call last):
...
ollama_magic.common.gotime.DurationError: time: missing unit in duration "300"
>>> format_time(1_700_000_000_120_000_000, utc=True)
'2023-11-14T22:13:20.12Z'
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

MAX_DURATION = (1 << 63) - 1
"""Go's largest ``time.Duration`` (about 292 years): what Ollama stores for "keep forever"."""

SECOND = 1_000_000_000

_UNITS: dict[bytes, int] = {
    b"ns": 1,
    b"us": 1_000,
    "µs".encode(): 1_000,  # U+00B5 micro sign
    "μs".encode(): 1_000,  # U+03BC Greek mu
    b"ms": 1_000_000,
    b"s": SECOND,
    b"m": 60 * SECOND,
    b"h": 3600 * SECOND,
}
_LIMIT = 1 << 63
_DOT = ord(".")


def _is_digit(byte: int) -> bool:
    return 48 <= byte <= 57


class DurationError(ValueError):
    """A string Go's ``time.ParseDuration`` rejects; ``str()`` is Go's exact message."""


def go_time_quote(text: str | bytes) -> str:
    """Quote like Go's private ``time.quote``: non-ASCII and control bytes become ``\\xNN``."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    out = ['"']
    for byte in raw:
        if byte >= 0x80 or byte < 0x20:
            out.append(f"\\x{byte:02x}")
        else:
            char = chr(byte)
            out.append("\\" + char if char in '"\\' else char)
    out.append('"')
    return "".join(out)


def parse_duration(text: str) -> int:
    """Nanoseconds for a Go duration string such as ``"10m"``, ``"1h30m"``, ``"-1.5s"`` or ``"0"``.

    Raises :class:`DurationError` with Go's message (``time: invalid duration "abc"``,
    ``time: missing unit in duration "300"``, ``time: unknown unit "d" in duration "1d"``).
    """
    orig = text
    s = text.encode("utf-8", "surrogatepass")
    invalid = DurationError("time: invalid duration " + go_time_quote(orig))
    neg = False
    if s[:1] in (b"-", b"+"):
        neg = s[:1] == b"-"
        s = s[1:]
    if s == b"0":
        return 0
    if not s:
        raise invalid
    total = 0
    while s:
        if not (s[0] == _DOT or _is_digit(s[0])):
            raise invalid
        value, rest = _leading_int(s)
        if value is None:
            raise invalid
        pre = len(rest) != len(s)
        s = rest
        frac, scale, post = 0, 1.0, False
        if s[:1] == b".":
            s = s[1:]
            before = len(s)
            frac, scale, s = _leading_fraction(s)
            post = len(s) != before
        if not pre and not post:
            raise invalid
        i = 0
        while i < len(s) and not (s[i] == _DOT or _is_digit(s[i])):
            i += 1
        if i == 0:
            raise DurationError("time: missing unit in duration " + go_time_quote(orig))
        unit_name, s = s[:i], s[i:]
        unit = _UNITS.get(unit_name)
        if unit is None:
            raise DurationError(
                f"time: unknown unit {go_time_quote(unit_name)} in duration {go_time_quote(orig)}"
            )
        if value > _LIMIT // unit:
            raise invalid
        value *= unit
        if frac > 0:
            # Go uses float64 here too, so fractions of hours round the same way.
            value += int(float(frac) * (float(unit) / scale))
            if value > _LIMIT:
                raise invalid
        total += value
        if total > _LIMIT:
            raise invalid
    if neg:
        return -total
    if total > MAX_DURATION:
        raise invalid
    return total


def _leading_int(s: bytes) -> tuple[int | None, bytes]:
    value, i = 0, 0
    while i < len(s) and _is_digit(s[i]):
        if value > _LIMIT // 10:
            return None, s
        value = value * 10 + s[i] - 48
        if value > _LIMIT:
            return None, s
        i += 1
    return value, s[i:]


def _leading_fraction(s: bytes) -> tuple[int, float, bytes]:
    value, scale, i, overflow = 0, 1.0, 0, False
    while i < len(s) and _is_digit(s[i]):
        if not overflow:
            if value > (_LIMIT - 1) // 10:
                overflow = True
            else:
                nxt = value * 10 + s[i] - 48
                if nxt > _LIMIT:
                    overflow = True
                else:
                    value = nxt
                    scale *= 10
        i += 1
    return value, scale, s[i:]


_UTC_PREFIX: tuple[int, str] = (-1, "")


def format_time(ns: int, *, utc: bool) -> str:
    """RFC 3339 with nanoseconds and trailing zeros trimmed, as Go's ``time.RFC3339Nano``.

    ``utc=True`` gives ``...Z`` (``created_at``); otherwise the machine's local offset is used
    (``modified_at``, ``expires_at``), which Go also writes as ``Z`` when the offset is zero.
    """
    sec, frac = divmod(ns, SECOND)
    fraction = f".{frac:09d}".rstrip("0") if frac else ""
    if utc:
        return f"{_utc_seconds(sec)}{fraction}Z"
    moment = datetime.fromtimestamp(sec, tz=timezone.utc).astimezone()
    offset = moment.utcoffset()
    minutes = int(offset.total_seconds()) // 60 if offset is not None else 0
    if minutes == 0:
        zone = "Z"
    else:
        sign = "-" if minutes < 0 else "+"
        hours, mins = divmod(abs(minutes), 60)
        zone = f"{sign}{hours:02d}:{mins:02d}"
    return f"{moment:%Y-%m-%dT%H:%M:%S}{fraction}{zone}"


def _utc_seconds(sec: int) -> str:
    # Streams format one timestamp per token; the date part changes once a second.
    global _UTC_PREFIX
    cached_sec, text = _UTC_PREFIX
    if cached_sec != sec:
        text = f"{datetime.fromtimestamp(sec, tz=timezone.utc):%Y-%m-%dT%H:%M:%S}"
        _UTC_PREFIX = (sec, text)
    return text


def utc_now() -> str:
    """The current time as Ollama writes ``created_at``."""
    return format_time(time.time_ns(), utc=True)
