"""``python -m ollama_magic.server`` / ``ollama-magic-server``: serve until Ctrl-C."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .app import serve
from .engine import Engine
from .scripted import ScriptedEngine


def build_parser() -> argparse.ArgumentParser:
    """The command line; other engines add their own options here."""
    parser = argparse.ArgumentParser(
        prog="ollama-magic-server",
        description="An Ollama-compatible server with deterministic scripted models.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=11434, help="port (default 11434; 0: any)")
    parser.add_argument(
        "--no-scripted", action="store_true", help="do not serve the scripted models"
    )
    parser.add_argument(
        "--quiet", action="store_true", help="do not log one line per request to stderr"
    )
    return parser


def build_engines(args: argparse.Namespace) -> list[Engine]:
    """The engines to serve, in lookup order (on a name clash the first wins)."""
    engines: list[Engine] = []
    if not args.no_scripted:
        engines.append(ScriptedEngine())
    # Further engines (e.g. llama.py's LlamaEngine behind a --gguf option) are appended here.
    return engines


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    engines = build_engines(args)
    if not engines:
        print("ollama-magic-server: no engines to serve", file=sys.stderr)
        return 2
    serve(args.host, args.port, engines, log_requests=not args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
