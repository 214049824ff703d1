"""The table of ``%ollama`` commands, in the order ``%ollama help`` lists them, and what reads
it: parsing a line into a :class:`Command`, and the help texts."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from ..args import ArgsError, split_line
from . import apps, cache, conversations, fix, models, settings, transfer
from .base import COMMAND, Args, Context, LineCommand


@dataclass(frozen=True, kw_only=True)
class HelpArgs(Args):
    command: str | None = None


def help_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("command", metavar="COMMAND", nargs="?")


def run_help(ctx: Context, args: HelpArgs) -> None:
    print(command_help(args.command) if args.command else overview())


HELP = LineCommand(
    "help",
    "this list, or one command's help",
    HelpArgs,
    help_arguments,
    run_help,
    server=False,
    first=COMMAND,
)

#: Every command by name. The names follow the ``ollama`` CLI (``list``, ``ps``, ``pull``,
#: ``show``, ``stop``, ``cp``, ``rm``, ``create``, ``push``) so what a user learns here works in
#: a terminal too.
COMMANDS: dict[str, LineCommand[Any]] = {
    unit.name: unit
    for unit in (
        models.MODELS,
        models.PS,
        transfer.PULL,
        transfer.PUSH,
        models.SHOW,
        models.LOAD,
        models.STOP,
        models.CP,
        models.RM,
        transfer.CREATE,
        models.EMBED,
        settings.USE,
        settings.HOST,
        settings.VERSION,
        conversations.HISTORY,
        conversations.RESET,
        cache.CACHE,
        fix.FIX,
        apps.UI,
        HELP,
    )
}

ALIASES = {alias: unit.name for unit in COMMANDS.values() for alias in unit.aliases}


@dataclass(frozen=True)
class Command:
    """A parsed line: the command and its typed arguments."""

    unit: LineCommand[Any]
    args: Args

    @property
    def name(self) -> str:
        return self.unit.name

    def run(self, ctx: Context) -> Any:
        return self.unit.run(ctx, self.args)


def canonical(name: str) -> str | None:
    """The command a name or alias means, or ``None``."""
    name = name.strip().lower()
    return name if name in COMMANDS else ALIASES.get(name)


def parse_command(line: str) -> Command:
    """Parse ``%ollama`` line text.

    >>> c = parse_command("load thinker -k -1 --num-ctx 8192")
    >>> c.name, c.args.model, c.args.keep_alive, c.args.num_ctx
    ('load', 'thinker', '-1', 8192)
    >>> parse_command("list").name, parse_command("").name
    ('models', 'help')
    """
    tokens = split_line(line)
    if not tokens:
        return Command(HELP, HelpArgs())
    name = canonical(tokens[0])
    if name is None:
        raise ArgsError(
            f"unknown command {tokens[0]!r}. Commands: {', '.join(COMMANDS)}. "
            "For a prompt, use the cell magic: %%ollama MODEL, then the prompt below it"
        )
    if "-h" in tokens[1:] or "--help" in tokens[1:]:
        return Command(HELP, HelpArgs(command=name))
    unit = COMMANDS[name]
    return Command(unit, unit.parse(tokens[1:]))


def overview() -> str:
    """``%ollama help``: every command with its summary."""
    width = max(len(name) for name in COMMANDS)
    lines = [
        "%ollama COMMAND [args]: manage models and conversations "
        "(%%ollama MODEL with a prompt below it generates).",
        "",
    ]
    for name, unit in COMMANDS.items():
        also = f" (also: {', '.join(unit.aliases)})" if unit.aliases else ""
        lines.append(f"  {name.ljust(width)}  {unit.summary}{also}")
    lines += ["", "%ollama help COMMAND (or %ollama COMMAND -h) shows a command's arguments."]
    return "\n".join(lines)


def command_help(name: str) -> str:
    """One command's full help."""
    command = canonical(name)
    if command is None:
        raise ArgsError(f"unknown command {name!r}. Commands: {', '.join(COMMANDS)}")
    return COMMANDS[command].parser.format_help().rstrip()
