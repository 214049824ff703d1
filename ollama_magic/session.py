"""One generation from request to result: client -> NDJSON -> reasoning splitter -> sink.

This is the only module that joins transport and display. It never raises for what the server
or the user did: a Ctrl-C, an error line or a dropped connection all end in a (partial) result,
which the sink shows, plus the error for the magic to report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .common.thinking import RETRACT, ReasoningSplitter, SplitText, TextBuffer
from .errors import OllamaError, StreamTruncated, UnexpectedReply
from .live import Sink
from .logprobs import TokenLogprob, read_entries
from .result import ERROR, INTERRUPTED, GenerationResult

if TYPE_CHECKING:  # the client imports requests: keep ``%load_ext`` fast
    from .client import OllamaClient, Stream

#: Takes one chunk, returns its (response text, thinking text).
Pieces = Callable[[dict[str, Any]], tuple[str, str]]


def generate_pieces(chunk: dict[str, Any]) -> tuple[str, str]:
    return _piece(chunk, "response"), _piece(chunk, "thinking")


def chat_pieces(chunk: dict[str, Any]) -> tuple[str, str]:
    message = chunk.get("message")
    if message is None:
        return "", ""
    if not isinstance(message, dict):
        raise UnexpectedReply("'message' in a chat chunk")
    return _piece(message, "content"), _piece(message, "thinking")


def _piece(chunk: dict[str, Any], key: str) -> str:
    """A text field of a chunk: a string, or nothing; any other type means this is not Ollama."""
    value = chunk.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise UnexpectedReply(f"{key!r} of type {type(value).__name__}")
    return value


def run(
    client: OllamaClient,
    path: str,
    body: dict[str, Any],
    sink: Sink,
    pieces: Pieces = generate_pieces,
    *,
    stopped: Callable[[], str | None] | None = None,
) -> tuple[GenerationResult, OllamaError | None]:
    """Stream one request into ``sink``; return the result (partial on failure) and any error.

    ``stopped`` is for a stop from another thread (an app's Stop button closes the socket): when
    it gives a reason, the cut stream counts as an interruption with that reason, as a Ctrl-C
    does, not as an error.
    """
    splitter = ReasoningSplitter()
    text = SplitText()
    raw = TextBuffer()
    final: dict[str, Any] | None = None
    error: OllamaError | None = None
    stopped_by = None
    stop_reason = "interrupted by the user"
    received = False
    stream: Stream | None = None
    logprobs: list[TokenLogprob] | None = [] if body.get("logprobs") else None
    tokens, first, last = 0, 0.0, 0.0
    try:
        stream = client.stream(path, body)
        for chunk in stream:
            received = True
            response, thinking = pieces(chunk)
            raw.write(response)
            if response or thinking:
                last = time.monotonic()
                first = first or last
                tokens += 1
            if logprobs is not None and "logprobs" in chunk:
                reasoning = bool(thinking and not response)  # a chunk of reasoning only
                logprobs += read_entries(chunk["logprobs"], thinking=reasoning)
            for event in splitter.feed(response, thinking):
                _deliver(event, text, sink)
            if chunk.get("done") is True:
                final = chunk
                break
        else:
            raise StreamTruncated("the server closed the stream without a final chunk")
    except KeyboardInterrupt:
        stopped_by = INTERRUPTED
    except OllamaError as exc:
        if isinstance(exc, UnexpectedReply) and not exc.url:
            exc.url = str(getattr(client, "base_url", ""))
        reason = stopped() if stopped is not None else None
        if reason:
            stopped_by, stop_reason = INTERRUPTED, reason
        else:
            error, stopped_by = exc, ERROR
    finally:
        if stream is not None:
            stream.close()
    for event in splitter.flush():
        _deliver(event, text, sink)
    result = GenerationResult.from_final(
        str(body.get("model", "")),
        final,
        answer=text.answer,
        thinking=text.thinking.strip(),  # as Ollama trims around the tags
        response=raw.value(),
        request=body,
        logprobs=logprobs,
        streamed_tokens=tokens,
        streamed_seconds=last - first,
    )
    if final is not None and (result.prompt_eval_count or 0) >= CUT_CHECK_FROM:
        result.num_ctx = _context_window(client, body)
    if stopped_by:
        result.done_reason = stopped_by
        result.error = str(error) if error else stop_reason
    if received:
        sink.finish(result)
    return result, error


#: Prompts this long or longer are checked against the model's context window after the answer
#: (one ``/api/ps`` request when the request did not set ``num_ctx``): could it have been cut?
CUT_CHECK_FROM = 64


def _context_window(client: OllamaClient, body: dict[str, Any]) -> int | None:
    from .lifecycle import context_window

    try:
        return context_window(client, body)
    except (OllamaError, KeyboardInterrupt):  # only a hint depends on it
        return None


def _deliver(event: tuple[str, str], text: SplitText, sink: Sink) -> None:
    text.apply(event)  # type: ignore[arg-type]
    kind, piece = event
    if kind == RETRACT:
        sink.retract(text.thinking)
    elif kind == "thinking":
        sink.thinking(piece)
    else:
        sink.answer(piece)


def attach_data(result: GenerationResult, schema_model: Any = None) -> str | None:
    """Parse a ``--format`` answer into ``result.data``; return a note when it does not parse."""
    if not result.answer.strip():
        return None
    try:
        if schema_model is not None:
            result.data = schema_model.model_validate_json(result.answer)
        else:
            result.data = json.loads(result.answer)
    except ValueError as exc:  # json.JSONDecodeError and pydantic.ValidationError are ValueErrors
        return f"the answer is not valid for --format, so .data is None: {_first_problem(exc)}"
    return None


def _first_problem(exc: ValueError) -> str:
    """One line saying what is wrong: pydantic's first error with its field, else the message."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "the answer"
        return f"{where}: {first.get('msg', '')}"
    return str(exc).strip().splitlines()[0]
