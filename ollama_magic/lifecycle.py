"""Model lifecycle requests: list, ps, show, load, unload, copy, delete, embed, the progress
streams of pull, push and create, and what a generation asks first (can the model see images,
how large is its context window).

Transport plus data, no display: each function sends what the ``ollama`` CLI sends for the same
command and returns plain objects; streamed progress goes to a :class:`ProgressView` the caller
chooses. Errors stay typed (:mod:`ollama_magic.errors`); the magic turns them into one line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .errors import ConnectionFailed, ModelNotFound, OllamaError, StreamTruncated, UnexpectedReply
from .fields import count, text, texts, vectors
from .messages import lacking
from .present import LoadedList, ModelInfo, ModelList
from .progress import Progress

if TYPE_CHECKING:  # the client imports requests: keep ``%load_ext`` fast
    from .client import OllamaClient, Stream

Clock = Callable[[], float]


class ProgressView(Protocol):
    """Shows a :class:`Progress` while it changes, then gets out of the way."""

    def update(self, progress: Progress, now: float) -> None: ...

    def close(self, progress: Progress, now: float) -> None: ...


def list_models(client: OllamaClient) -> ModelList:
    return ModelList(client.tags())


def installed(client: OllamaClient) -> list[dict[str, Any]]:
    """``/api/tags`` or nothing: for the names a message suggests, which must not fail itself."""
    try:
        return client.tags()
    except OllamaError:
        return []


def loaded(client: OllamaClient) -> LoadedList:
    return LoadedList(client.listing("/api/ps"))


def show(client: OllamaClient, name: str) -> ModelInfo:
    return ModelInfo(name, client.object("POST", "/api/show", {"model": name}))


def capabilities(client: OllamaClient, name: str) -> list[str] | None:
    """The model's capabilities, or ``None`` when the server does not say (old servers)."""
    try:
        caps = show(client, name).info.get("capabilities")
    except OllamaError:
        return None
    return texts(caps) if isinstance(caps, list) else None


def images_unsupported(client: OllamaClient, body: dict[str, Any]) -> str | None:
    """One line when a request sends images to a model that says it cannot see (else ``None``:
    no images, a vision model, or a server that does not list capabilities)."""
    if not body.get("images") and not any(m.get("images") for m in body.get("messages", [])):
        return None
    model = str(body["model"])
    caps = capabilities(client, model)
    if caps is None or "vision" in caps:
        return None
    return lacking(model, "vision", installed(client))


@dataclass
class LoadReport:
    """What ``load`` did: how long it took and the ``/api/ps`` row afterwards (if listed)."""

    model: str
    seconds: float
    row: dict[str, Any] | None


def load(
    client: OllamaClient,
    name: str,
    keep_alive: int | float | str | None = None,
    num_ctx: int | None = None,
    clock: Clock = time.perf_counter,
) -> LoadReport:
    """Ollama's load request: ``/api/generate`` with no prompt (the reply has no metrics)."""
    body: dict[str, Any] = {"model": name}
    if keep_alive is not None:
        body["keep_alive"] = keep_alive
    if num_ctx is not None:
        body["options"] = {"num_ctx": num_ctx}
    started = clock()
    client.call("POST", "/api/generate", body)
    seconds = clock() - started
    return LoadReport(name, seconds, find_loaded(client, name))


def unload(client: OllamaClient, name: str) -> dict[str, Any] | None:
    """``ollama stop``: ``keep_alive: 0`` with no prompt. Returns the model's ps row before."""
    row = find_loaded(client, name)
    client.call("POST", "/api/generate", {"model": name, "keep_alive": 0})
    return row


def find_loaded(client: OllamaClient, name: str) -> dict[str, Any] | None:
    """The model's ``/api/ps`` row, or ``None`` when it is not loaded."""
    wanted = {name, f"{name}:latest"}
    for row in loaded(client).models:
        if text(row.get("name")) in wanted or text(row.get("model")) in wanted:
            return row
    return None


def context_window(client: OllamaClient, body: dict[str, Any]) -> int | None:
    """The context window the model runs with: ``/api/ps`` knows it, else the request."""
    try:
        row = find_loaded(client, text(body.get("model")))
    except OllamaError:
        row = None
    if row and count(row.get("context_length")):
        return count(row.get("context_length"))
    return count((body.get("options") or {}).get("num_ctx"))


def copy(client: OllamaClient, source: str, destination: str) -> None:
    client.call("POST", "/api/copy", {"source": source, "destination": destination})


def delete(client: OllamaClient, name: str) -> None:
    client.call("DELETE", "/api/delete", {"model": name})


@dataclass
class Embedding:
    """What ``/api/embed`` answered, checked: equally long vectors of numbers."""

    model: str
    vectors: list[list[float]]
    tokens: int | None = None

    @property
    def dimensions(self) -> int:
        return len(self.vectors[0]) if self.vectors else 0


def embed(
    client: OllamaClient,
    model: str,
    inputs: str | list[str],
    *,
    dimensions: int | None = None,
    keep_alive: int | float | str | None = None,
) -> Embedding:
    """``/api/embed``; ``embeddings`` that are not vectors mean the server is not Ollama."""
    body: dict[str, Any] = {"model": model, "input": inputs}
    if dimensions is not None:
        body["dimensions"] = dimensions
    if keep_alive is not None:
        body["keep_alive"] = keep_alive
    answer = client.object("POST", "/api/embed", body)
    raw = answer.get("embeddings")
    found = [] if raw is None else vectors(raw)
    if found is None:
        raise UnexpectedReply("'embeddings' (not a list of vectors)", client.base_url)
    tokens = count(answer.get("prompt_eval_count"))
    return Embedding(text(answer.get("model")) or model, found, tokens)


@dataclass
class Transfer:
    """How a pull, push or create ended: ``progress`` holds everything seen so far."""

    progress: Progress
    error: OllamaError | None = None
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and not self.interrupted and self.progress.succeeded


def transfer(
    client: OllamaClient,
    path: str,
    body: dict[str, Any],
    progress: Progress,
    view: ProgressView,
    clock: Clock = time.monotonic,
) -> Transfer:
    """Stream a pull, push or create into ``view``; Ctrl-C closes the stream at once."""
    outcome = Transfer(progress)
    stream: Stream | None = None
    try:
        stream = client.stream(path, {**body, "stream": True})
        for item in stream:
            now = clock()
            progress.feed(item, now)
            view.update(progress, now)
        if not progress.succeeded:
            raise StreamTruncated("the server closed the stream before 'success'")
    except KeyboardInterrupt:
        outcome.interrupted = True
    except OllamaError as exc:
        outcome.error = _missing_model(exc, progress, client.base_url)
    finally:
        if stream is not None:
            stream.close()
        view.close(progress, clock())
    return outcome


def _missing_model(error: OllamaError, progress: Progress, url: str) -> OllamaError:
    """A push of a model the server lacks fails with a plain error; only the stream's status
    line says why. That case is the typed error for a missing model, as other commands get."""
    if (
        progress.action != "push"
        or "couldn't retrieve manifest" not in progress.statuses
        or isinstance(error, (ConnectionFailed, ModelNotFound))
    ):
        return error
    detail = (getattr(error, "message", None) or str(error)).rstrip(".")
    return ModelNotFound(progress.name, detail, url)
