"""``%ollama fix [MODEL] [flags]``: explain the last error and correct its cell.

It is ``%%ollama MODEL --fix`` with nothing of your own to add, so it takes the cell magic's
flags (``--code``, ``-o NAME``, ``--think``, ``--num-predict N``, ...) and streams the same way,
reasoning apart. The line is handed to the cell magic whole, which checks it.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from .base import MODEL, Args, Context, LineCommand


@dataclass(frozen=True, kw_only=True)
class FixArgs(Args):
    tokens: tuple[str, ...] = ()


def fix_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "line",
        nargs=argparse.REMAINDER,
        metavar="[MODEL] [flags]",
        help="the model (default: %%config OllamaMagics.model) and any %%%%ollama flag, e.g. "
        "--code to put the corrected cell below, -o NAME, --think, --num-predict N",
    )


def run_fix(ctx: Context, args: FixArgs) -> None:
    ctx.generate(shlex.join([*args.tokens, "--fix"]), "")


class PassThrough(LineCommand[FixArgs]):
    """A command whose line is the cell magic's: kept as typed, checked when it runs."""

    def parse(self, tokens: Sequence[str]) -> FixArgs:
        return FixArgs(tokens=tuple(tokens))

    def flags(self) -> list[str]:
        from ..args import PARSER

        return [s for s in PARSER._option_string_actions if s.startswith("--") and s != "--fix"]


FIX = PassThrough(
    "fix",
    "explain the last error and correct its cell",
    FixArgs,
    fix_arguments,
    run_fix,
    server=False,
    first=MODEL,
    epilog="Same as a %%ollama MODEL --fix cell; words in such a cell's body go with the "
    "request. Nothing to fix (no error yet) is one line, and no request.",
)
