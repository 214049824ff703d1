"""A local, Ollama-compatible HTTP server: deterministic scripted models, stdlib only.

It speaks Ollama's native API (``/api/generate``, ``/api/chat``, ``/api/embed``, ``/api/tags``,
``/api/show``, ``/api/ps``, ``/api/version``) byte for byte where it can: the same NDJSON
framing, status codes, error texts and order of checks. Tests, CI notebooks and people without
Ollama point a client at it instead of a real server.

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
``dropper``) are described in :mod:`ollama_magic.server.scripted`; more engines can be passed
as ``OllamaServer(engines=[...])`` (see :class:`~ollama_magic.server.engine.Engine`).
"""

from __future__ import annotations

from .app import OllamaServer, RecordedRequest, serve
from .scripted import ScriptedEngine

__all__ = ["OllamaServer", "RecordedRequest", "ScriptedEngine", "serve"]
