"""Notebook apps on ipywidgets: :class:`Playground`, :class:`ModelManager` and :class:`Compare`.

``%ollama ui`` (``ui models``, ``ui compare``) opens them; so does ``Playground()`` in a cell.
They need the ``widgets`` extra (``pip install 'ollama-magic[widgets]'``) and are imported on
first use, so ``%load_ext ollama_magic`` never imports ipywidgets. They run on the magic's own
client, splitter and renderer: an app shows an answer exactly as ``%%ollama`` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Compare", "ModelManager", "Playground", "require"]

if TYPE_CHECKING:
    from .compare import Compare
    from .manager import ModelManager
    from .playground import Playground

_HOMES = {"Playground": "playground", "ModelManager": "manager", "Compare": "compare"}


def require() -> None:
    """Import ipywidgets, or raise ImportError with the command that installs it."""
    try:
        import ipywidgets  # noqa: F401
    except ImportError as exc:
        raise ImportError("pip install 'ollama-magic[widgets]'") from exc


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        require()
        from importlib import import_module

        return getattr(import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
