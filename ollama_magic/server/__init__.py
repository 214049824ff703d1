"""A local, Ollama-compatible HTTP server: deterministic scripted models, stdlib only.

It behaves as Ollama 0.32.15 and speaks its native API (``/api/generate``, ``/api/chat``,
``/api/embed``, ``/api/embeddings``, ``/api/tags``, ``/api/show``, ``/api/ps``, ``/api/version``,
and ``/api/pull``, ``/api/push``, ``/api/create``, ``/api/copy``, ``/api/delete`` with simulated
transfers) and its OpenAI-compatible ``/v1`` routes byte for byte where it can: the same NDJSON
and SSE framing, status codes, error texts and order of checks. ``OllamaServer(version="0.12.6")``
brings back that era's prompt truncation, and vectors from SmolLM2 the chat model (since 0.30
Ollama answers 501 for a chat model: embed with ``smollm2-embed:135m``). Tests, CI notebooks
and people without Ollama point a client at it instead of a real server.

In Python (port 0 picks a free port; the server runs on a daemon thread)::

    from ollama_magic.server import OllamaServer

    with OllamaServer() as server:
        print(server.url)               # e.g. http://127.0.0.1:54321
        ...                             # use it as OLLAMA_HOST
        print(server.requests[-1].json) # what the client sent

From a shell: ``python -m ollama_magic.server --port 11434`` (or ``ollama-magic-server``); add
``--model smollm2`` for a real model through llama.cpp, or ``--gguf PATH --name NAME`` for any
GGUF file (see ``--help``). It prints its URL, then the model names.

The models (``echo``, ``reasoner``, ``thinker``, ``chinese``, ``slow``, ``lorem``, ``broken``,
``dropper``, and ``haiku`` and ``embedder`` to pull) are described in
:mod:`ollama_magic.server.scripted`; more engines can be passed as
``OllamaServer(engines=[...])`` (see :class:`~ollama_magic.server.engine.Engine`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["OllamaServer", "RecordedRequest", "ScriptedEngine", "serve"]

if TYPE_CHECKING:
    from .app import OllamaServer, RecordedRequest, serve
    from .scripted import ScriptedEngine


def __getattr__(name: str) -> Any:
    """Import the server on first use: ``%load_ext`` must not pay for it."""
    if name == "ScriptedEngine":
        from .scripted import ScriptedEngine

        return ScriptedEngine
    if name in ("OllamaServer", "RecordedRequest", "serve"):
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
