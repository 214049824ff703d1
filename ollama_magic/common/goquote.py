"""Go's ``strconv.Quote`` (the ``%q`` verb), which Ollama uses in many error texts.

Shared by the server (error bodies) and name handling; pure, standard library only.

>>> go_quote('a "b"\\n')
'"a \\\\"b\\\\"\\\\n"'
"""

from __future__ import annotations

import unicodedata

__all__ = ["go_quote"]


def _is_go_printable(char: str) -> bool:
    return char == " " or unicodedata.category(char)[0] in "LMNPS"


_SHORT_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_SHORT_ESCAPES["\v"] = "\\v"


def go_quote(text: str) -> str:
    """Go's ``strconv.Quote`` (the ``%q`` verb): printable characters stay, others are escaped."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif code < 0x80 or 0xD800 <= code <= 0xDFFF:
            out.append(f"\\x{code:02x}" if code < 0x80 else "\\ufffd")
        elif _is_go_printable(char):
            out.append(char)
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)
