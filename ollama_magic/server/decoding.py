"""Request bodies decoded as Ollama's Go structs would be, with Go's exact error texts.

Go's ``encoding/json`` matches field names case-insensitively, ignores unknown fields, treats
``null`` as "leave unset", and on a wrong type keeps going and reports the first mismatch at the
end (``json: cannot unmarshal number into Go struct field GenerateRequest.prompt of type string``),
while custom decoders (``keep_alive``, ``think``) stop at once with their own messages. The
``options`` map is checked later by :func:`validate_options`, which Ollama does inside model
scheduling and answers with a 500. Pure: no I/O.

>>> decode_struct({"Model": "echo", "stream": False, "extra": 1}, GENERATE_REQUEST)
{'model': 'echo', 'stream': False}
>>> keep_alive_ns("10m")
600000000000
>>> validate_options({"num_predict": 12.9, "stop": ["\\n"], "mirostat": 2})
{'num_predict': 12, 'stop': ['\\n'], 'mirostat': 2}
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..common.goquote import go_quote
from ..common.gotime import MAX_DURATION, SECOND, DurationError, parse_duration
from .gojson import GoJSONError, GoNumber, decode_base64, kind_of

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


class DecodeError(ValueError):
    """A body Ollama rejects while decoding it (always a 400); ``str()`` is Ollama's message."""


class OptionError(ValueError):
    """An ``options`` value of the wrong type (a 500 in Ollama); ``str()`` is Ollama's message."""


class _Saved(Exception):
    """An error Go's decoder remembers while it goes on decoding; the first one is reported."""

    def text(self, struct: str, field: str) -> str:
        return str(self)


class _Mismatch(_Saved):
    """A Go ``UnmarshalTypeError``."""

    def __init__(self, value: str, gotype: str) -> None:
        super().__init__(value, gotype)
        self.value, self.gotype = value, gotype

    def text(self, struct: str, field: str) -> str:
        return (
            f"json: cannot unmarshal {self.value} into Go struct field "
            f"{struct}.{field} of type {self.gotype}"
        )


Converter = Callable[[Any], Any]


@dataclass(frozen=True)
class Struct:
    """A Go request struct: its name (for error texts) and its JSON fields."""

    name: str
    fields: dict[str, tuple[Converter, str]]  # json name -> (converter, Go type for errors)

    def field(self, key: str) -> str | None:
        if key in self.fields:
            return key
        folded = key.casefold()
        return next((name for name in self.fields if name.casefold() == folded), None)


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise _Mismatch(kind_of(value), "string")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Mismatch(kind_of(value), "bool")
    return value


def _int(value: Any) -> int:
    if isinstance(value, GoNumber):
        raise _Mismatch(f"number {value.literal}", "int")
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Mismatch(kind_of(value), "int")
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise _Mismatch(f"number {value}", "int")
    return value


def _int_list(value: Any) -> list[int]:
    if not isinstance(value, list):
        raise _Mismatch(kind_of(value), "[]int")
    return [_int(item) if item is not None else 0 for item in value]


def _raw(value: Any) -> Any:
    return value


def _string_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _Mismatch(kind_of(value), "map[string]string")
    out = {}
    for key, item in value.items():
        if item is not None and not isinstance(item, str):
            raise _Mismatch(kind_of(item), "string")
        out[key] = item or ""
    return out


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Mismatch(kind_of(value), "map[string]interface {}")
    return value


def _objects(gotype: str) -> Converter:
    def convert(value: Any) -> list[dict[str, Any]]:
        if not isinstance(value, list):
            raise _Mismatch(kind_of(value), "[]" + gotype)
        out = []
        for item in value:
            if item is not None and not isinstance(item, dict):
                raise _Mismatch(kind_of(item), gotype)
            out.append(item or {})
        return out

    return convert


def _images(value: Any) -> list[bytes]:
    if not isinstance(value, list):
        raise _Mismatch(kind_of(value), "[]api.ImageData")
    out = []
    for item in value:
        if item is None:
            out.append(b"")
        elif not isinstance(item, str):
            raise _Mismatch(kind_of(item), "api.ImageData")
        else:
            try:
                out.append(decode_base64(item))
            except GoJSONError as exc:
                raise _Saved(str(exc)) from None
    return out


def keep_alive_ns(value: Any) -> int:
    """Ollama's ``Duration.UnmarshalJSON``: nanoseconds, :data:`MAX_DURATION` meaning forever.

    Numbers are seconds (negative: forever); strings use Go duration syntax. Errors are
    :class:`DecodeError` with Go's text, e.g. ``time: missing unit in duration "300"``.
    """
    if isinstance(value, bool):
        raise DecodeError("Unsupported type: 'bool'")
    if isinstance(value, (int, float)):
        if value < 0:
            return MAX_DURATION
        # Go converts float64 seconds to int64 nanoseconds; past int64 it overflows, and keeping
        # the model forever is the least surprising reading of a huge number.
        ns = float(value) * SECOND
        return MAX_DURATION if ns >= MAX_DURATION else int(ns)
    if isinstance(value, str):
        try:
            ns = parse_duration(value)
        except DurationError as exc:
            raise DecodeError(str(exc)) from None
        return MAX_DURATION if ns < 0 else ns
    gotype = "map[string]interface {}" if isinstance(value, dict) else "[]interface {}"
    raise DecodeError(f"Unsupported type: '{gotype}'")


THINK_LEVELS = ("high", "medium", "low", "max")


def think_value(value: Any) -> bool | str:
    """Ollama's ``ThinkValue.UnmarshalJSON``: a bool or one of :data:`THINK_LEVELS`."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value not in THINK_LEVELS:
            raise DecodeError(
                f"invalid think value: {go_quote(value)} "
                '(must be "high", "medium", "low", "max", true, or false)'
            )
        return value
    raise DecodeError(
        'think must be a boolean or string ("high", "medium", "low", "max", true, or false)'
    )


def think_enabled(think: bool | str | None) -> bool:
    """Ollama's ``ThinkValue.Bool``: levels count as true."""
    return think is True or (isinstance(think, str) and think != "")


MESSAGE = Struct(
    "Alias",  # Message.UnmarshalJSON decodes into a local "type Alias Message"
    {
        "role": (_string, "string"),
        "content": (_string, "string"),
        "thinking": (_string, "string"),
        "images": (_images, "[]api.ImageData"),
        "tool_calls": (_objects("api.ToolCall"), "[]api.ToolCall"),
        "tool_name": (_string, "string"),
        "tool_call_id": (_string, "string"),
    },
)


def _messages(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise _Mismatch(kind_of(value), "[]api.Message")
    out = []
    for item in value:
        # Message has its own UnmarshalJSON (it lower-cases the role), so its errors stop decoding.
        if item is not None and not isinstance(item, dict):
            got = kind_of(item)
            raise DecodeError(f"json: cannot unmarshal {got} into Go value of type api.Alias")
        message = decode_struct(item, MESSAGE)
        message["role"] = message.get("role", "").lower()
        out.append(message)
    return out


_STREAMING = {"stream": (_bool, "bool"), "keep_alive": (keep_alive_ns, "api.Duration")}
_COMMON = {
    "options": (_object, "map[string]interface {}"),
    "think": (think_value, "api.ThinkValue"),
    "truncate": (_bool, "bool"),
    "shift": (_bool, "bool"),
    "logprobs": (_bool, "bool"),
    "top_logprobs": (_int, "int"),
}

GENERATE_REQUEST = Struct(
    "GenerateRequest",
    {
        "model": (_string, "string"),
        "prompt": (_string, "string"),
        "suffix": (_string, "string"),
        "system": (_string, "string"),
        "template": (_string, "string"),
        "context": (_int_list, "[]int"),
        **_STREAMING,
        "raw": (_bool, "bool"),
        "format": (_raw, "json.RawMessage"),
        "images": (_images, "[]api.ImageData"),
        **_COMMON,
        "_debug_render_only": (_bool, "bool"),
    },
)

CHAT_REQUEST = Struct(
    "ChatRequest",
    {
        "model": (_string, "string"),
        "messages": (_messages, "[]api.Message"),
        **_STREAMING,
        "format": (_raw, "json.RawMessage"),
        "tools": (_objects("api.Tool"), "api.Tools"),
        **_COMMON,
    },
)

SHOW_REQUEST = Struct(
    "ShowRequest",
    {
        "model": (_string, "string"),
        "system": (_string, "string"),
        "template": (_string, "string"),
        "verbose": (_bool, "bool"),
        "options": (_object, "map[string]interface {}"),
        "name": (_string, "string"),
    },
)

EMBED_REQUEST = Struct(
    "EmbedRequest",
    {
        "model": (_string, "string"),
        "input": (_raw, "interface {}"),  # a string or strings: checked by the handler
        "keep_alive": (keep_alive_ns, "api.Duration"),
        "truncate": (_bool, "bool"),
        "dimensions": (_int, "int"),
        "options": (_object, "map[string]interface {}"),
    },
)

EMBEDDINGS_REQUEST = Struct(
    "EmbeddingRequest",
    {
        "model": (_string, "string"),
        "prompt": (_string, "string"),
        "keep_alive": (keep_alive_ns, "api.Duration"),
        "options": (_object, "map[string]interface {}"),
    },
)

PULL_REQUEST = Struct(
    "PullRequest",
    {
        "model": (_string, "string"),
        "insecure": (_bool, "bool"),
        "username": (_string, "string"),
        "password": (_string, "string"),
        "stream": (_bool, "bool"),
        "name": (_string, "string"),
    },
)

PUSH_REQUEST = Struct("PushRequest", PULL_REQUEST.fields)

COPY_REQUEST = Struct(
    "CopyRequest", {"source": (_string, "string"), "destination": (_string, "string")}
)

DELETE_REQUEST = Struct(
    "DeleteRequest", {"model": (_string, "string"), "name": (_string, "string")}
)

CREATE_REQUEST = Struct(
    "CreateRequest",
    {
        "model": (_string, "string"),
        "stream": (_bool, "bool"),
        "quantize": (_string, "string"),
        "draft_quantize": (_string, "string"),
        "from": (_string, "string"),
        "remote_host": (_string, "string"),
        "files": (_string_map, "map[string]string"),
        "draft_files": (_string_map, "map[string]string"),
        "adapters": (_string_map, "map[string]string"),
        "template": (_string, "string"),
        "license": (_raw, "interface {}"),  # a string or strings: checked when creating
        "system": (_string, "string"),
        "parameters": (_object, "map[string]interface {}"),
        "messages": (_messages, "[]api.Message"),
        "renderer": (_string, "string"),
        "parser": (_string, "string"),
        "requires": (_string, "string"),
        "info": (_object, "map[string]interface {}"),
        "name": (_string, "string"),
        "quantization": (_string, "string"),
    },
)

# Fields whose Go type is a pointer: JSON null resets them to "absent".
_POINTERS = {"stream", "keep_alive", "think", "truncate", "shift", "license"}


def decode_struct(body: Any, struct: Struct) -> dict[str, Any]:
    """The fields of ``body`` that ``struct`` knows, converted; absent fields are left out.

    Raises :class:`DecodeError` with the message Go's decoder would give.
    """
    if body is None:
        return {}
    if not isinstance(body, dict):
        got = kind_of(body)
        raise DecodeError(f"json: cannot unmarshal {got} into Go value of type api.{struct.name}")
    out: dict[str, Any] = {}
    first_error: str | None = None
    for key, value in body.items():
        name = struct.field(key)
        if name is None:
            continue
        if value is None:
            if name in _POINTERS or name == "format":
                out.pop(name, None)
            continue
        convert, _ = struct.fields[name]
        try:
            out[name] = convert(value)
        except _Saved as exc:
            if first_error is None:
                first_error = exc.text(struct.name, name)
    if first_error is not None:
        raise DecodeError(first_error)
    return out


# Ollama's Options and Runner structs: the option keys it knows and their Go kinds.
OPTION_KINDS: dict[str, str] = {
    "num_keep": "integer",
    "seed": "integer",
    "num_predict": "integer",
    "top_k": "integer",
    "top_p": "float32",
    "min_p": "float32",
    "typical_p": "float32",
    "repeat_last_n": "integer",
    "temperature": "float32",
    "repeat_penalty": "float32",
    "presence_penalty": "float32",
    "frequency_penalty": "float32",
    "stop": "array",
    "num_ctx": "integer",
    "num_batch": "integer",
    "num_gpu": "integer",
    "main_gpu": "integer",
    "use_mmap": "boolean",
    "num_thread": "integer",
    "draft_num_predict": "integer",
}

LOAD_TIME_OPTIONS = ("num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread")
"""Options that change how a model is loaded: a different value reloads it."""


def _option(key: str, kind: str, value: Any) -> Any:
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise OptionError(f"option {go_quote(key)} must be of type integer")
        number = int(value)  # Go truncates: 4096.9 is 4096
        return number if _INT64_MIN <= number <= _INT64_MAX else _INT64_MIN
    if kind == "float32":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise OptionError(f"option {go_quote(key)} must be of type float32")
        return float(value)
    if kind == "boolean":
        if not isinstance(value, bool):
            raise OptionError(f"option {go_quote(key)} must be of type boolean")
        return value
    if not isinstance(value, list):
        raise OptionError(f"option {go_quote(key)} must be of type array")
    if not all(isinstance(item, str) for item in value):
        raise OptionError(f"option {go_quote(key)} must be of an array of strings")
    return list(value)


def validate_options(options: dict[str, Any]) -> dict[str, Any]:
    """Known options type-checked and coerced as Ollama's ``Options.FromMap`` does.

    ``null`` values are dropped. Unknown keys are kept untouched (Ollama ignores them, so
    engine-specific extensions such as ``scripted_delay`` pass through). Raises
    :class:`OptionError` (a 500 on the wire) for a known key with the wrong type.
    """
    out: dict[str, Any] = {}
    for key, value in options.items():
        if value is None:
            continue
        kind = OPTION_KINDS.get(key)
        out[key] = value if kind is None else _option(key, kind, value)
    return out


def _unquote(raw: str) -> str:
    """A quoted PARAMETER value: JSON (as :func:`format_parameters` writes it), else shell."""
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if isinstance(value, str):
        return value
    try:
        return " ".join(shlex.split(raw))
    except ValueError:
        return raw


def _typed(kind: str | None, text: str) -> Any:
    """An unquoted PARAMETER value as its option's type; text that doesn't fit stays a string, so
    :func:`validate_options` reports it as Ollama would (a 500 when the model is used)."""
    try:
        if kind == "integer":
            return int(float(text))
        if kind == "float32":
            return float(text)
    except (ValueError, OverflowError):
        return text
    if kind == "boolean" and text in ("true", "false"):
        return text == "true"
    if kind is None:  # an option Ollama doesn't know (an engine's own): a JSON number or bool
        try:
            value = json.loads(text)
        except ValueError:
            return text
        return value if isinstance(value, (int, float, bool)) else text
    return text


def parse_parameters(text: str) -> dict[str, Any]:
    """Modelfile ``PARAMETER`` lines (``key value``) as options; ``stop`` lines accumulate.

    A quoted value is a string, whatever the option's type: a created model with
    ``{"num_predict": "3"}`` fails when used, as in Ollama.
    """
    out: dict[str, Any] = {}
    for line in text.splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) != 2:
            continue
        key, raw = parts
        quoted = raw.startswith('"')
        value = _unquote(raw) if quoted else raw
        kind = OPTION_KINDS.get(key)
        if kind == "array":
            previous = out.get(key)
            out[key] = [*previous, value] if isinstance(previous, list) else [value]
        else:
            out[key] = value if quoted else _typed(kind, value)
    return out


def _parameter_text(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def format_parameters(params: dict[str, Any]) -> str:
    """PARAMETER lines for an options map (a created model's), sorted by key as Go stores them.

    Lists of strings give a line per item for array options; any other list or object is one
    line that :func:`parse_parameters` keeps as text, to fail when the model is used.

    >>> format_parameters({"stop": ["a b", "###"], "num_predict": 3.0, "temperature": 0.5})
    'num_predict 3\\nstop "a b"\\nstop "###"\\ntemperature 0.5'
    """
    lines = []
    for key in sorted(params):
        value = params[key]
        if value is None:
            continue
        many = OPTION_KINDS.get(key) == "array" and isinstance(value, list)
        if many and all(isinstance(item, str) for item in value):
            lines += [f"{key} {_parameter_text(item)}" for item in value]
        else:
            lines.append(f"{key} {_parameter_text(value)}")
    return "\n".join(lines)
