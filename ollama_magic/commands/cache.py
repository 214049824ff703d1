"""``%ollama cache``: what the ``--map`` cache of finished answers holds, and clearing it."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from ..args import ArgsError
from ..batch.cache import CacheError, ResultCache, default_dir
from ..present import human_bytes
from .base import MODEL, Args, CommandFailed, Context, LineCommand, plural


@dataclass(frozen=True, kw_only=True)
class CacheArgs(Args):
    action: str | None = None
    model: str | None = None


def cache_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", metavar="clear", nargs="?", help="forget cached answers")
    p.add_argument("model", metavar="MODEL", nargs="?", help="only this model's")


def run_cache(ctx: Context, args: CacheArgs) -> None:
    if args.action not in (None, "clear"):
        raise ArgsError(
            f"%ollama cache {args.action}: write %ollama cache to see it, or "
            "%ollama cache clear [MODEL] to empty it"
        )
    try:
        _show_or_clear(ResultCache(default_dir(getattr(ctx, "cache_dir", ""))), args)
    except CacheError as exc:
        raise CommandFailed(str(exc)) from None


def _show_or_clear(cache: ResultCache, args: CacheArgs) -> None:
    with cache as store:
        if args.action == "clear":
            gone = store.clear(args.model)
            whose = f" of {args.model}" if args.model else ""
            print(f"Forgot {plural(gone, 'cached answer')}{whose}.")
            return
        shares = store.shares()
        if not shares:
            print(f"No cached answers yet ({store.path}).")
            return
        total = sum(s.count for s in shares)
        print(f"{plural(total, 'cached answer')} in {store.path}:")
        width = max(len(s.model) for s in shares)
        for share in shares:
            answers = plural(share.count, "answer").rjust(12)
            print(f"  {share.model.ljust(width)}  {answers}, {human_bytes(share.size)} of text")
        print("%ollama cache clear [MODEL] forgets them; --no-cache skips the cache for one cell.")


CACHE = LineCommand(
    "cache",
    "the --map cache of finished answers: show it, or clear [MODEL]",
    CacheArgs,
    cache_arguments,
    run_cache,
    server=False,
    first=MODEL,
)
