"""ollama-magic: a ``%%ollama`` cell magic that streams local Ollama models into Jupyter."""

from __future__ import annotations

__version__ = "0.1.0"

from typing import Any

__all__ = ["__version__", "load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext ollama_magic``: register ``%%ollama`` (imports stay lazy for a fast load)."""
    from .magics import OllamaMagics

    ipython.register_magics(OllamaMagics)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext ollama_magic``: remove the magics so ``%reload_ext`` starts clean."""
    magics = ipython.magics_manager.magics
    for kind in ("line", "cell"):
        magics[kind].pop("ollama", None)
    ipython.magics_manager.registry.pop("OllamaMagics", None)
