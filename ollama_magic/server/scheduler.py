"""Which models are loaded and until when: Ollama's scheduler, reduced to what ``/api/ps`` shows.

A request leases a model (loading it through its engine if needed, or reloading it when a
load-time option such as ``num_ctx`` changed or the model was replaced); rows are keyed by the
model's own name, while engines load ``card.base`` for copies and created models, once for all
the names that share it. When the last lease ends, the model expires
``keep_alive`` later (0: at once; :data:`~ollama_magic.common.gotime.MAX_DURATION`: never). A
timer thread unloads expired models, and every lease also checks lazily. Engines' ``load`` and
``unload`` run under one lock, so an unload never races a load of the same model.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..common.gotime import MAX_DURATION, SECOND
from .context import DEFAULT_NUM_CTX
from .decoding import LOAD_TIME_OPTIONS, keep_alive_ns, parse_parameters, validate_options
from .engine import Engine, ModelCard

log = logging.getLogger(__name__)

DEFAULT_KEEP_ALIVE = 5 * 60 * SECOND


def default_keep_alive(env: str | None = None) -> int:
    """``OLLAMA_KEEP_ALIVE`` as Ollama reads it (a duration, or bare seconds), else 5 minutes."""
    value = (os.environ.get("OLLAMA_KEEP_ALIVE", "") if env is None else env).strip()
    if not value:
        return DEFAULT_KEEP_ALIVE
    try:
        return keep_alive_ns(int(value))
    except ValueError:
        pass
    try:
        return keep_alive_ns(value)
    except ValueError:
        log.warning("invalid OLLAMA_KEEP_ALIVE %r: using 5m", value)
        return DEFAULT_KEEP_ALIVE

_RUNNER_DEFAULTS: dict[str, Any] = {
    "num_ctx": DEFAULT_NUM_CTX,
    "num_batch": 512,
    "num_gpu": -1,
    "main_gpu": 0,
    "use_mmap": None,
    "num_thread": 0,
}


def model_options(
    card: ModelCard, request_options: dict[str, Any], default_num_ctx: int = DEFAULT_NUM_CTX
) -> dict[str, Any]:
    """The options a job runs with: Modelfile parameters, overridden by the request's.

    A parameter of the wrong type (a created model's ``{"num_predict": "3"}``) raises
    :class:`~ollama_magic.server.decoding.OptionError`, as Ollama's scheduler does.

    ``num_ctx`` is always set, clamped as Ollama's scheduler does: at least 4 (2048 for vision
    models), at most the model's trained context length. ``default_num_ctx`` is the server's
    (``OLLAMA_CONTEXT_LENGTH``, else 4096).
    """
    options = {**validate_options(parse_parameters(card.parameters)), **request_options}
    num_ctx = options.get("num_ctx", default_num_ctx)
    num_ctx = max(num_ctx, 2048 if "vision" in card.capabilities else 4)
    if card.context_length > 0:
        num_ctx = min(num_ctx, card.context_length)
    options["num_ctx"] = num_ctx
    return options


def _runner_key(options: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(options.get(key, _RUNNER_DEFAULTS[key]) for key in LOAD_TIME_OPTIONS)


@dataclass
class LoadedModel:
    """One model in memory, as ``/api/ps`` lists it."""

    engine: Engine
    card: ModelCard
    runner: tuple[Any, ...]
    num_ctx: int
    keep_alive_ns: int
    leases: int = 0
    expires_ns: int | None = None  # wall clock; None until the first request finished
    deadline: float = field(default=math.inf)  # monotonic seconds


class Scheduler:
    """Loaded models with reference counts and keep-alive expiry."""

    def __init__(self, default_keep_alive_ns: int = DEFAULT_KEEP_ALIVE) -> None:
        self.default_keep_alive_ns = default_keep_alive_ns
        self._cond = threading.Condition(threading.RLock())
        self._loaded: dict[str, LoadedModel] = {}
        self._closed = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the timer thread that unloads expired models."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._expire_forever, name="ollama-magic-keep-alive", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        """Stop the timer and unload everything."""
        with self._cond:
            self._closed = True
            for entry in list(self._loaded.values()):
                self._unload_locked(entry)
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def acquire(
        self,
        engine: Engine,
        card: ModelCard,
        options: dict[str, Any],
        keep_alive_ns: int | None,
        shift: bool = True,
    ) -> LoadedModel:
        """Lease ``card``'s model for one request, loading or reloading it first if needed.

        ``keep_alive_ns`` None (the request had none) keeps a loaded model's stored value, as
        Ollama does, so a model loaded "forever" stays; a fresh load then takes the default.
        A different ``shift`` reloads, like a load-time option. The engine's ``load`` error
        propagates (the request then fails with a 500).
        """
        runner = (*_runner_key(options), shift)
        with self._cond:
            self._expire_locked(time.monotonic())
            entry = self._loaded.get(card.name)
            changed = entry is not None and (
                entry.runner != runner or entry.card.digest != card.digest
            )
            if entry is not None and entry.leases == 0 and changed:
                self._unload_locked(entry)
                entry = None
            if entry is None:
                engine.load(card.base or card.name, options)
                stored = self.default_keep_alive_ns if keep_alive_ns is None else keep_alive_ns
                entry = LoadedModel(engine, card, runner, options["num_ctx"], stored)
                self._loaded[card.name] = entry
            entry.leases += 1
            if keep_alive_ns is not None:
                entry.keep_alive_ns = keep_alive_ns
            return entry

    def release(self, entry: LoadedModel) -> None:
        """End a lease; the last one arms the keep-alive timer (or unloads at once for 0)."""
        with self._cond:
            entry.leases -= 1
            if entry.leases > 0 or self._loaded.get(entry.card.name) is not entry:
                return
            if entry.keep_alive_ns <= 0:
                self._unload_locked(entry)
                return
            entry.expires_ns = time.time_ns() + entry.keep_alive_ns
            seconds = entry.keep_alive_ns / SECOND
            forever = entry.keep_alive_ns >= MAX_DURATION
            entry.deadline = math.inf if forever else time.monotonic() + seconds
            self._cond.notify_all()

    def unload(self, name: str) -> None:
        """Unload now, or as soon as the requests using the model finish (``keep_alive: 0``)."""
        with self._cond:
            entry = self._loaded.get(name)
            if entry is None:
                return
            if entry.leases == 0:
                self._unload_locked(entry)
            else:
                entry.keep_alive_ns = 0

    def loaded(self) -> list[tuple[LoadedModel, int]]:
        """Loaded models with their ``expires_at`` (wall-clock ns), latest expiry first."""
        with self._cond:
            self._expire_locked(time.monotonic())
            now = time.time_ns()
            rows = [
                (entry, now + entry.keep_alive_ns if entry.expires_ns is None else entry.expires_ns)
                for entry in self._loaded.values()
            ]
        return sorted(rows, key=lambda row: row[1], reverse=True)

    def _unload_locked(self, entry: LoadedModel) -> None:
        if self._loaded.get(entry.card.name) is entry:
            del self._loaded[entry.card.name]
        base = entry.card.base or entry.card.name
        for other in self._loaded.values():
            if other.engine is entry.engine and (other.card.base or other.card.name) == base:
                return  # another name (a copy) still runs on the engine's model
        try:
            entry.engine.unload(base)
        except Exception:  # an engine bug must not take the scheduler down
            log.exception("unloading %s failed", entry.card.name)

    def _expire_locked(self, now: float) -> None:
        for entry in list(self._loaded.values()):
            if entry.leases == 0 and entry.deadline <= now:
                self._unload_locked(entry)

    def _expire_forever(self) -> None:
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                self._expire_locked(now)
                deadlines = [e.deadline for e in self._loaded.values() if e.leases == 0]
                wait = min(deadlines, default=math.inf) - now
                self._cond.wait(timeout=min(max(wait, 0.001), 3600.0))
