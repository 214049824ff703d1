"""The contract between the HTTP layer of the local server and the engines behind it.

The HTTP layer (``app.py``) owns the wire: request validation in Ollama's order, status codes,
error bodies, NDJSON framing, timestamps, ``keep_alive`` timers and ``/api/ps`` state. An engine
owns the models: it lists them and turns a validated job into a stream of events. Two engines
exist: scripted deterministic models (``scripted.py``) and real GGUF models through llama.cpp's
server (``llama.py``). This module imports nothing but the standard library.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, Union

from .context import LATEST, Truncation


@dataclass(frozen=True)
class ModelCard:
    """What ``/api/tags``, ``/api/show`` and ``/api/ps`` say about one model."""

    name: str  # full name with tag, e.g. "echo:latest"
    family: str
    parameter_size: str  # e.g. "135M"
    quantization_level: str  # e.g. "Q8_0"
    size: int  # bytes on disk
    digest: str  # bare 64-hex
    capabilities: tuple[str, ...] = ("completion",)
    context_length: int = 4096
    template: str = "{{ .Prompt }}"
    parameters: str = ""  # Modelfile PARAMETER lines, "key value" per line
    system: str = ""
    license: str = ""
    format: str = "gguf"
    modified_at: datetime | None = None
    model_info: dict[str, Any] = field(default_factory=dict)
    base: str = ""  # for copies and created models: the engine's own model they run on
    parent_model: str = ""  # for created models: the ``from`` model, as details show it
    messages: tuple[dict[str, Any], ...] = ()  # a created model's MESSAGEs, before each chat
    embedding_length: int = 0  # trained width (``<arch>.embedding_length``), as /api/tags shows
    tensors: tuple[dict[str, Any], ...] = ()  # GGUF tensor table for /api/show: name, type, shape


@dataclass(frozen=True)
class GenerateJob:
    """A validated ``/api/generate`` request (never a load or unload request)."""

    model: str  # the name as the client sent it
    card: ModelCard
    prompt: str
    suffix: str = ""
    system: str | None = None
    template: str | None = None
    raw: bool = False
    images: tuple[bytes, ...] = ()
    format: str | dict[str, Any] | None = None  # None, "json" or a JSON schema
    options: dict[str, Any] = field(default_factory=dict)  # validated, null values dropped
    context: tuple[int, ...] = ()
    think: bool | str | None = None  # None when absent
    truncate: bool = True  # cut an over-long prompt (keeping num_keep tokens) instead of a 400
    shift: bool = True  # a full window drops half its middle and goes on, as Ollama's runner does
    top_logprobs: int | None = None  # None: no logprobs; else alternatives per token (0-20)
    truncation: Truncation = LATEST  # which Ollama era's cut (context.py)


@dataclass(frozen=True)
class ChatJob:
    """A validated ``/api/chat`` request with at least one message."""

    model: str
    card: ModelCard
    messages: tuple[dict[str, Any], ...]
    format: str | dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    think: bool | str | None = None
    tools: tuple[dict[str, Any], ...] = ()
    truncate: bool = True
    shift: bool = True
    top_logprobs: int | None = None
    truncation: Truncation = LATEST


@dataclass(frozen=True)
class Token:
    """One generated piece: answer text and/or reasoning text.

    ``wire_split`` > 0 asks the HTTP layer to write this chunk's NDJSON line in pieces of that many
    bytes, flushing between them, so clients see reads that cut through lines and UTF-8 characters.
    ``logprobs`` (jobs with ``top_logprobs`` set) are the chunk's tokens in Ollama's wire shape,
    ``{"token", "logprob", "bytes", "top_logprobs"}``; a chunk may carry them with no text.
    ``tool_calls`` (chat) are Ollama's ``{"id", "function": {"index", "name", "arguments"}}``.
    """

    response: str = ""
    thinking: str = ""
    wire_split: int = 0
    logprobs: tuple[dict[str, Any], ...] = ()
    tool_calls: tuple[dict[str, Any], ...] = ()  # chat: calls completed by this chunk (§2.11)


@dataclass(frozen=True)
class Pause:
    """Sleep before the next event (slow streams)."""

    seconds: float


@dataclass(frozen=True)
class Fail:
    """A model error.

    Before any output: an HTTP error with ``status``; after: an in-band error line.
    """

    message: str
    status: int = 500


NO_EMBEDDINGS = "This server does not support embeddings. Start it with `--embeddings`"
"""llama-server's answer (HTTP 501) when asked for vectors without ``--embeddings``: what Ollama
≥ 0.30 passes on for a completion-only model on ``/api/embed`` (and as a 500 on
``/api/embeddings``)."""


class LoadError(Exception):
    """A model that cannot be loaded; ``str()`` is one line naming the file and the reason."""


@dataclass(frozen=True)
class Drop:
    """Close the connection at once, without a final chunk or the chunked terminator."""


@dataclass(frozen=True)
class Done:
    """The end of a generation.

    The HTTP layer adds model, created_at and the total/load durations.
    """

    done_reason: str = "stop"  # "stop" or "length"
    prompt_eval_count: int = 0
    prompt_eval_duration: int = 0  # nanoseconds
    eval_count: int = 0
    eval_duration: int = 0  # nanoseconds
    context: tuple[int, ...] | None = None  # generate only; None when raw


Event = Union[Token, Pause, Fail, Drop, Done]  # noqa: UP007 (a runtime alias, kept as written)


class Engine(Protocol):
    """A source of models for the local server.

    ``load``, ``unload`` and ``embed`` get the engine's own model name; a job's card may be a
    copy or a created model, so engines run ``card.base or card.name``. An engine may also offer
    ``library() -> list[ModelCard]``: models that ``/api/pull`` can install but that are not
    installed at first.

    ``embed`` is only asked for models with the ``embedding`` capability on a server that plays
    Ollama ≥ 0.30: the server answers llama-server's 501 (:data:`NO_EMBEDDINGS`) for the others,
    as Ollama does; before 0.30 Ollama gave vectors from any model, and so does an older server.
    """

    def models(self) -> list[ModelCard]:
        """Every model this engine serves, newest first."""
        ...

    def load(self, name: str, options: dict[str, Any]) -> None:
        """Make the model ready (called before the first job and for load requests)."""
        ...

    def unload(self, name: str) -> None:
        """Free the model (called when keep_alive expires or on an unload request)."""
        ...

    def generate(self, job: GenerateJob) -> Iterator[Event]:
        """Stream the answer to one generate job; the last event is Done, Fail or Drop."""
        ...

    def chat(self, job: ChatJob) -> Iterator[Event]:
        """Stream the answer to one chat job; the last event is Done, Fail or Drop."""
        ...

    def embed(self, name: str, inputs: list[str], options: dict[str, Any]) -> list[list[float]]:
        """L2-normalised embeddings, one per input."""
        ...
