"""The models the package serves when nobody configures anything: SmolLM2 when installed, then
the scripted models. The demo, ``./dev lab`` and the tutorial notebooks all start this set."""

from __future__ import annotations

from .engine import Engine
from .scripted import ScriptedEngine


def local_engines(
    *, pace: float | None = None, prompt_pace: float | None = None, load_seconds: float = 0.0
) -> tuple[list[Engine], str | None]:
    """The engines, and why SmolLM2 is missing (``None`` when it is served).

    Building the list loads nothing: llama.cpp reads the GGUF at the first request. ``pace``,
    ``prompt_pace`` and ``load_seconds`` give the scripted models a real model's timing (see
    :class:`~.scripted.ScriptedEngine`); the tutorials use them, tests do not.
    """
    from . import llama

    engines: list[Engine] = []
    missing: str | None = None
    if not llama.llama_available():
        missing = "xllamacpp is not installed"
    else:
        try:
            llama.default_gguf_path()
        except FileNotFoundError as exc:
            missing = str(exc)
        else:
            engines.append(llama.LlamaEngine())
    engines.append(ScriptedEngine(pace=pace, prompt_pace=prompt_pace, load_seconds=load_seconds))
    return engines, missing
