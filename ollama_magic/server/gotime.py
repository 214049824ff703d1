"""Moved to :mod:`ollama_magic.common.gotime`; this name stays for old imports (``args.py``)."""

from ..common.gotime import (
    MAX_DURATION,
    SECOND,
    DurationError,
    format_time,
    go_time_quote,
    parse_duration,
    utc_now,
)

__all__ = [
    "MAX_DURATION",
    "SECOND",
    "DurationError",
    "format_time",
    "go_time_quote",
    "parse_duration",
    "utc_now",
]
