"""``OLLAMA_HOST=… pytest --nbval notebooks/``: the tutorials against someone's own Ollama.

A local server with only the SmolLM2 models plays that Ollama. The run must switch to lax mode,
copy stand-ins for the scripted names the tutorial uses, and delete those copies afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ollama_magic.server import OllamaServer
from ollama_magic.server.llama import DEFAULT_MODEL, THINK_MODEL, LlamaEngine

ROOT = Path(__file__).resolve().parents[2]


def test_a_real_ollama_runs_the_quickstart_in_lax_mode(gguf_path: Path) -> None:
    with OllamaServer(engines=[LlamaEngine({DEFAULT_MODEL: gguf_path})]) as server:
        env = dict(
            os.environ,
            OLLAMA_HOST=server.url,
            OLLAMA_MAGIC_REASONING_MODEL=THINK_MODEL,
            OLLAMA_MAGIC_PLAIN_MODEL=DEFAULT_MODEL,
        )
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "--nbval",
                "notebooks/01-quickstart.ipynb",
                "-p",
                "no:cacheprovider",
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=600,
        )
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
        assert "tutorials: lax run against the Ollama at" in run.stdout
        copies = [r.json["destination"] for r in server.requests if r.path == "/api/copy"]
        deletes = [r.json["model"] for r in server.requests if r.path == "/api/delete"]
        assert "reasoner" in copies and sorted(copies) == sorted(deletes)
        assert any(r.path == "/api/generate" for r in server.requests)
        assert "reasoner:latest" not in {card.name for card in server.store.cards()}
