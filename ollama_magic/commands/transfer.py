"""The commands that stream progress: ``pull``, ``push`` and ``create``."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from typing import Any

from .. import lifecycle
from ..args import option_pair
from ..errors import ConnectionFailed, ModelNotFound
from ..live import IPythonPublisher, ProgressDisplay, ProgressText
from ..messages import transfer_failed
from ..progress import Progress
from .base import MODEL, CommandFailed, Context, LineCommand, ServerArgs, connect


def progress_view(ctx: Context) -> lifecycle.ProgressView:
    """A throttled output in a notebook, a rewritten line (or plain lines) elsewhere."""
    if ctx.in_kernel() and ctx.display not in ("text", "none"):
        return ProgressDisplay(IPythonPublisher())
    return ProgressText()


def transfer(ctx: Context, args: ServerArgs, action: str, body: dict[str, Any]) -> None:
    """Run a pull, push or create with progress, then print one line about how it ended."""
    name = body["model"]
    with connect(ctx, args) as client:
        progress = Progress(action, name, time.monotonic())
        done = lifecycle.transfer(client, f"/api/{action}", body, progress, progress_view(ctx))
    if done.ok:
        print(progress.summary(time.monotonic()))
        return
    if done.interrupted:
        raise CommandFailed(
            f"Interrupted: the {action} of {name} stopped {progress.stopped()}. "
            "Run the same command again to continue."
        )
    if isinstance(done.error, (ConnectionFailed, ModelNotFound)):
        raise done.error  # worded as for every command
    raise CommandFailed(transfer_failed(action, name, done.error, body.get("from", "")))


@dataclass(frozen=True, kw_only=True)
class TransferArgs(ServerArgs):
    model: str
    insecure: bool = False


def transfer_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="NAME", help="e.g. llama3.2 or qwen3:8b")
    p.add_argument("--insecure", action="store_true", help="allow a registry without TLS")


def transfer_body(args: TransferArgs) -> dict[str, Any]:
    body: dict[str, Any] = {"model": args.model}
    if args.insecure:
        body["insecure"] = True
    return body


def run_pull(ctx: Context, args: TransferArgs) -> None:
    transfer(ctx, args, "pull", transfer_body(args))


PULL = LineCommand(
    "pull", "download a model, with progress", TransferArgs, transfer_arguments, run_pull
)


def run_push(ctx: Context, args: TransferArgs) -> None:
    transfer(ctx, args, "push", transfer_body(args))


PUSH = LineCommand(
    "push",
    "upload a model to a registry, with progress",
    TransferArgs,
    transfer_arguments,
    run_push,
    first=MODEL,
)


@dataclass(frozen=True, kw_only=True)
class CreateArgs(ServerArgs):
    model: str
    base: str
    system: str | None = None
    template: str | None = None
    param: list[str] = field(default_factory=list)
    license: str | None = None


def create_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="NAME", help="the new model's name")
    p.add_argument("--from", dest="base", required=True, metavar="BASE", help="model to start from")
    p.add_argument("-s", "--system", metavar="TEXT", help="its system prompt")
    p.add_argument("--template", metavar="TEMPLATE", help="its prompt template")
    p.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a default option, e.g. temperature=0.2 or num_ctx=8192 (repeatable; "
        "stop=TEXT repeats)",
    )
    p.add_argument("--license", metavar="TEXT", help="its license text")


def create_body(args: CreateArgs) -> dict[str, Any]:
    """The ``/api/create`` request; ``-p`` pairs are its ``parameters``, where ``stop`` adds up.

    >>> create_body(CreateArgs(model="terse", base="echo", param=["num_ctx=8192", "stop=END",
    ...                                                           'stop=["a", "b"]']))
    ... # doctest: +NORMALIZE_WHITESPACE
    {'model': 'terse', 'from': 'echo',
     'parameters': {'num_ctx': 8192, 'stop': ['END', 'a', 'b']}}
    """
    body: dict[str, Any] = {"model": args.model, "from": args.base}
    for key in ("system", "template", "license"):
        value = getattr(args, key)
        if value is not None:
            body[key] = value
    parameters: dict[str, Any] = {}
    for pair in args.param:
        key, value = option_pair(pair)
        if key == "stop":
            parameters.setdefault("stop", []).extend(
                value if isinstance(value, list) else [str(value)]
            )
        else:
            parameters[key] = value
    if parameters:
        body["parameters"] = parameters
    return body


def run_create(ctx: Context, args: CreateArgs) -> None:
    transfer(ctx, args, "create", create_body(args))


CREATE = LineCommand(
    "create",
    "create a model from another with a new system prompt or parameters",
    CreateArgs,
    create_arguments,
    run_create,
    first=MODEL,
)
