"""What every ``%ollama`` line command is made of: a :class:`LineCommand` (its parser, its typed
arguments and its run), the :class:`Context` it runs in, and the flags several commands share.

A command never sees IPython: it gets a :class:`Context` (the magic is one) and raises typed
errors (:class:`~ollama_magic.args.ArgsError`, :class:`~ollama_magic.errors.OllamaError`,
:class:`CommandFailed`), which the magic turns into one line each.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from ..args import ArgsError, Defaults, Parser, attach_dash_values, identifier, timeout_value

if TYPE_CHECKING:  # the client imports requests: keep ``%load_ext`` fast
    from ..chat import Conversation
    from ..client import OllamaClient


class CommandFailed(Exception):
    """The command could not do its job; the message is the one line the user reads."""


class Context(Protocol):
    """What a command may use of the notebook it runs in: the settings (``%config
    OllamaMagics``), the conversations, the user's variables and a client for a server."""

    model: str
    host: str
    display: str
    conversations: dict[str, Conversation]

    @property
    def namespace(self) -> dict[str, Any]: ...

    def defaults(self) -> Defaults: ...

    def in_kernel(self) -> bool: ...

    def generate(self, line: str, cell: str) -> None:
        """Run ``cell`` as a ``%%ollama`` cell with this first ``line`` (streamed, shown)."""
        ...

    def client(
        self, host: str | None, timeout: float | None = None, *, setting: str = "--host"
    ) -> OllamaClient:
        """A client for ``host`` (else the configured server); a bad address is one line
        naming ``setting``, where it was written."""
        ...


@dataclass(frozen=True, kw_only=True)
class Args:
    """A command's parsed arguments; each command has its own subclass."""


@dataclass(frozen=True, kw_only=True)
class ServerArgs(Args):
    """Arguments of a command that talks to a server: ``--host`` and ``--timeout``."""

    host: str | None = None
    timeout: float | None = None


A = TypeVar("A", bound=Args)

#: What a command's first argument completes to on Tab.
MODEL, CONVERSATION, COMMAND, APP = "model", "conversation", "command", "app"


@dataclass(frozen=True)
class LineCommand(Generic[A]):
    """One ``%ollama`` command: its help, its arguments (added to its parser by ``arguments``,
    read into an ``args`` instance) and ``run``, which does it and returns what the cell shows.

    ``server`` adds ``--host``/``--timeout``; ``offer_pull`` makes a missing model's message
    end with the ``%ollama pull NAME`` hint; ``first`` is what its first argument completes to.
    """

    name: str
    summary: str
    args: type[A]
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Context, A], Any]
    aliases: tuple[str, ...] = ()
    server: bool = True
    offer_pull: bool = False
    first: str = ""
    epilog: str = ""

    @functools.cached_property
    def parser(self) -> argparse.ArgumentParser:
        p = Parser(
            prog=f"%ollama {self.name}",
            add_help=False,
            allow_abbrev=False,
            description=self.summary,
        )
        p.add_argument("-h", "--help", action="store_true", help="show this help")
        if self.aliases:
            p.epilog = "Also: " + ", ".join(f"%ollama {a}" for a in self.aliases)
        self.arguments(p)
        if self.epilog:
            p.epilog = self.epilog
        if self.server:
            server_flags(p)
        return p

    def parse(self, tokens: Sequence[str]) -> A:
        """The arguments after the command's name, typed; a mistake is an :class:`ArgsError`
        that names the command and where its help is."""
        try:
            ns = self.parser.parse_args(attach_dash_values(list(tokens), self.parser))
        except ArgsError as exc:
            raise ArgsError(f"%ollama {self.name}: {exc} (see %ollama help {self.name})") from None
        return self.args(**{f.name: getattr(ns, f.name) for f in fields(self.args)})

    def flags(self) -> list[str]:
        """Its long flags, for Tab completion."""
        return [s for a in self.parser._actions for s in a.option_strings if s.startswith("--")]


# -- shared flags ------------------------------------------------------------------------------


def server_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", metavar="URL", help="Ollama server (default: the configured one)")
    p.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="longest wait for the server's next answer (default: %%config OllamaMagics.timeout)",
    )


def out_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--out", metavar="NAME", help="also store the answer in this variable")


def keep_alive_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-k",
        "--keep-alive",
        metavar="DURATION",
        help="how long it stays loaded: seconds (300), a duration (10m, 24h), -1 for forever",
    )


# -- what runs share -----------------------------------------------------------------------------


def connect(ctx: Context, args: ServerArgs) -> closing[OllamaClient]:
    """A client for the command's ``--host`` and ``--timeout``, closed after the ``with``."""
    timeout = None if args.timeout is None else timeout_value(args.timeout, "--timeout")
    return closing(ctx.client(args.host, timeout))


def bind(ctx: Context, out: str | None, value: Any) -> None:
    """``-o NAME``: keep ``value`` in the user's variable ``NAME``."""
    if out:
        ctx.namespace[identifier(out, "-o")] = value


def plural(count: int, word: str) -> str:
    """
    >>> plural(1, "turn"), plural(2, "conversation")
    ('1 turn', '2 conversations')
    """
    return f"{count} {word}{'s' if count != 1 else ''}"
