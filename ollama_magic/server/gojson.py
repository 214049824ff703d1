"""JSON the way Go's ``encoding/json`` reads and writes it, so bodies and error texts match Ollama.

Reading: :func:`decode_first` decodes only the first value of a body (Go's ``Decoder.Decode``),
treats an empty body as Go's ``io.EOF`` and explains syntax errors with Go's scanner messages
(``invalid character 'x' looking for beginning of value``, ``unexpected EOF``). Writing:
:func:`dumps` is compact and escapes ``<``, ``>``, ``&``, U+2028 and U+2029 like Go. Also here:
Go's ``%q`` quoting and the base64 decoder's ``illegal base64 data at input byte N``. Pure: no I/O.

>>> dumps({"response": "<think>", "n": 1})
b'{"response":"\\\\u003cthink\\\\u003e","n":1}'
>>> decode_first(b'{"model": x}')
Traceback (most recent call last):
...
ollama_magic.server.gojson.GoJSONError: invalid character 'x' looking for beginning of value
>>> go_quote('say "hi"\\n')
'"say \\\\"hi\\\\"\\\\n"'
"""

from __future__ import annotations

import binascii
import json
import math
import re
import struct
import sys

# typeshed leaves json.decoder.scanstring out: (s, end, strict=True) -> (str, end).
from json.decoder import scanstring as _scanstring  # type: ignore[attr-defined]
from json.encoder import encode_basestring as _encode_basestring
from typing import Any

from ..common.goquote import go_quote


class GoJSONError(ValueError):
    """A body Go's decoder rejects; ``str()`` is Go's message."""


class EmptyBody(GoJSONError):
    """An empty or all-whitespace body (Go's ``io.EOF``): Ollama says ``missing request body``."""


class GoNumber(float):
    """A JSON number that was not a plain integer literal; keeps its source text for Go's errors."""

    literal: str

    def __new__(cls, literal: str) -> GoNumber:
        number = super().__new__(cls, literal)
        number.literal = literal
        return number


def _reject_constant(name: str) -> Any:
    raise ValueError(name)  # NaN and Infinity are not JSON to Go


_DECODER = json.JSONDecoder(parse_float=GoNumber, parse_constant=_reject_constant)
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_GO_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_GO_ESCAPE_RE = re.compile("[<>&\u2028\u2029]")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_WS = b" \t\r\n"
_NUMBER_RE = re.compile(r"(-?(?:0|[1-9][0-9]*))(\.[0-9]+)?([eE][-+]?[0-9]+)?")

MAX_DEPTH = 10_000
"""Go's ``maxNestingDepth``: one more level is ``invalid character '[' exceeded max depth``."""


def decode_first(body: bytes) -> Any:
    """The first JSON value in ``body``; trailing bytes are ignored, as Go's decoder does."""
    text = body.decode("utf-8", "replace")
    start = 0
    while start < len(text) and text[start] in " \t\r\n":
        start += 1
    if start == len(text):
        raise EmptyBody("EOF")
    try:
        value, _ = _DECODER.raw_decode(text, start)
    except RecursionError:  # nested deeper than Python's decoder goes (about 1,000)
        message = syntax_error(body)
        if message is not None:
            raise GoJSONError(message) from None
        return _decode_nested(text, start)  # valid, and within Go's 10,000 levels
    except ValueError as exc:
        raise GoJSONError(syntax_error(body) or str(exc)) from None
    return value


def _decode_nested(text: str, pos: int) -> Any:
    """Decode valid JSON with a loop instead of recursion, the way :data:`_DECODER` would."""
    stack: list[tuple[dict[str, Any] | list[Any], list[str]]] = []  # (container, [its next key])
    while True:
        pos = _skip_ws(text, pos)
        char = text[pos]
        value: Any
        if char in "{[":
            pos = _skip_ws(text, pos + 1)
            if text[pos] not in "}]":
                key = [""]
                container: dict[str, Any] | list[Any] = [] if char == "[" else {}
                if char == "{":
                    key[0], pos = _scan_key(text, pos)
                stack.append((container, key))
                continue
            value, pos = ([] if char == "[" else {}), pos + 1
        elif char == '"':
            value, pos = _scanstring(text, pos + 1)
        elif char in "tfn":
            value = {"t": True, "f": False, "n": None}[char]
            pos += {"t": 4, "f": 5, "n": 4}[char]
        else:
            match = _NUMBER_RE.match(text, pos)
            assert match is not None  # the text was checked by syntax_error
            integer, fraction, exponent = match.groups()
            value = GoNumber(match.group()) if fraction or exponent else int(integer)
            pos = match.end()
        while True:  # put the value in its container; close the containers it ends
            if not stack:
                return value
            container, key = stack[-1]
            if isinstance(container, dict):
                container[key[0]] = value
            else:
                container.append(value)
            pos = _skip_ws(text, pos)
            if text[pos] == ",":
                pos += 1
                if isinstance(container, dict):
                    key[0], pos = _scan_key(text, _skip_ws(text, pos))
                break
            pos += 1
            value = stack.pop()[0]


def _skip_ws(text: str, pos: int) -> int:
    while text[pos] in " \t\r\n":
        pos += 1
    return pos


def _scan_key(text: str, pos: int) -> tuple[str, int]:
    """An object key at ``pos`` (its opening quote) and the position after its colon."""
    key, pos = _scanstring(text, pos + 1)
    return key, _skip_ws(text, pos) + 1


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON with Go's HTML-safe escapes (``<`` becomes ``\\u003c``)."""
    text = _ENCODER.encode(value)
    if "<" in text or ">" in text or "&" in text or "\u2028" in text or "\u2029" in text:
        text = _GO_ESCAPE_RE.sub(lambda m: _GO_ESCAPES[m.group()], text)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from "\ud800" escapes: Go writes U+FFFD
        return _SURROGATE_RE.sub("\ufffd", text).encode("utf-8")


def dumps_str(text: str) -> bytes:
    """One JSON string, as :func:`dumps` would write it (the per-token fast path)."""
    quoted = _encode_basestring(text)
    if "<" in quoted or ">" in quoted or "&" in quoted or "\u2028" in quoted or "\u2029" in quoted:
        quoted = _GO_ESCAPE_RE.sub(lambda m: _GO_ESCAPES[m.group()], quoted)
    try:
        return quoted.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE_RE.sub("\ufffd", quoted).encode("utf-8")


def float32(value: float) -> float:
    """``value`` as Go writes a ``float32``: rounded to single precision, in the fewest digits
    that read back as that single (so :func:`dumps` prints ``0.1``, not ``0.10000000149011612``).

    >>> float32(0.1), float32(1 / 3)
    (0.1, 0.33333334)
    """
    single = _F32.pack(value)
    for digits in range(1, 10):  # 9 significant digits always round-trip a float32
        short = float(f"{_F32.unpack(single)[0]:.{digits}g}")
        if _F32.pack(short) == single:
            return short
    return float(_F32.unpack(single)[0])


_F32 = struct.Struct("<f")


def format_g(value: float) -> str:
    """Go's ``%v`` of a ``float64`` (``strconv.FormatFloat(v, 'g', -1, 64)``): the shortest
    digits, exponent form from 1e+06 up and below 1e-04.

    >>> [format_g(x) for x in (20.0, 0.6, 1e6, 123456.5, 0.0001, 0.00001)]
    ['20', '0.6', '1e+06', '123456.5', '0.0001', '1e-05']
    """
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if value == 0:
        return sign + "0"
    exponent, digits = _shortest_digits(abs(value))
    point = exponent + 1  # digits before the decimal point
    if exponent < -4 or exponent >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'+' if exponent >= 0 else '-'}{abs(exponent):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


def _shortest_digits(value: float) -> tuple[int, str]:
    """(decimal exponent of the first digit, significant digits) of ``repr(value)``."""
    mantissa, _, exp = repr(value).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    exponent = len(whole) - 1 + int(exp or 0)
    if whole == "0":  # 0.000123: leading zeros of the fraction move the exponent
        exponent = -(len(fraction) - len(fraction.lstrip("0"))) - 1 + int(exp or 0)
    return exponent, digits.rstrip("0") or "0"


def raw_field(data: bytes, name: str) -> bytes | None:
    """The raw bytes of top-level field ``name`` in a JSON object body, as Go's ``RawMessage``.

    Keys match case-insensitively and the last match wins, as when Go decodes into a struct.
    """
    scanner = _Scanner(data)
    found: bytes | None = None
    try:
        if scanner._skip_ws() != 0x7B:
            return None
        scanner.pos += 1
        if scanner._skip_ws() == 0x7D:
            return None
        while True:
            key_start = scanner.pos
            scanner._string()
            key = json.loads(data[key_start : scanner.pos].decode("utf-8", "replace"))
            scanner._skip_ws()
            scanner.pos += 1  # the colon
            scanner._skip_ws()
            value_start = scanner.pos
            scanner.value()
            if key == name or key.casefold() == name.casefold():
                found = data[value_start : scanner.pos]
            if scanner._skip_ws() != 0x2C:
                return found
            scanner.pos += 1
            scanner._skip_ws()
    except (_Syntax, ValueError):
        return found


def kind_of(value: Any) -> str:
    """The JSON type name Go uses in ``cannot unmarshal X into ...`` messages."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _quote_char(byte: int) -> str:
    """Go's ``encoding/json`` ``quoteChar``: how a bad byte is shown in a syntax error."""
    if byte == 0x27:
        return "'\\''"
    if byte == 0x22:
        return "'\"'"
    return "'" + go_quote(chr(byte))[1:-1] + "'"


class _Syntax(Exception):
    pass


def syntax_error(data: bytes) -> str | None:
    """Go's decoder message for the first syntax error in ``data``, or None when it has none."""
    scanner = _Scanner(data)
    try:
        scanner.value()
    except _Syntax as exc:
        return str(exc)
    return None


class _Scanner:
    """A recursive-descent port of the error paths of Go's JSON scanner (``scanner.go``)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _peek(self) -> int:
        if self.pos >= len(self.data):
            raise _Syntax("unexpected EOF")
        return self.data[self.pos]

    def _fail(self, context: str) -> _Syntax:
        return _Syntax(f"invalid character {_quote_char(self.data[self.pos])} {context}")

    def _skip_ws(self) -> int:
        while self._peek() in _WS:
            self.pos += 1
        return self.data[self.pos]

    def value(self) -> None:
        """Scan one value; a loop with an explicit stack, so depth costs no Python recursion."""
        open_containers = bytearray()  # b"{" or b"[" per container entered and not yet closed
        while True:
            byte = self._skip_ws()
            if byte in (0x7B, 0x5B):
                if len(open_containers) >= MAX_DEPTH:
                    raise self._fail("exceeded max depth")
                self.pos += 1
                if self._skip_ws() != byte + 2:  # not empty: "}" is "{" + 2, "]" is "[" + 2
                    open_containers.append(byte)
                    if byte == 0x7B:
                        self._key()
                    continue
                self.pos += 1
            else:
                self._scalar(byte)
            if not self._after_value(open_containers):
                return

    def _after_value(self, open_containers: bytearray) -> bool:
        """Close what the value ends; True if another value follows inside a container."""
        while open_containers:
            byte = self._skip_ws()
            self.pos += 1
            if byte == open_containers[-1] + 2:
                open_containers.pop()
            elif byte == 0x2C:
                if open_containers[-1] == 0x7B:
                    self._key()
                return True
            else:
                self.pos -= 1
                raise self._fail(
                    "after object key:value pair"
                    if open_containers[-1] == 0x7B
                    else "after array element"
                )
        return False

    def _key(self) -> None:
        if self._skip_ws() != 0x22:
            raise self._fail("looking for beginning of object key string")
        self._string()
        if self._skip_ws() != 0x3A:
            raise self._fail("after object key")
        self.pos += 1

    def _scalar(self, byte: int) -> None:
        if byte == 0x22:
            self._string()
        elif byte == 0x2D or 0x30 <= byte <= 0x39:
            self._number()
        elif byte in b"tfn":
            word = {0x74: b"true", 0x66: b"false", 0x6E: b"null"}[byte]
            self.pos += 1
            for expected in word[1:]:
                if self._peek() != expected:
                    hint = f"(expecting {_quote_char(expected)})"
                    raise self._fail(f"in literal {word.decode()} {hint}")
                self.pos += 1
        else:
            raise self._fail("looking for beginning of value")

    def _string(self) -> None:
        self.pos += 1
        while True:
            byte = self._peek()
            if byte == 0x22:
                self.pos += 1
                return
            if byte == 0x5C:
                self.pos += 1
                escape = self._peek()
                if escape == 0x75:
                    for _ in range(4):
                        self.pos += 1
                        if self._peek() not in b"0123456789abcdefABCDEF":
                            raise self._fail("in \\u hexadecimal character escape")
                elif escape not in b'"\\/bfnrt':
                    raise self._fail("in string escape code")
            elif byte < 0x20:
                raise self._fail("in string literal")
            self.pos += 1

    def _digits(self) -> None:
        while self.pos < len(self.data) and 0x30 <= self.data[self.pos] <= 0x39:
            self.pos += 1

    def _number(self) -> None:
        if self.data[self.pos] == 0x2D:
            self.pos += 1
            if not 0x30 <= self._peek() <= 0x39:
                raise self._fail("in numeric literal")
        if self.data[self.pos] == 0x30:
            self.pos += 1
        else:
            self._digits()
        if self.pos < len(self.data) and self.data[self.pos] == 0x2E:
            self.pos += 1
            if not 0x30 <= self._peek() <= 0x39:
                raise self._fail("after decimal point in numeric literal")
            self._digits()
        if self.pos < len(self.data) and self.data[self.pos] in b"eE":
            self.pos += 1
            if self._peek() in b"+-":
                self.pos += 1
            if not 0x30 <= self._peek() <= 0x39:
                raise self._fail("in exponent of numeric literal")
            self._digits()


def decode_base64(text: str) -> bytes:
    """Standard base64 as Go's ``encoding/base64.StdEncoding`` decodes ``[]byte`` JSON fields.

    Newlines are skipped and padding is required; on bad input the error is Go's
    ``illegal base64 data at input byte N``.
    """
    compact = text.replace("\n", "").replace("\r", "") if "\n" in text or "\r" in text else text
    if sys.version_info >= (3, 11) and len(compact) % 4 == 0:  # strict_mode is new in 3.11
        try:
            return binascii.a2b_base64(compact, strict_mode=True)
        except binascii.Error:
            pass
    offset = _base64_error_offset(text.encode("utf-8", "surrogatepass"))
    if offset is None:  # valid to Go but not to binascii's strict mode (e.g. stray trailing bits)
        return binascii.a2b_base64(compact)
    raise GoJSONError(f"illegal base64 data at input byte {offset}")


_B64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def _base64_error_offset(src: bytes) -> int | None:
    """Port of Go's ``decodeQuantum`` error offsets; None when Go would accept ``src``."""
    si = 0
    newline = b"\r\n"
    while si < len(src):
        j = 0
        while j < 4:
            if si == len(src):
                if j == 0:
                    return None
                return si - j
            byte = src[si]
            si += 1
            if byte in _B64_ALPHABET:
                j += 1
                continue
            if byte in newline:
                continue
            if byte != 0x3D:
                return si - 1
            if j in (0, 1):
                return si - 1
            if j == 2:
                while si < len(src) and src[si] in newline:
                    si += 1
                if si == len(src):
                    return len(src)
                if src[si] != 0x3D:
                    return si - 1
                si += 1
            while si < len(src) and src[si] in newline:
                si += 1
            return si if si < len(src) else None
    return None
