"""The commands about installed and loaded models: ``models``, ``ps``, ``show``, ``load``,
``stop``, ``cp``, ``rm`` and ``embed``. Each sends what the ``ollama`` CLI sends for it."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .. import lifecycle
from ..args import ArgsError, keep_alive_value
from ..errors import ResponseError
from ..messages import gives_no_vectors, no_vectors, unsupported_capability
from ..present import LoadedList, ModelInfo, ModelList, load_summary, unload_summary
from .base import (
    MODEL,
    CommandFailed,
    Context,
    LineCommand,
    ServerArgs,
    bind,
    connect,
    keep_alive_flag,
    out_flag,
    plural,
)

#: What ``%ollama show --PART`` prints alone.
SHOW_PARTS = ("modelfile", "template", "parameters", "system", "license")


@dataclass(frozen=True, kw_only=True)
class ListArgs(ServerArgs):
    out: str | None = None


def run_models(ctx: Context, args: ListArgs) -> ModelList:
    with connect(ctx, args) as client:
        models = lifecycle.list_models(client)
    bind(ctx, args.out, models)
    return models


MODELS = LineCommand(
    "models", "list the installed models", ListArgs, out_flag, run_models, aliases=("list", "ls")
)


def run_ps(ctx: Context, args: ListArgs) -> LoadedList:
    with connect(ctx, args) as client:
        rows = lifecycle.loaded(client)
    bind(ctx, args.out, rows)
    return rows


PS = LineCommand(
    "ps", "list the loaded models, their memory and when each unloads", ListArgs, out_flag, run_ps
)


@dataclass(frozen=True, kw_only=True)
class ShowArgs(ServerArgs):
    model: str
    part: str | None = None  # one of SHOW_PARTS: print only that
    out: str | None = None


def show_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="NAME")
    parts = p.add_mutually_exclusive_group()
    for part in SHOW_PARTS:
        parts.add_argument(
            f"--{part}",
            action="store_const",
            dest="part",
            const=part,
            help=f"print only the {part}",
        )
    out_flag(p)


def run_show(ctx: Context, args: ShowArgs) -> ModelInfo | None:
    with connect(ctx, args) as client:
        info = lifecycle.show(client, args.model)
    bind(ctx, args.out, info)
    if args.part:
        print(info.part(args.part))
        return None
    return info


SHOW = LineCommand(
    "show",
    "a model's capabilities, parameters, template and license",
    ShowArgs,
    show_arguments,
    run_show,
    offer_pull=True,
    first=MODEL,
)


@dataclass(frozen=True, kw_only=True)
class LoadArgs(ServerArgs):
    model: str
    keep_alive: str | None = None
    num_ctx: int | None = None


def load_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="NAME")
    keep_alive_flag(p)
    p.add_argument("--num-ctx", type=int, metavar="N", help="context window to load with")


def run_load(ctx: Context, args: LoadArgs) -> None:
    keep_alive = keep_alive_value(args.keep_alive) if args.keep_alive else None
    with connect(ctx, args) as client:
        try:
            report = lifecycle.load(client, args.model, keep_alive, args.num_ctx)
        except ResponseError as exc:
            if unsupported_capability(exc):
                raise CommandFailed(
                    f"{args.model} cannot be loaded for generating: {exc.message}. "
                    f"Embedding models load with %ollama embed {args.model} TEXT."
                ) from None
            raise
    summary = load_summary(args.model, report.seconds, report.row, datetime.now(timezone.utc))
    print(summary + " %ollama ps lists what is loaded.")


LOAD = LineCommand(
    "load",
    "load a model into memory now (and keep it for --keep-alive)",
    LoadArgs,
    load_arguments,
    run_load,
    offer_pull=True,
    first=MODEL,
)


@dataclass(frozen=True, kw_only=True)
class StopArgs(ServerArgs):
    model: str | None = None
    all: bool = False


def stop_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="NAME", nargs="?")
    p.add_argument("--all", action="store_true", help="unload every loaded model")


def run_stop(ctx: Context, args: StopArgs) -> None:
    if not args.model and not args.all:
        raise ArgsError("stop which model? %ollama stop NAME, or %ollama stop --all")
    with connect(ctx, args) as client:
        names = [n for n in lifecycle.loaded(client).names if n] if args.all else [args.model]
        if args.all and not names:
            print("No model is loaded.")
        for name in names:
            assert name is not None  # (checked above)
            print(unload_summary(name, lifecycle.unload(client, name)))


STOP = LineCommand(
    "stop",
    "unload a model now (keep_alive 0), like `ollama stop`",
    StopArgs,
    stop_arguments,
    run_stop,
    first=MODEL,
)


@dataclass(frozen=True, kw_only=True)
class CopyArgs(ServerArgs):
    source: str
    destination: str


def copy_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("destination", metavar="DESTINATION")


def run_cp(ctx: Context, args: CopyArgs) -> None:
    with connect(ctx, args) as client:
        lifecycle.copy(client, args.source, args.destination)
    print(f"Copied {args.source} to {args.destination}.")


CP = LineCommand(
    "cp",
    "copy a model under a new name",
    CopyArgs,
    copy_arguments,
    run_cp,
    aliases=("copy",),
    first=MODEL,
)


@dataclass(frozen=True, kw_only=True)
class DeleteArgs(ServerArgs):
    models: list[str] = field(default_factory=list)


def rm_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("models", metavar="NAME", nargs="+")


def run_rm(ctx: Context, args: DeleteArgs) -> None:
    with connect(ctx, args) as client:
        for name in args.models:
            lifecycle.delete(client, name)
            print(f"Deleted {name}.")


RM = LineCommand(
    "rm", "delete models", DeleteArgs, rm_arguments, run_rm, aliases=("delete",), first=MODEL
)


@dataclass(frozen=True, kw_only=True)
class EmbedArgs(ServerArgs):
    model: str
    text: list[str] = field(default_factory=list)
    var: str | None = None
    dimensions: int | None = None
    keep_alive: str | None = None
    out: str | None = None


def embed_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL")
    p.add_argument("text", metavar="TEXT", nargs="*", help="the text (the rest of the line)")
    p.add_argument("--var", metavar="NAME", help="embed a variable: a string or list of strings")
    p.add_argument("--dimensions", type=int, metavar="N", help="shorten the vectors to N")
    keep_alive_flag(p)
    out_flag(p)


def embed_inputs(
    words: list[str], var: str | None, namespace: Mapping[str, Any]
) -> str | list[str]:
    """What to embed: the rest of the line, or the string or strings a variable holds.

    >>> embed_inputs(["The", "sky"], None, {}), embed_inputs([], "xs", {"xs": ("a", "b")})
    ('The sky', ['a', 'b'])
    >>> embed_inputs([], "n", {"n": 3})
    Traceback (most recent call last):
    ...
    ollama_magic.args.ArgsError: --var n: it must hold a string or a list of strings
    """
    if var and words:
        raise ArgsError("give the text or --var NAME, not both")
    if not var:
        if not words:
            raise ArgsError("embed what? %ollama embed MODEL TEXT, or --var NAME")
        return " ".join(words)
    if var not in namespace:
        raise ArgsError(f"--var {var}: no such variable")
    value = namespace[var]
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(t, str) for t in value):
        return list(value)
    raise ArgsError(f"--var {var}: it must hold a string or a list of strings")


def run_embed(ctx: Context, args: EmbedArgs) -> Any:
    inputs = embed_inputs(args.text, args.var, ctx.namespace)
    keep_alive = keep_alive_value(args.keep_alive) if args.keep_alive else None
    with connect(ctx, args) as client:
        try:
            answer = lifecycle.embed(
                client, args.model, inputs, dimensions=args.dimensions, keep_alive=keep_alive
            )
        except ResponseError as exc:
            if gives_no_vectors(exc):  # a chat model on Ollama 0.30+: name the model
                raise CommandFailed(no_vectors(args.model, lifecycle.installed(client))) from None
            raise
    vectors = answer.vectors
    value = as_array(vectors[0] if isinstance(inputs, str) and vectors else vectors)
    tokens = answer.tokens
    print(
        f"{plural(len(vectors), 'vector')} of {answer.dimensions} dimensions from "
        f"{answer.model}" + (f" ({tokens} tokens)." if tokens else ".")
    )
    if args.out:
        bind(ctx, args.out, value)
        return None
    return value


EMBED = LineCommand(
    "embed",
    "embedding vectors for a text or a list of texts",
    EmbedArgs,
    embed_arguments,
    run_embed,
    offer_pull=True,
    first=MODEL,
    epilog="To search a list of texts by meaning: from ollama_magic import TextIndex, then "
    "TextIndex.build(texts, MODEL).search(QUESTION) (see the README).",
)


def as_array(vectors: Any) -> Any:
    """A numpy array when numpy is installed, else the lists as they came."""
    try:
        import numpy
    except ImportError:
        return vectors
    return numpy.asarray(vectors, dtype=numpy.float32)
