"""The commands about ``--chat`` conversations: ``history`` and ``reset``."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from ..args import DEFAULT_CONVERSATION
from ..chat import Conversation
from .base import CONVERSATION, Args, Context, LineCommand, bind, out_flag, plural


@dataclass(frozen=True, kw_only=True)
class HistoryArgs(Args):
    conversation: str = DEFAULT_CONVERSATION
    out: str | None = None


def history_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("conversation", metavar="NAME", nargs="?", default=DEFAULT_CONVERSATION)
    out_flag(p)


def run_history(ctx: Context, args: HistoryArgs) -> Conversation:
    conversation = ctx.conversations.get(args.conversation)
    if conversation is None:
        conversation = Conversation(args.conversation)
    bind(ctx, args.out, conversation)
    return conversation


HISTORY = LineCommand(
    "history",
    "show a --chat conversation",
    HistoryArgs,
    history_arguments,
    run_history,
    server=False,
    first=CONVERSATION,
)


@dataclass(frozen=True, kw_only=True)
class ResetArgs(Args):
    conversation: str = DEFAULT_CONVERSATION
    all: bool = False


def reset_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("conversation", metavar="NAME", nargs="?", default=DEFAULT_CONVERSATION)
    p.add_argument("--all", action="store_true", help="forget every conversation")


def run_reset(ctx: Context, args: ResetArgs) -> None:
    if args.all:
        count = len(ctx.conversations)
        ctx.conversations.clear()
        print(f"Forgot {plural(count, 'conversation')}.")
        return
    gone = ctx.conversations.pop(args.conversation, None)
    if gone is None or not gone.turns:
        print(f"Conversation '{args.conversation}' was already empty.")
    else:
        turns = plural(len(gone.turns), "turn")
        print(f"Forgot conversation '{args.conversation}' ({turns}).")


RESET = LineCommand(
    "reset",
    "forget a --chat conversation",
    ResetArgs,
    reset_arguments,
    run_reset,
    server=False,
    first=CONVERSATION,
)
