"""One-line, actionable messages for every error a user can meet. Pure: no I/O."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from .errors import (
    ConnectionFailed,
    ModelNotFound,
    OllamaError,
    ReadTimedOut,
    ResponseError,
    StreamError,
    StreamTruncated,
)


def close_matches(name: str, installed: Sequence[str], n: int = 3) -> list[str]:
    """Installed names that look like ``name``, with or without their ``:tag``.

    >>> close_matches("lama3", ["llama3:latest", "qwen3:8b", "llama3.2:1b"])
    ['llama3:latest', 'llama3.2:1b']
    """
    base = {full.split(":")[0]: full for full in installed}
    found = difflib.get_close_matches(name.split(":")[0], list(base), n=n, cutoff=0.6)
    return [base[b] for b in found]


def describe(
    error: OllamaError,
    *,
    installed: Sequence[str] = (),
    kept: str | None = "",
) -> str:
    """The message for ``error``.

    ``kept`` says where the partial answer went (e.g. ``" and in r"``); ``None`` when nothing
    had arrived.
    """
    partial = f" The partial answer is kept above{kept}." if kept is not None else ""
    if isinstance(error, ConnectionFailed):
        return (
            f"Cannot reach Ollama at {error.url} ({error.detail or 'no answer'}). Start it with "
            "`ollama serve`, or point OLLAMA_HOST (or --host, or %config OllamaMagics.host) "
            "at a running server."
        )
    if isinstance(error, ModelNotFound):
        text = (
            f"Model {error.model!r} is not installed on {error.url}. "
            f"Get it with `%ollama pull {error.model}`"
        )
        near = close_matches(error.model, installed)
        if near:
            text += f", or use one you have: {', '.join(near)}"
        return text + "."
    if isinstance(error, ReadTimedOut):
        return (
            f"Ollama at {error.url} sent nothing for {error.seconds:g} s. Raise --timeout "
            "(or %config OllamaMagics.timeout) for slow models." + partial
        )
    if isinstance(error, ResponseError):
        return f"Ollama answered {error.status}: {error.message}"
    if isinstance(error, StreamError):
        return f"The model failed mid-answer: {error.message}." + partial
    if isinstance(error, StreamTruncated):
        return "The connection closed before the answer was finished." + partial
    return str(error)
