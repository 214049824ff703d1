"""Generating endpoints: ``/api/generate``, ``/api/chat``, ``/api/embed`` and the deprecated
``/api/embeddings``, in Ollama's order of checks.

A validated request becomes a job for an engine (:mod:`~ollama_magic.server.engine`), whose
events are written as NDJSON chunks (:class:`Shape`) or gathered into one object. What a job
may do with an over-long prompt is :mod:`~ollama_magic.server.context`'s business (the
selected Ollama era); ``keep_alive`` absent leaves a loaded model's expiry rule as it is;
``logprobs`` travel per chunk, after ``done``, as in Ollama's structs.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol, cast

from ..common.goquote import go_quote
from ..common.gotime import utc_now
from .context import PromptTooLong
from .decoding import (
    CHAT_REQUEST,
    EMBED_REQUEST,
    EMBEDDINGS_REQUEST,
    GENERATE_REQUEST,
    OptionError,
    think_enabled,
    validate_options,
)
from .engine import (
    NO_EMBEDDINGS,
    ChatJob,
    Done,
    Drop,
    Engine,
    Event,
    Fail,
    GenerateJob,
    LoadError,
    ModelCard,
    Pause,
    Token,
)
from .gojson import dumps, dumps_str, float32, raw_field
from .gotemplate import TemplateError
from .gotemplate import parse as parse_template
from .http import JSON_NO_CHARSET, BaseHandler, ChunkedWriter, HTTPError
from .routes_models import qualified_name
from .scheduler import LoadedModel, model_options

log = logging.getLogger("ollama_magic.server")

_ALIVE_CHECK_EVERY = 0.1  # seconds between disconnect checks while an engine streams

LOAD = {"done_reason": "load"}
UNLOAD = {"done_reason": "unload"}


class Shape:
    """How a streaming endpoint frames tokens, the final chunk and load/unload replies.

    Subclasses say where the text goes (``_OPEN``/``_CLOSE`` around it in a chunk, :meth:`head`
    for whole objects) and what the final chunk adds (:meth:`_extra`).
    """

    _OPEN = b""  # a chunk's bytes between the created_at value and the JSON string of the text
    _CLOSE = b""  # a chunk's bytes after the text (and its thinking)
    _LOGPROBS_BEFORE_METRICS = False

    def __init__(self, model: str, started_ns: int, load_ns: int) -> None:
        self.model, self.started_ns, self.load_ns = model, started_ns, load_ns
        self._prefix = b'{"model":' + dumps_str(model) + b',"created_at":"'

    def chunk(self, token: Token) -> bytes:
        """One NDJSON line, written by hand: this is the per-token hot path."""
        thinking = b',"thinking":' + dumps_str(token.thinking) if token.thinking else b""
        text = dumps_str(token.response)
        close = self._CLOSE
        if token.logprobs:  # after "done", as in Ollama's structs
            close = close[:-2] + b',"logprobs":' + dumps(list(token.logprobs)) + b"}\n"
        return b"".join((self._prefix, utc_now().encode(), self._OPEN, text, thinking, close))

    def head(self, response: str, thinking: str, done: bool) -> dict[str, Any]:
        raise NotImplementedError

    def final(
        self, done: Done, response: str, thinking: str, logprobs: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """The done chunk; ``logprobs`` (non-streamed answers: all chunks' entries) goes where
        Ollama's struct has it: chat before the metrics, generate after them."""
        body = self.head(response, thinking, True)
        if done.done_reason:
            body["done_reason"] = done.done_reason
        body.update(self._extra(done))
        if logprobs and self._LOGPROBS_BEFORE_METRICS:
            body["logprobs"] = logprobs
        body.update(_metrics(done, self.started_ns, self.load_ns))
        if logprobs and not self._LOGPROBS_BEFORE_METRICS:
            body["logprobs"] = logprobs
        return body

    def _extra(self, done: Done) -> dict[str, Any]:
        """Fields of the final chunk between ``done_reason`` and the metrics."""
        return {}


class GenerateShape(Shape):
    """``/api/generate``: the text in ``response``; the final chunk has ``context``."""

    _OPEN = b'","response":'
    _CLOSE = b',"done":false}\n'

    def __init__(self, model: str, started_ns: int, load_ns: int, raw: bool) -> None:
        super().__init__(model, started_ns, load_ns)
        self.raw = raw

    def head(self, response: str, thinking: str, done: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "created_at": utc_now(), "response": response}
        if thinking:
            body["thinking"] = thinking
        body["done"] = done
        return body

    def _extra(self, done: Done) -> dict[str, Any]:
        return {"context": list(done.context)} if done.context and not self.raw else {}


class ChatShape(Shape):
    """``/api/chat``: the text in a ``message`` object, and no ``context``."""

    _OPEN = b'","message":{"role":"assistant","content":'
    _CLOSE = b'},"done":false}\n'
    _LOGPROBS_BEFORE_METRICS = True

    def chunk(self, token: Token) -> bytes:
        if not token.tool_calls:
            return super().chunk(token)
        # The chunk that completes a call (Ollama's generic parser): the calls, no text.
        body = self.head(token.response, token.thinking, False, list(token.tool_calls))
        if token.logprobs:
            body["logprobs"] = list(token.logprobs)
        return dumps(body) + b"\n"

    def head(
        self,
        response: str,
        thinking: str,
        done: bool,
        tool_calls: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": response}
        if thinking:
            message["thinking"] = thinking
        if tool_calls:
            message["tool_calls"] = tool_calls
        return {"model": self.model, "created_at": utc_now(), "message": message, "done": done}


def _metrics(done: Done, started_ns: int, load_ns: int) -> dict[str, int]:
    values = {
        "total_duration": time.perf_counter_ns() - started_ns,
        "load_duration": load_ns,
        "prompt_eval_count": done.prompt_eval_count,
        "prompt_eval_duration": done.prompt_eval_duration,
        "eval_count": done.eval_count,
        "eval_duration": done.eval_duration,
    }
    return {key: value for key, value in values.items() if value}  # Go's omitempty


class GenerateRoutes(BaseHandler):
    """The generating endpoints, as methods of the request handler."""

    # -- generate and chat -------------------------------------------------------------------

    def _common_checks(
        self, req: dict[str, Any], card: ModelCard, model: str, endpoint: str
    ) -> None:
        """Ollama's thinking and capability checks (steps 8–9 of the generate handler)."""
        if "thinking" not in card.capabilities and think_enabled(req.get("think")):
            raise HTTPError(400, f"{go_quote(model)} does not support thinking")
        if "completion" not in card.capabilities:
            raise HTTPError(400, f"{go_quote(model)} does not support {endpoint}")
        if req.get("suffix") and "insert" not in card.capabilities:
            raise HTTPError(400, f"{qualified_name(card.name)} does not support insert")
        if req.get("tools") and "tools" not in card.capabilities:
            raise HTTPError(400, f"{qualified_name(card.name)} does not support tools")

    def _options(self, req: dict[str, Any], card: ModelCard) -> dict[str, Any]:
        try:
            requested = validate_options(req.get("options") or {})
            return model_options(card, requested, self.app.default_num_ctx)
        except OptionError as exc:
            raise HTTPError(500, str(exc)) from None

    def _format(self, req: dict[str, Any]) -> tuple[str | dict[str, Any] | None, Fail | None]:
        """The ``format`` to pass on, or the Fail Ollama's runner raises for a bad one.

        Ollama checks ``format`` only when the model starts generating, so the error travels
        like any pre-output model error (a 500; ``application/json`` without charset in a
        stream).
        """
        value = req.get("format")
        if value is None or value == "":
            return None, None
        if value == "json" or isinstance(value, dict):
            return value, None
        raw = raw_field(self._body(), "format")
        text = go_quote((raw or dumps(value)).decode("utf-8", "replace"))
        message = f'invalid format: {text}; expected "json" or a valid JSON Schema object'
        return None, Fail(message)

    def _lookup(self, model: str) -> tuple[Engine, ModelCard]:
        found = self.app._find(model)
        if found is None:
            raise HTTPError(404, f"model '{model}' not found")
        return found

    def _acquire(
        self,
        engine: Engine,
        card: ModelCard,
        options: dict[str, Any],
        keep_alive: int | None,
        shift: bool = True,
    ) -> tuple[LoadedModel, int]:
        """Lease the model (loading it if needed): ``keep_alive`` None leaves a loaded model's
        value as it is (Ollama ≥ 0.1.49)."""
        try:
            lease = self.app.scheduler.acquire(engine, card, options, keep_alive, shift)
        except LoadError as exc:  # a bad GGUF: one line, no traceback
            log.error("loading %s failed: %s", card.name, exc)
            raise HTTPError(500, str(exc)) from None
        except Exception as exc:
            log.exception("loading %s failed", card.name)
            raise HTTPError(500, str(exc) or type(exc).__name__) from None
        return lease, max(1, time.perf_counter_ns() - self.started_ns)

    def _generate(self) -> None:
        req = self._decode(GENERATE_REQUEST)
        if not 0 <= req.get("top_logprobs", 0) <= 20:
            raise HTTPError(400, "top_logprobs must be between 0 and 20")
        model = req.get("model", "")
        engine, card = self._lookup(model)
        prompt = req.get("prompt", "")
        keep_alive = req.get("keep_alive")
        if prompt == "" and keep_alive == 0:
            self.app.scheduler.unload(card.name)
            self._send_json(200, GenerateShape(model, 0, 0, False).head("", "", True) | UNLOAD)
            return
        raw = req.get("raw", False)
        if raw and (req.get("template") or req.get("system") or req.get("context")):
            raise HTTPError(400, "raw mode does not support template, system, or context")
        self._common_checks(req, card, model, "generate")
        options = self._options(req, card)
        lease, load_ns = self._acquire(engine, card, options, keep_alive, req.get("shift", True))
        try:
            if prompt == "":
                self._send_json(200, GenerateShape(model, 0, 0, False).head("", "", True) | LOAD)
                return
            template = req.get("template") or None
            if template and not raw:
                try:
                    parse_template(template)
                except TemplateError as exc:
                    raise HTTPError(500, str(exc)) from None
            fmt, bad_format = self._format(req)
            job = GenerateJob(
                model=model,
                card=card,
                prompt=prompt,
                suffix=req.get("suffix", ""),
                system=req.get("system") or None,
                template=template,
                raw=raw,
                images=tuple(req.get("images", ())),
                format=fmt,
                options=options,
                context=tuple(req.get("context", ())),
                think=req.get("think"),
                truncate=req.get("truncate", True),
                shift=req.get("shift", True),
                top_logprobs=_top_logprobs(req),
                truncation=self.app.truncation,
            )
            shape = GenerateShape(model, self.started_ns, load_ns, raw)
            start = (lambda: iter([bad_format])) if bad_format else (lambda: engine.generate(job))
            self._respond(start, shape, req.get("stream", True))
        finally:
            self.app.scheduler.release(lease)

    def _chat(self) -> None:
        req = self._decode(CHAT_REQUEST)
        if not 0 <= req.get("top_logprobs", 0) <= 20:
            raise HTTPError(400, "top_logprobs must be between 0 and 20")
        model = req.get("model", "")
        if not model:
            raise HTTPError(400, "model is required")
        engine, card = self._lookup(model)
        messages = req.get("messages", [])
        keep_alive = req.get("keep_alive")
        if not messages and keep_alive == 0:
            self.app.scheduler.unload(card.name)
            self._send_json(200, ChatShape(model, 0, 0).head("", "", True) | UNLOAD)
            return
        self._common_checks(req, card, model, "chat")
        options = self._options(req, card)
        lease, load_ns = self._acquire(engine, card, options, keep_alive, req.get("shift", True))
        try:
            if not messages:
                self._send_json(200, ChatShape(model, 0, 0).head("", "", True) | LOAD)
                return
            fmt, bad_format = self._format(req)
            job = ChatJob(
                model=model,
                card=card,
                messages=tuple(messages),
                format=fmt,
                options=options,
                think=req.get("think"),
                tools=tuple(req.get("tools", ())),
                truncate=req.get("truncate", True),
                shift=req.get("shift", True),
                top_logprobs=_top_logprobs(req),
                truncation=self.app.truncation,
            )
            shape = ChatShape(model, self.started_ns, load_ns)
            start = (lambda: iter([bad_format])) if bad_format else (lambda: engine.chat(job))
            self._respond(start, shape, req.get("stream", True))
        finally:
            self.app.scheduler.release(lease)

    def _embed(self) -> None:
        """``/api/embed``: Ollama's order of checks; empty input only loads the model."""
        req = self._decode(EMBED_REQUEST)
        inputs = _embed_inputs(req.get("input"))
        model = req.get("model", "")
        if not model.strip():
            raise HTTPError(404, f"model '{model}' not found")
        found = self.app._find(model)
        if found is None:
            raise HTTPError(404, f"model {go_quote(model)} not found, try pulling it first")
        engine, card = found
        options = self._options(req, card)
        lease, load_ns = self._acquire(engine, card, options, req.get("keep_alive"))
        try:
            if not inputs:
                self._send_json(200, {"model": model, "embeddings": []})
                return
            if self._refuses_embeddings(card):
                raise HTTPError(501, NO_EMBEDDINGS)
            truncate = req.get("truncate", True)
            try:
                vectors, count = _embed_counted(
                    engine, card.base or card.name, inputs, options, truncate
                )
            except PromptTooLong as refused:
                raise HTTPError(400, str(refused)) from None
            except Exception as exc:
                log.exception("embedding with %s failed", card.name)
                raise HTTPError(500, str(exc) or type(exc).__name__) from None
            dimensions = req.get("dimensions", 0)
            body: dict[str, Any] = {
                "model": model,
                "embeddings": [_embedding(vector, dimensions) for vector in vectors],
                "total_duration": time.perf_counter_ns() - self.started_ns,
                "load_duration": load_ns,
                "prompt_eval_count": count,
            }
            omitempty = {key: value for key, value in body.items() if value != 0}
            self._send_json(200, omitempty)
        finally:
            self.app.scheduler.release(lease)

    def _refuses_embeddings(self, card: ModelCard) -> bool:
        """Whether the model is loaded but gives no vectors: since Ollama 0.30 a completion-only
        model runs in llama-server without ``--embeddings``, whatever the engine."""
        return "embedding" not in card.capabilities and not self.app.completion_models_embed

    def _embeddings(self) -> None:
        """The deprecated ``/api/embeddings``: one ``prompt``, one uncut ``embedding``."""
        req = self._decode(EMBEDDINGS_REQUEST)
        model = req.get("model", "")
        if not model:
            raise HTTPError(400, "model is required")
        found = self.app._find(model)
        if found is None:
            raise HTTPError(404, f"model {go_quote(model)} not found, try pulling it first")
        engine, card = found
        options = self._options(req, card)
        lease, _ = self._acquire(engine, card, options, req.get("keep_alive"))
        try:
            prompt = req.get("prompt", "")
            if not prompt:
                self._send_json(200, {"embedding": []})
                return
            if self._refuses_embeddings(card):
                raise HTTPError(500, NO_EMBEDDINGS)  # runner errors are 500s here
            try:
                vectors, _ = _embed_counted(engine, card.base or card.name, [prompt], options, True)
            except Exception as exc:
                log.exception("embedding with %s failed", card.name)
                raise HTTPError(500, str(exc) or type(exc).__name__) from None
            self._send_json(200, {"embedding": vectors[0]})
        finally:
            self.app.scheduler.release(lease)

    def _respond(self, start: Callable[[], Iterator[Event]], shape: Shape, stream: bool) -> None:
        """Run the engine and answer, streamed or as one object; always close the engine."""
        events: Iterator[Event] | None = None
        try:
            try:
                events = start()
            except Exception as exc:
                log.exception("engine failed to start")
                events = iter([Fail(str(exc) or type(exc).__name__)])
            if stream:
                self._stream(events, shape)
            else:
                self._collect(events, shape)
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()  # GeneratorExit inside the engine: it stops and cleans up

    def _events(self, events: Iterator[Event]) -> Iterator[Event]:
        """The engine's events, with disconnect checks and engine crashes turned into Fail."""
        last_check = time.monotonic()
        while True:
            try:
                event = next(events)
            except StopIteration:
                return
            except Exception as exc:
                log.exception("engine failed")
                yield Fail(f"an error was encountered while running the model: {exc}")
                return
            if isinstance(event, Pause):
                self._check_alive(event.seconds)
                last_check = time.monotonic()
                continue
            now = time.monotonic()
            if now - last_check >= _ALIVE_CHECK_EVERY:
                self._check_alive()
                last_check = now
            yield event

    def _stream(self, events: Iterator[Event], shape: Shape) -> None:
        out = ChunkedWriter(self)
        split = 0
        for event in self._events(events):
            if isinstance(event, Token):
                split = event.wire_split
                out.line(shape.chunk(event), split)
            elif isinstance(event, Done):
                out.line(dumps(shape.final(event, "", "")) + b"\n", split)
                break
            elif isinstance(event, Fail):
                if not out.started:  # nothing sent yet: a real HTTP error, as Ollama does
                    self._send_error(event.status, event.message, JSON_NO_CHARSET)
                    return
                out.line(dumps({"error": event.message}) + b"\n", split)
                break
            elif isinstance(event, Drop):
                self._drop()
                return
        out.finish()

    def _collect(self, events: Iterator[Event], shape: Shape) -> None:
        response: list[str] = []
        thinking: list[str] = []
        logprobs: list[dict[str, Any]] = []
        tool_calls: list[dict[str, Any]] = []
        for event in self._events(events):
            if isinstance(event, Token):
                response.append(event.response)
                thinking.append(event.thinking)
                logprobs.extend(event.logprobs)
                tool_calls.extend(event.tool_calls)
            elif isinstance(event, Done):
                text, reasoning = "".join(response), "".join(thinking)
                body = shape.final(event, text, reasoning, logprobs)
                if tool_calls:  # non-streamed chat gathers the calls of every chunk
                    body["message"]["tool_calls"] = tool_calls
                self._send_json(200, body)
                return
            elif isinstance(event, Fail):
                self._send_error(event.status, event.message)
                return
            elif isinstance(event, Drop):
                self._drop()
                return
        # The engine stopped without Done (Ollama's repeated-token abort does this): done false.
        self._send_json(200, shape.head("".join(response), "".join(thinking), False))


def _embed_inputs(value: Any) -> list[str]:
    """Ollama's reading of ``input``: absent, a string (empty: none) or an array of strings."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise HTTPError(400, "invalid input type")


class _CountingEmbedder(Protocol):
    """An engine that also says how many tokens it read (``prompt_eval_count``) and cuts
    over-long inputs (or, ``truncate`` false, raises
    :class:`~ollama_magic.server.context.PromptTooLong`)."""

    def embed_with_count(
        self, name: str, inputs: list[str], options: dict[str, Any], truncate: bool = True
    ) -> tuple[list[list[float]], int]: ...


def _embed_counted(
    engine: Engine, name: str, inputs: list[str], options: dict[str, Any], truncate: bool
) -> tuple[list[list[float]], int]:
    """Vectors and input token count; the count is 0 (left out) if the engine does not say."""
    if hasattr(engine, "embed_with_count"):
        counting = cast(_CountingEmbedder, engine)
        return counting.embed_with_count(name, inputs, options, truncate=truncate)
    return engine.embed(name, inputs, options), 0


def _top_logprobs(req: dict[str, Any]) -> int | None:
    """What the engine should return: None without ``logprobs``, else how many alternatives."""
    return int(req.get("top_logprobs", 0)) if req.get("logprobs") else None


def _embedding(vector: list[float], dimensions: int) -> list[float]:
    """One vector as Ollama sends it: cut to ``dimensions`` (then L2-normalised again) if that
    is positive and shorter, and float32 values."""
    if 0 < dimensions < len(vector):
        vector = vector[:dimensions]
        norm = math.sqrt(sum(x * x for x in vector)) or 1.0
        vector = [x / norm for x in vector]
    return [float32(x) for x in vector]
