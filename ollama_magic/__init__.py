"""ollama-magic: a ``%%ollama`` cell magic that streams local Ollama models into Jupyter."""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .search import TextIndex

__all__ = ["TextIndex", "__version__", "load_ipython_extension", "unload_ipython_extension"]


def __getattr__(name: str) -> Any:
    """``from ollama_magic import TextIndex`` imports the search module only then."""
    if name == "TextIndex":
        from .search import TextIndex

        return TextIndex
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext ollama_magic``: register ``%%ollama`` (imports stay lazy for a fast load)."""
    import threading

    from .magics import OllamaMagics
    from .render import warm_up

    ipython.register_magics(OllamaMagics)
    # The Markdown parser is built on a side thread meanwhile: the load stays fast, and the
    # first answer's first words do not wait for it.
    threading.Thread(target=warm_up, name="ollama-magic-warm-up", daemon=True).start()


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext ollama_magic``: remove the magics so ``%reload_ext`` starts clean."""
    magics = ipython.magics_manager.magics
    registered = ipython.magics_manager.registry.get("OllamaMagics")
    if registered is not None:
        registered.cells.close()  # stop watching for errors
    for kind in ("line", "cell"):
        magics[kind].pop("ollama", None)
    ipython.magics_manager.registry.pop("OllamaMagics", None)
