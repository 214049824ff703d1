"""``python -m ollama_magic.demo``: a streamed answer through ``%%ollama``, with or without Ollama.

Uses a real Ollama when one answers at ``$OLLAMA_HOST`` (default 127.0.0.1:11434); otherwise it
starts the package's own local server and uses one of its models. The answer streams into this
terminal exactly as the magic streams it in terminal IPython.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator

from .client import OllamaClient
from .errors import OllamaError
from .present import ModelList

PROMPT = "Explain in three sentences why the sky is blue."


def _running_ollama() -> tuple[str, list[str]] | None:
    """The URL and model names of a real Ollama, if one answers quickly."""
    client = OllamaClient(connect_timeout=1.0, read_timeout=5.0)
    try:
        client.call("GET", "/api/version")
        return client.base_url, ModelList(client.tags()).names
    except OllamaError:
        return None
    finally:
        client.close()


@contextlib.contextmanager
def _local_server() -> Iterator[tuple[str, list[str]]]:
    """The package's server: SmolLM2 through llama.cpp when installed, and the scripted models."""
    from .server import OllamaServer
    from .server.local import local_engines

    engines, missing = local_engines()
    if missing:
        print(f"({missing}; only the scripted models are served)")
    with OllamaServer(engines=engines) as server:
        client = OllamaClient(server.url)
        names = [m["name"] for m in client.tags()]
        client.close()
        yield server.url, names


def _pick(names: list[str], wanted: str | None) -> str:
    if wanted:
        return wanted
    for preferred in ("smollm2:135m", "reasoner:latest"):
        if preferred in names:
            return preferred
    return names[0]


def _lab(url: str) -> int:
    """JupyterLab with OLLAMA_HOST pointing at ``url``; returns when Lab exits (Ctrl-C)."""
    import subprocess

    env = dict(os.environ, OLLAMA_HOST=url)
    print("Starting JupyterLab at the first tutorial (notebooks/). Ctrl-C stops both.")
    command = [sys.executable, "-m", "jupyter", "lab", "--ServerApp.root_dir=notebooks"]
    command.append("--LabApp.default_url=/lab/tree/01-quickstart.ipynb")
    if os.geteuid() == 0:
        command.append("--allow-root")
    try:
        return subprocess.call(command, env=env)
    except KeyboardInterrupt:
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ollama_magic.demo", description=__doc__)
    parser.add_argument("--model", help="model to use (default: the first available)")
    parser.add_argument("--prompt", default=PROMPT, help="the prompt to send")
    parser.add_argument("--local", action="store_true", help="always use the local server")
    parser.add_argument("--lab", action="store_true", help="open JupyterLab wired to the server")
    args = parser.parse_args(argv)

    found = None if args.local else _running_ollama()
    with contextlib.ExitStack() as stack:
        if found:
            url, names = found
            print(f"Using the Ollama server at {url}")
            if not names and not args.model:
                print("It has no models: `ollama pull llama3.2`, or run with --local.")
                return 1
        else:
            url, names = stack.enter_context(_local_server())
            print(f"No Ollama answered, so the package's local server runs at {url}")
        if args.lab:
            return _lab(url)
        model = _pick(names, args.model)
        os.environ["OLLAMA_HOST"] = url
        from IPython.core.interactiveshell import InteractiveShell

        shell = InteractiveShell.instance(colors="nocolor")
        shell.run_line_magic("load_ext", "ollama_magic")
        print(f"\n%%ollama {model} -o r\n{args.prompt}\n")
        outcome = shell.run_cell(f"%%ollama {model} -o r\n{args.prompt}")
        sys.stdout.flush()
        if not outcome.success:
            return 1
        result = shell.user_ns["r"]
        print(f"\nThe result is bound to r: {result!r}")
        print("\nNext: the tutorials, notebooks/01-quickstart.ipynb first; `./dev lab` opens it.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
