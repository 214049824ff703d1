"""The commands about the notebook's settings and server: ``use``, ``host`` and ``version``."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import __version__, lifecycle
from ..errors import ConnectionFailed, ModelNotFound, OllamaError
from ..fields import text
from ..messages import describe
from .base import MODEL, Args, Context, LineCommand, ServerArgs, connect

if TYPE_CHECKING:
    from ..client import OllamaClient


@dataclass(frozen=True, kw_only=True)
class UseArgs(Args):
    model: str | None = None


def use_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="NAME", nargs="?", help="omit to see the current one")


def run_use(ctx: Context, args: UseArgs) -> None:
    if not args.model:
        print(
            f"%%ollama cells use {ctx.model!r}."
            if ctx.model
            else "No default model yet: %ollama use NAME sets one."
        )
        return
    ctx.model = args.model
    said = f"Later %%ollama cells use {args.model}"
    with connect(ctx, ServerArgs()) as client:  # the configured server
        try:
            lifecycle.show(client, args.model)
        except ModelNotFound:
            raise
        except OllamaError as exc:
            said += f" (not checked: {describe(exc)})"
    print(said + ".")


USE = LineCommand(
    "use",
    "set the model for later %%ollama cells",
    UseArgs,
    use_arguments,
    run_use,
    server=False,
    offer_pull=True,
    first=MODEL,
)


@dataclass(frozen=True, kw_only=True)
class HostArgs(ServerArgs):
    url: str | None = None


def host_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", metavar="URL", nargs="?", help="omit to see the current one")


def run_host(ctx: Context, args: HostArgs) -> None:
    if args.url:
        ctx.client(args.url, setting="%ollama host").close()  # one line if it is no address
        ctx.host = args.url
    source = (
        "%config OllamaMagics.host"
        if ctx.host
        else "$OLLAMA_HOST"
        if os.environ.get("OLLAMA_HOST")
        else "the default"
    )
    with connect(ctx, args) as client:
        print(f"Ollama server: {client.base_url} (from {source}); {server_version(client)}.")


HOST = LineCommand("host", "show or set the Ollama server", HostArgs, host_arguments, run_host)


def run_version(ctx: Context, args: ServerArgs) -> None:
    with connect(ctx, args) as client:
        print(f"ollama-magic {__version__}; {server_version(client)} at {client.base_url}.")


def _no_arguments(p: argparse.ArgumentParser) -> None:
    pass


VERSION = LineCommand(
    "version", "versions of ollama-magic and of the server", ServerArgs, _no_arguments, run_version
)


def server_version(client: OllamaClient) -> str:
    """The server's version in words, or why there is none."""
    try:
        answer = client.object("GET", "/api/version")
    except ConnectionFailed as exc:
        return f"no answer ({exc.detail or 'unreachable'})"
    except OllamaError as exc:
        return f"it answers, but not as Ollama ({exc})"
    return f"Ollama {text(answer.get('version'), '?')}"
