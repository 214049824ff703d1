"""Ollama's OpenAI-compatible routes: ``/v1/chat/completions``, ``/v1/completions``,
``/v1/embeddings``, ``/v1/models`` and ``/v1/models/:model`` (``ollama-api.md`` §8).

As in Ollama (``middleware/openai.go``, ``openai/openai.go``), each route rewrites its request
into the native one (``max_tokens`` → ``num_predict``, ``temperature``/``top_p`` 1.0 when
absent, ``reasoning_effort`` → ``think``, ...), runs the native handler, and a
:class:`~ollama_magic.server.http.Translator` reshapes what that handler writes: JSON into
OpenAI objects, NDJSON into server-sent events ending in ``data: [DONE]``, and errors into
``{"error": {"message", "type", "param", "code"}}`` with the native status. So truncation,
thinking, capabilities and the CORS guard are the native ones.
"""

from __future__ import annotations

import base64
import json
import random
import struct
import time
from datetime import datetime
from typing import Any

from ..common.names import parse_name
from .gojson import EmptyBody, GoJSONError, decode_first, dumps
from .http import BaseHandler, HTTPError

_JSON = "application/json"  # Go's json.NewEncoder output, no charset, ends in a newline
_SSE = "text/event-stream"
_FINGERPRINT = "fp_ollama"

_EFFORTS: dict[str, bool | str] = {
    "none": False,
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "max": "max",
    "xhigh": "max",
    "ultra": "max",
}
_IMAGE_PREFIXES = tuple(f"data:image/{kind};base64," for kind in ("jpeg", "jpg", "png", "webp"))


def openai_error(status: int, message: str) -> dict[str, Any]:
    """Ollama's ``openai.NewError``: the type follows the status."""
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _encode(value: Any) -> bytes:
    """Go's ``json.NewEncoder(w).Encode``: compact, ``<>&`` escaped, one trailing newline."""
    return dumps(value) + b"\n"


def _sse(value: Any) -> bytes:
    return b"data: " + dumps(value) + b"\n\n"


def _usage(body: dict[str, Any]) -> dict[str, int]:
    prompt, completion = body.get("prompt_eval_count", 0), body.get("eval_count", 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _tool_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Native tool calls in OpenAI's shape: ``arguments`` as a JSON string."""
    out = []
    for call in calls:
        function = call.get("function", {})
        arguments = json.dumps(function.get("arguments", {}), separators=(",", ":"))
        out.append(
            {
                "id": call.get("id", ""),
                "index": function.get("index", 0),
                "type": "function",
                "function": {"name": function.get("name", ""), "arguments": arguments},
            }
        )
    return out


class _Base:
    """Errors and the parts every translator shares."""

    stream_content_type = _SSE

    def json(self, status: int, value: Any) -> tuple[bytes, str]:
        if status >= 400 or (isinstance(value, dict) and "error" in value and status != 200):
            message = value.get("error", "") if isinstance(value, dict) else str(value)
            return _encode(openai_error(status, str(message))), _JSON
        return _encode(self.convert(value)), _JSON

    def convert(self, value: dict[str, Any]) -> Any:
        raise NotImplementedError

    def stream_line(self, value: dict[str, Any]) -> bytes:
        if "error" in value:  # an in-stream failure: one error event, then the stream ends
            return _sse(openai_error(500, str(value["error"])))
        return self.chunk(value)

    def chunk(self, value: dict[str, Any]) -> bytes:
        raise NotImplementedError


class ChatTranslator(_Base):
    """Native chat → ``chat.completion`` / ``chat.completion.chunk`` (Ollama's ChatWriter)."""

    def __init__(self, include_usage: bool) -> None:
        self.id = f"chatcmpl-{random.randrange(999)}"
        self.include_usage = include_usage
        self.created = 0
        self.first_sent = False
        self.tool_call_sent = False

    def convert(self, value: dict[str, Any]) -> Any:
        message = value.get("message", {})
        calls = _tool_calls(message.get("tool_calls", []))
        reason = value.get("done_reason", "")
        if reason == "stop" and calls:
            reason = "tool_calls"
        out_message: dict[str, Any] = {
            "role": message.get("role", "assistant"),
            "content": message.get("content", ""),
        }
        if message.get("thinking"):
            out_message["reasoning"] = message["thinking"]
        if calls:
            out_message["tool_calls"] = calls
        choice: dict[str, Any] = {
            "index": 0,
            "message": out_message,
            "finish_reason": reason or None,
        }
        if value.get("logprobs"):
            choice["logprobs"] = {"content": value["logprobs"]}
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": value.get("model", ""),
            "system_fingerprint": _FINGERPRINT,
            "choices": [choice],
            "usage": _usage(value),
        }

    def _chunk(
        self, value: dict[str, Any], delta: dict[str, Any], logprobs: bool = True
    ) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": None}
        if logprobs and value.get("logprobs"):
            choice["logprobs"] = {"content": value["logprobs"]}
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": value.get("model", ""),
            "system_fingerprint": _FINGERPRINT,
            "choices": [choice],
        }

    def chunk(self, value: dict[str, Any]) -> bytes:
        if not self.created:
            self.created = int(time.time())  # one value for the whole stream, as OpenAI does
        message = value.get("message", {})
        content, thinking = message.get("content", ""), message.get("thinking", "")
        calls = _tool_calls(message.get("tool_calls", []))
        done = bool(value.get("done"))
        out = b""
        empty_trailer = (
            done and self.first_sent and not content and not thinking and not calls
        ) and not value.get("logprobs")
        if not empty_trailer:
            role = {} if self.first_sent else {"role": "assistant"}
            if thinking and (content or calls):  # reasoning and answer: two chunks
                out += _sse(self._chunk(value, {**role, "reasoning": thinking}))
                rest: dict[str, Any] = {"content": content}
                if calls:
                    rest["tool_calls"] = calls
                out += _sse(self._chunk(value, rest, logprobs=False))
            else:
                delta: dict[str, Any] = {**role, "content": content}
                if thinking:
                    delta["reasoning"] = thinking
                if calls:
                    delta["tool_calls"] = calls
                out += _sse(self._chunk(value, delta))
            self.tool_call_sent = self.tool_call_sent or bool(calls)
            self.first_sent = True
        if done:
            reason = value.get("done_reason") or "stop"
            if reason == "stop" and self.tool_call_sent:
                reason = "tool_calls"
            finish = self._chunk(value, {}, logprobs=False)
            finish["choices"][0]["finish_reason"] = reason
            out += _sse(finish)
            if self.include_usage:
                out += _sse({**finish, "choices": [], "usage": _usage(value)})
            out += b"data: [DONE]\n\n"
        return out


class CompletionTranslator(_Base):
    """Native generate → ``text_completion`` objects (Ollama's CompleteWriter; it never
    returns logprobs, even when asked)."""

    def __init__(self, include_usage: bool) -> None:
        self.id = f"cmpl-{random.randrange(999)}"
        self.include_usage = include_usage

    def _object(self, value: dict[str, Any]) -> dict[str, Any]:
        reason = value.get("done_reason", "")
        return {
            "id": self.id,
            "object": "text_completion",
            "created": int(time.time()),
            "model": value.get("model", ""),
            "system_fingerprint": _FINGERPRINT,
            "choices": [
                {"text": value.get("response", ""), "index": 0, "finish_reason": reason or None}
            ],
        }

    def convert(self, value: dict[str, Any]) -> Any:
        return {**self._object(value), "usage": _usage(value)}

    def chunk(self, value: dict[str, Any]) -> bytes:
        base = self._object(value)
        chunk = {  # CompletionChunk's field order
            "id": base["id"],
            "object": base["object"],
            "created": base["created"],
            "choices": base["choices"],
            "model": base["model"],
            "system_fingerprint": _FINGERPRINT,
        }
        if self.include_usage:
            chunk["usage"] = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        out = _sse(chunk)
        if value.get("done"):
            if self.include_usage:
                out += _sse({**chunk, "choices": [], "usage": _usage(value)})
            out += b"data: [DONE]\n\n"
        return out


class EmbeddingTranslator(_Base):
    """Native embed → an OpenAI embedding list (floats, or little-endian float32 base64)."""

    def __init__(self, model: str, encoding_format: str) -> None:
        self.model = model
        self.base64 = encoding_format.lower() == "base64"

    def convert(self, value: dict[str, Any]) -> Any:
        data = []
        for index, vector in enumerate(value.get("embeddings") or []):
            embedding: Any = vector
            if self.base64:
                packed = struct.pack(f"<{len(vector)}f", *vector)
                embedding = base64.b64encode(packed).decode()
            data.append({"object": "embedding", "embedding": embedding, "index": index})
        tokens = value.get("prompt_eval_count", 0)
        return {
            "object": "list",
            "data": data or None,
            "model": self.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


class ListTranslator(_Base):
    """``/api/tags`` → ``{"object": "list", "data": [...]}`` (``null`` data when empty, as Go)."""

    def convert(self, value: dict[str, Any]) -> Any:
        data = [
            _model(m.get("model") or m.get("name", ""), m.get("modified_at", ""))
            for m in value.get("models", [])
        ]
        return {"object": "list", "data": data or None}


class RetrieveTranslator(_Base):
    """``/api/show`` → one model object named as the request named it."""

    def __init__(self, model: str) -> None:
        self.model = model

    def convert(self, value: dict[str, Any]) -> Any:
        return _model(self.model, value.get("modified_at", ""))


def _model(name: str, modified_at: str) -> dict[str, Any]:
    return {
        "id": name,
        "object": "model",
        "created": _unix(modified_at),
        "owned_by": parse_name(name).namespace,
    }


def _unix(timestamp: str) -> int:
    """Seconds of an RFC 3339 time as Ollama writes it (0 if unreadable)."""
    try:
        return int(datetime.fromisoformat(_trim_fraction(timestamp)).timestamp())
    except ValueError:
        return 0


def _trim_fraction(timestamp: str) -> str:
    """RFC 3339 with at most six fraction digits and ``+00:00`` for ``Z`` (for Python 3.10)."""
    stamp = timestamp.replace("Z", "+00:00")
    if "." not in stamp:
        return stamp
    head, _, rest = stamp.partition(".")
    digits = "".join(c for c in rest if c.isdigit())
    zone = rest[len(digits) :]
    return f"{head}.{digits[:6].ljust(6, '0')}{zone}"


class OpenAIRoutes(BaseHandler):
    """The ``/v1`` routes, as methods of the request handler."""

    def _openai_request(self) -> dict[str, Any]:
        """The OpenAI body (errors in OpenAI's shape: the translator is already set)."""
        try:
            body = decode_first(self._body())
        except EmptyBody:
            raise HTTPError(400, "EOF") from None
        except GoJSONError as exc:
            raise HTTPError(400, str(exc)) from None
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise HTTPError(400, "json: cannot unmarshal into Go value of type openai request")
        return body

    def _run_native(self, native: dict[str, Any], handler: Any) -> None:
        self.body_override = json.dumps(native).encode()
        handler()

    def _v1_chat(self) -> None:
        self.translator = ChatTranslator(False)
        req = self._openai_request()
        options = req.get("stream_options")
        self.translator.include_usage = isinstance(options, dict) and bool(
            options.get("include_usage")
        )
        messages = req.get("messages")
        if not messages:
            raise HTTPError(400, "[] is too short - 'messages'")
        try:
            native = _chat_request(req)
        except ValueError as exc:
            raise HTTPError(400, str(exc)) from None
        self._run_native(native, self._chat)  # type: ignore[attr-defined]

    def _v1_completions(self) -> None:
        self.translator = CompletionTranslator(False)
        req = self._openai_request()
        options = req.get("stream_options")
        self.translator.include_usage = isinstance(options, dict) and bool(
            options.get("include_usage")
        )
        try:
            native = _completion_request(req)
        except ValueError as exc:
            raise HTTPError(400, str(exc)) from None
        self._run_native(native, self._generate)  # type: ignore[attr-defined]

    def _v1_embeddings(self) -> None:
        self.translator = EmbeddingTranslator("", "")
        req = self._openai_request()
        model, fmt = req.get("model", ""), req.get("encoding_format") or ""
        self.translator = EmbeddingTranslator(str(model), str(fmt))
        if fmt and str(fmt).lower() not in ("float", "base64"):
            raise HTTPError(
                400,
                f"Invalid value for 'encoding_format' = {fmt}. "
                "Supported values: ['float', 'base64'].",
            )
        inputs = req.get("input")
        if inputs == "":
            inputs = [""]
        if inputs is None or inputs == []:
            raise HTTPError(400, "invalid input")
        native: dict[str, Any] = {"model": model, "input": inputs}
        if req.get("dimensions"):
            native["dimensions"] = req["dimensions"]
        self._run_native(native, self._embed)  # type: ignore[attr-defined]

    def _v1_models(self) -> None:
        self.translator = ListTranslator()
        self._tags()  # type: ignore[attr-defined]

    def _v1_model(self) -> None:
        self.translator = RetrieveTranslator(self.path_param)
        self._run_native({"name": self.path_param}, self._show)  # type: ignore[attr-defined]


def _stops(value: Any, strict: bool) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        stops = []
        for item in value:
            if isinstance(item, str):
                stops.append(item)
            elif strict:
                raise ValueError(f"invalid type for 'stop' field: {_go_type(item)}")
        return stops
    return None


def _go_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "float64"
    if isinstance(value, dict):
        return "map[string]interface {}"
    if isinstance(value, list):
        return "[]interface {}"
    return "<nil>"


def _sampling(req: dict[str, Any], stops: list[str] | None) -> dict[str, Any]:
    """The options both translations share; temperature and top_p default to 1.0."""
    options: dict[str, Any] = {}
    if stops is not None:
        options["stop"] = stops
    if req.get("max_tokens") is not None:
        options["num_predict"] = req["max_tokens"]
    options["temperature"] = 1.0 if req.get("temperature") is None else req["temperature"]
    if req.get("seed") is not None:
        options["seed"] = req["seed"]
    return options


def _chat_request(req: dict[str, Any]) -> dict[str, Any]:
    """Ollama's ``FromChatRequest``: an OpenAI chat request as a native ``/api/chat`` body."""
    messages = []
    for message in req.get("messages") or []:
        if not isinstance(message, dict):
            raise ValueError("invalid message format")
        messages += _messages(message, req.get("messages") or [])
    options = _sampling(req, _stops(req.get("stop"), strict=False))
    for key in ("frequency_penalty", "presence_penalty"):
        if req.get(key) is not None:
            options[key] = req[key]
    options["top_p"] = 1.0 if req.get("top_p") is None else req["top_p"]
    native: dict[str, Any] = {
        "model": req.get("model", ""),
        "messages": messages,
        "options": options,
        "stream": bool(req.get("stream")),
    }
    fmt = req.get("response_format")
    if isinstance(fmt, dict):
        kind = str(fmt.get("type", "")).strip().lower()
        if kind == "json_object":
            native["format"] = "json"
        elif kind == "json_schema" and isinstance(fmt.get("json_schema"), dict):
            native["format"] = fmt["json_schema"].get("schema")
    if req.get("tools"):
        native["tools"] = req["tools"]
    reasoning = req.get("reasoning")
    effort = reasoning.get("effort", "") if isinstance(reasoning, dict) else None
    if effort is None:
        effort = req.get("reasoning_effort") or ""
    if effort:
        if effort not in _EFFORTS:
            raise ValueError(
                f'invalid reasoning value: "{effort}" (must be "minimal", "low", "medium", '
                '"high", "xhigh", "ultra", "max", or "none")'
            )
        native["think"] = _EFFORTS[effort]
    if req.get("logprobs"):
        native["logprobs"] = True
    if req.get("top_logprobs"):
        native["top_logprobs"] = req["top_logprobs"]
    return native


def _messages(message: dict[str, Any], all_messages: list[Any]) -> list[dict[str, Any]]:
    """One OpenAI message as native ones (content parts become a message each)."""
    role = message.get("role", "")
    tool_name = ""
    if str(role).lower() == "tool":
        tool_name = message.get("name") or _tool_name(all_messages, message.get("tool_call_id"))
    calls = [_native_call(call) for call in message.get("tool_calls") or []]
    content = message.get("content")
    extra: dict[str, Any] = {}
    if calls:
        extra["tool_calls"] = calls
    if tool_name:
        extra["tool_name"] = tool_name
    if message.get("tool_call_id"):
        extra["tool_call_id"] = message["tool_call_id"]
    if message.get("reasoning"):
        extra["thinking"] = message["reasoning"]
    if isinstance(content, str):
        return [{"role": role, "content": content, **extra}]
    if isinstance(content, list):
        out = []
        for part in content:
            if not isinstance(part, dict):
                raise ValueError("invalid message format")
            if part.get("type") == "text":
                if not isinstance(part.get("text"), str):
                    raise ValueError("invalid message format")
                out.append({"role": role, "content": part["text"]})
            elif part.get("type") == "image_url":
                url = part.get("image_url")
                url = url.get("url") if isinstance(url, dict) else url
                if not isinstance(url, str):
                    raise ValueError("invalid message format")
                out.append({"role": role, "images": [_image(url)]})
            else:
                raise ValueError("invalid message format")
        if out and calls:
            out[-1].update(extra)
        return out
    if not message.get("tool_calls"):
        raise ValueError(f"invalid message content type: {_go_type(content)}")
    return [{"role": role, **extra}]


def _tool_name(messages: list[Any], call_id: Any) -> str:
    for message in reversed(messages):
        for call in (message.get("tool_calls") or []) if isinstance(message, dict) else []:
            if isinstance(call, dict) and call.get("id") == call_id:
                return str(call.get("function", {}).get("name", ""))
    return ""


def _native_call(call: Any) -> dict[str, Any]:
    if not isinstance(call, dict):
        raise ValueError("invalid tool call arguments")
    function = call.get("function") or {}
    try:
        arguments = json.loads(function.get("arguments") or "")
    except (TypeError, ValueError):
        raise ValueError("invalid tool call arguments") from None
    name = function.get("name", "")
    native: dict[str, Any] = {"function": {"name": name, "arguments": arguments}}
    if call.get("id"):
        native["id"] = call["id"]
    return native


def _image(url: str) -> str:
    """A ``data:`` URL's base64 payload, as native ``images`` take it."""
    if url.startswith(("http://", "https://")):
        raise ValueError(
            "image URLs are not currently supported, please use base64 encoded data instead"
        )
    if url.startswith("data:;base64,"):
        payload = url[len("data:;base64,") :]
    else:
        prefix = next((p for p in _IMAGE_PREFIXES if url.startswith(p)), None)
        if prefix is None:
            raise ValueError("invalid image input")
        payload = url[len(prefix) :]
    try:
        base64.b64decode(payload, validate=True)
    except ValueError:
        raise ValueError("invalid image input") from None
    return payload


def _completion_request(req: dict[str, Any]) -> dict[str, Any]:
    """Ollama's ``FromCompleteRequest``: an OpenAI completion as a native ``/api/generate``."""
    prompt = req.get("prompt", "")
    if not isinstance(prompt, str):
        raise ValueError(
            f"json: cannot unmarshal {_json_kind(prompt)} into Go struct field "
            "CompletionRequest.prompt of type string"
        )
    options = _sampling(req, _stops(req.get("stop"), strict=True))
    options["frequency_penalty"] = req.get("frequency_penalty") or 0.0
    options["presence_penalty"] = req.get("presence_penalty") or 0.0
    options["top_p"] = req.get("top_p") or 1.0
    native: dict[str, Any] = {
        "model": req.get("model", ""),
        "prompt": prompt,
        "options": options,
        "stream": bool(req.get("stream")),
    }
    if req.get("suffix"):
        native["suffix"] = req["suffix"]
    logprobs = req.get("logprobs")
    if isinstance(logprobs, int) and not isinstance(logprobs, bool) and logprobs > 0:
        native["logprobs"], native["top_logprobs"] = True, logprobs
    return native


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"
