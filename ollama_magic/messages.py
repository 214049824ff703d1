"""One-line, actionable messages for every error a user can meet. Pure: no I/O."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import (
    ConnectionFailed,
    ModelNotFound,
    OllamaError,
    ReadTimedOut,
    ResponseError,
    StreamError,
    StreamTruncated,
    UnexpectedReply,
)
from .fields import text, texts
from .result import INTERRUPTED, GenerationResult


def close_matches(name: str, installed: Sequence[str], n: int = 3) -> list[str]:
    """Installed names that look like ``name``, with or without their ``:tag``.

    >>> close_matches("lama3", ["llama3:latest", "qwen3:8b", "llama3.2:1b"])
    ['llama3:latest', 'llama3.2:1b']
    """
    base = {full.split(":")[0]: full for full in installed}
    found = difflib.get_close_matches(name.split(":")[0], list(base), n=n, cutoff=0.6)
    return [base[b] for b in found]


#: What a missing capability stops, in words, and the command that helps instead.
CAPABILITY_WORDS = {
    "thinking": ("cannot reason on request", "drop --think"),
    "vision": ("cannot see images", "drop --image"),
    "insert": ("cannot fill in the middle", "drop --suffix"),
    "completion": ("cannot generate text (it is an embedding model)", "use %ollama embed"),
    "tools": ("cannot call tools", "drop --tools"),
}

_UNSUPPORTED = re.compile(r"does not support (thinking|insert|generate|tools|vision)")


def lacking(
    model: str,
    capability: str,
    models: Sequence[Mapping[str, Any]] = (),
    advice: Mapping[str, str] | None = None,
) -> str:
    """One line for a model without ``capability``, naming installed models that have it.

    ``advice`` says what to do instead in other words than the magic's flags (an app's own
    controls), by capability.

    >>> print(lacking("echo", "thinking", [{"name": "thinker", "capabilities": ["thinking"]}]))
    ... # doctest: +NORMALIZE_WHITESPACE
    echo cannot reason on request: it lacks the 'thinking' capability (see %ollama show echo).
    Drop --think, or use a model that has it: thinker.
    """
    words, instead = CAPABILITY_WORDS.get(capability, (f"lacks {capability}", "drop the flag"))
    instead = (advice or {}).get(capability, instead)
    with_it = [text(m.get("name")) for m in models if capability in texts(m.get("capabilities"))]
    with_it = [name for name in with_it if name][:3]
    said = (
        f"{model} {words}: it lacks the {capability!r} capability (see %ollama show {model}). "
        f"{instead[0].upper()}{instead[1:]}"
    )
    if with_it:
        said += f", or use a model that has it: {', '.join(with_it)}"
    return said + "."


#: The embedding models people pull for Ollama, smallest first after the usual one.
EMBEDDING_MODELS = ("all-minilm", "nomic-embed-text", "embeddinggemma", "mxbai-embed-large")

_NO_EMBEDDINGS = "does not support embeddings"  # llama-server's 501, which Ollama passes on


def gives_no_vectors(error: OllamaError) -> bool:
    """Whether ``error`` is Ollama ≥ 0.30 refusing to embed with a model that is no embedding
    model (llama-server's 501 on ``/api/embed``, a 500 on ``/api/embeddings``)."""
    return isinstance(error, ResponseError) and _NO_EMBEDDINGS in error.message


def no_vectors(model: str, models: Sequence[Mapping[str, Any]] = ()) -> str:
    """One line for a chat model asked for vectors: the installed embedding models (from
    ``/api/tags`` entries, which say so since 0.30), else which ones to pull.

    >>> print(no_vectors("llama3.2"))  # doctest: +NORMALIZE_WHITESPACE
    llama3.2 gives no vectors: since 0.30 Ollama embeds only with embedding models. Pull one
    with `%ollama pull all-minilm` (or nomic-embed-text, embeddinggemma, mxbai-embed-large) and
    embed with it.
    >>> print(no_vectors("llama3.2", [{"name": "nomic-embed-text:latest",
    ...                                 "capabilities": ["embedding"]}]))
    ... # doctest: +NORMALIZE_WHITESPACE
    llama3.2 gives no vectors: since 0.30 Ollama embeds only with embedding models. Embed with
    one you have: nomic-embed-text:latest.
    """
    said = (
        f"{model or 'This model'} gives no vectors: since 0.30 Ollama embeds only with embedding "
        "models."
    )
    have = [text(m.get("name")) for m in models if "embedding" in texts(m.get("capabilities"))]
    have = [name for name in have if name][:3]
    if have:
        return f"{said} Embed with one you have: {', '.join(have)}."
    first, *others = EMBEDDING_MODELS
    pull = f"`%ollama pull {first}` (or {', '.join(others)})"
    return f"{said} Pull one with {pull} and embed with it."


def unsupported_capability(error: OllamaError) -> str | None:
    """The capability a 400 ``... does not support X`` names, if that is what ``error`` is."""
    if not isinstance(error, ResponseError) or error.status != 400:
        return None
    match = _UNSUPPORTED.search(error.message)
    if match is None:
        return None
    return "completion" if match.group(1) == "generate" else match.group(1)


def describe(
    error: OllamaError,
    *,
    kept: str | None = None,
    models: Sequence[Mapping[str, Any]] = (),
    model: str = "",
    advice: Mapping[str, str] | None = None,
) -> str:
    """The message for ``error``.

    ``kept`` says where a partial answer went (``""``: above; ``" and in r"``: above and in
    ``r``); ``None`` (the default: a command, not a generation) says nothing about one.
    ``models`` (``/api/tags`` entries) lets a missing model or a capability error suggest
    installed ones; ``advice`` is :func:`lacking`'s.
    """
    capability = unsupported_capability(error)
    if capability and model:
        return lacking(model, capability, models, advice)
    if gives_no_vectors(error):
        return no_vectors(model, models)
    partial = f" The partial answer is kept above{kept}." if kept is not None else ""
    if isinstance(error, ConnectionFailed):
        return (
            f"Cannot reach Ollama at {error.url} ({error.detail or 'no answer'}). Start it with "
            "`ollama serve`, or point OLLAMA_HOST (or --host, or %config OllamaMagics.host) "
            "at a running server."
        )
    if isinstance(error, ModelNotFound):
        return not_installed(error.model, error.url, [text(m.get("name")) for m in models])
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
    if isinstance(error, UnexpectedReply):
        where = error.url or "the server"
        return (
            f"The server sent an unexpected {error.what}; is {where} an Ollama server? Point "
            "--host, %config OllamaMagics.host or OLLAMA_HOST at one." + partial
        )
    return str(error)


def not_installed(model: str, url: str, installed: Sequence[str], *, pull: bool = True) -> str:
    """A model the server lacks: how to get it, and the installed names closest to it.

    >>> print(not_installed("lama3", "http://h:1", ["llama3:latest"]))
    ... # doctest: +NORMALIZE_WHITESPACE
    Model 'lama3' is not installed on http://h:1. Get it with `%ollama pull lama3`,
    or use one you have: llama3:latest.
    >>> not_installed("lama3", "http://h:1", ["llama3:latest"], pull=False)
    "Model 'lama3' is not installed on http://h:1. Did you mean llama3:latest?"
    """
    text = f"Model {model!r} is not installed on {url}."
    near = ", ".join(close_matches(model, installed))
    if not pull:
        return text + (f" Did you mean {near}?" if near else "")
    text += f" Get it with `%ollama pull {model}`"
    return text + (f", or use one you have: {near}." if near else ".")


def outcome(
    result: GenerationResult,
    error: OllamaError | None,
    installed: Callable[[], Sequence[Mapping[str, Any]]],
    *,
    kept: str = "",
    stopped: str = "Interrupted",
    advice: Mapping[str, str] | None = None,
) -> str | None:
    """What to tell the user after a generation, or ``None`` when it went well.

    One wording for the magic and the apps: ``stopped`` names how it was cut short
    (``Interrupted`` by Ctrl-C, ``Stopped`` by a button), ``kept`` where the partial answer also
    went. ``installed`` (the ``/api/tags`` entries) is only asked for when the message names
    installed models (a missing model, a missing capability).

    A stop by the user is no failure: under a partial answer its footer says so, and there is
    nothing to add; with nothing shown, one quiet line says the model had not answered yet.
    (The magics then end the cell with :func:`interrupted`, so that Run All stops there.)

    >>> outcome(GenerationResult("m", answer="Half an", done_reason=INTERRUPTED), None, list)
    >>> outcome(GenerationResult("m", done_reason=INTERRUPTED), None, list, stopped="Stopped")
    'Stopped before the model sent anything.'
    """
    has_partial = bool(result.answer or result.thinking)
    if result.done_reason == INTERRUPTED:
        return None if has_partial else f"{stopped} before the model sent anything."
    if error is None:
        return None
    wants_models = isinstance(error, ModelNotFound) or unsupported_capability(error)
    return describe(
        error,
        kept=kept if has_partial else None,
        models=installed() if wants_models else [],
        model=str(result.request.get("model") or result.model),
        advice=advice,
    )


def interrupted(result: GenerationResult, kept: str = "") -> str:
    """The one line that ends a cell the user interrupted (Ctrl-C, Stop), so that Run All stops.

    The footer above already says the answer is partial; this line says where it went.

    >>> interrupted(GenerationResult("m", answer="Half an", done_reason=INTERRUPTED), "r")
    'Interrupted: the answer above is partial (kept in r).'
    >>> interrupted(GenerationResult("m", done_reason=INTERRUPTED))
    'Interrupted before the model sent anything.'
    """
    if not (result.answer or result.thinking):
        return "Interrupted before the model sent anything."
    return "Interrupted: the answer above is partial" + (f" (kept in {kept})." if kept else ".")


def transfer_failed(action: str, name: str, error: OllamaError | None, source: str = "") -> str:
    """A pull, push or create that ended with an error (not a missing model or server), in words.

    >>> print(transfer_failed("pull", "lama", ResponseError(500, "manifest: file does not exist")))
    ... # doctest: +NORMALIZE_WHITESPACE
    Cannot pull lama: manifest: file does not exist. Check the name: model names look like
    llama3.2 or qwen3:8b.
    """
    detail = (getattr(error, "message", None) or str(error)).rstrip(".")
    hint = ""
    if action == "pull" and "file does not exist" in detail:
        hint = " Check the name: model names look like llama3.2 or qwen3:8b."
    elif action == "create" and "file does not exist" in detail:
        hint = f" Check --from {source}: the server must have it or be able to pull it."
    return f"Cannot {action} {name}: {detail}.{hint}"
