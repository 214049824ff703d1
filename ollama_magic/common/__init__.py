"""Helpers both halves of the package use: the magic (client) and the local server.

Nothing here imports :mod:`ollama_magic.server` or the client modules (``magics``, ``args``,
``session``...), so either side can import it without pulling in the other:

* :mod:`.gotime` – Go's ``time.ParseDuration`` and RFC 3339 timestamps (``keep_alive``);
* :mod:`.names` – model references parsed and validated as Ollama does (``echo`` →
  ``registry.ollama.ai/library/echo:latest``);
* :mod:`.goquote` – Go's ``%q`` quoting, as Ollama's error texts use it;
* :mod:`.thinking` – splitting ``<think>…</think>`` from an answer, and :func:`held_suffix`;
* :mod:`.stops` – cutting streamed text at ``stop`` strings.

All are pure (no I/O) and standard library only.
"""
