"""``%%ollama MODEL --map VAR``: from a parsed cell to :func:`~ollama_magic.batch.execute`.

The magic hands over its parsed line and resolved call; this module picks the data, the hosts
(every ``--host``, else ``%config OllamaMagics.hosts``, else the one configured server), the
parallelism and the cache, runs the batch, prints the summary and stores or returns the output.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ..args import ArgsError, GenerateCall
from . import Batch, Settings, execute, output
from .cache import CacheError, ResultCache, default_dir
from .core import DEFAULT_PARALLEL, Items
from .view import NoView, View, choose_view

if TYPE_CHECKING:
    from ..client import OllamaClient

MAX_PARALLEL = 256


class MapContext(Protocol):
    """What a ``--map`` cell uses of the magic."""

    display: str
    hosts: list[str]
    parallel: int
    cache_dir: str

    @property
    def namespace(self) -> dict[str, Any]: ...

    def in_kernel(self) -> bool: ...

    def client(
        self, host: str | None, timeout: float | None = None, *, setting: str = "--host"
    ) -> OllamaClient: ...


class AllFailed(Exception):
    """No item was answered: the summary is the message (the output is still stored)."""


class Interrupted(Exception):
    """The user stopped the run: the summary is the message, so the cell fails and Run All
    stops there; ``output`` is what the cell would have shown (``None`` with ``-o``)."""

    def __init__(self, message: str, output: Any) -> None:
        super().__init__(message)
        self.output = output


def prepare(
    ns: argparse.Namespace, call: GenerateCall, cell: str, namespace: Mapping[str, Any], fill: bool
) -> Batch:
    """The batch a cell describes; a wrong variable or flag is an :class:`ArgsError`."""
    name = ns.map
    if ns.chat or ns.conversation is not None:
        raise ArgsError("--map sends single prompts; it cannot take --chat or --conversation")
    if name not in namespace:
        raise ArgsError(f"--map {name}: no such variable; give a list, a Series or a DataFrame")
    try:
        items = Items.of(namespace[name])
    except TypeError as exc:
        raise ArgsError(f"--map {name}: {exc}") from None
    base = dict(call.body)
    base.pop("prompt", None)
    template = cell.rstrip("\n")
    return Batch(template, items, base, namespace if fill else {}, call.schema_model)


def parallel_value(ns: argparse.Namespace, configured: int) -> int:
    value = ns.parallel if ns.parallel is not None else (configured or DEFAULT_PARALLEL)
    where = "--parallel" if ns.parallel is not None else "%config OllamaMagics.parallel ="
    if not 1 <= value <= MAX_PARALLEL:
        raise ArgsError(f"{where} {value}: use a whole number from 1 to {MAX_PARALLEL}")
    return int(value)


def hosts_of(call: GenerateCall, configured: Sequence[str]) -> tuple[list[str | None], str]:
    """The hosts to share the work, and where they were set (for a message about them)."""
    if call.hosts:
        return list(call.hosts), "--host"
    if configured:
        return list(configured), "%config OllamaMagics.hosts"
    return [None], "--host"


def run_map(
    ctx: MapContext, ns: argparse.Namespace, call: GenerateCall, cell: str, fill: bool
) -> Any:
    """Run a ``--map`` cell; the output when there is no ``-o``, else ``None``."""
    batch = prepare(ns, call, cell, ctx.namespace, fill)
    hosts, setting = hosts_of(call, ctx.hosts)
    parallel = parallel_value(ns, ctx.parallel)
    store = None if ns.no_cache else ResultCache(default_dir(ctx.cache_dir))
    view: View = NoView() if call.quiet else choose_view(_mode(ctx.display), ctx.in_kernel)
    settings = Settings(
        hosts=hosts,
        connect=lambda host: ctx.client(host, call.timeout, setting=setting),
        parallel=parallel,
        cache=store,
        view=view,
    )
    try:
        report = execute(batch, settings)
    except CacheError as exc:
        raise ArgsError(str(exc)) from None
    finally:
        if store is not None:
            store.close()
    result = output(batch, report)
    if call.out:
        ctx.namespace[call.out] = result
    nothing = not any(e is None for e in report.errors)
    kept = f" The results are in {call.out}." if call.out else ""
    if report.interrupted:
        raise Interrupted(report.summary + kept, None if call.out or call.quiet else result)
    if nothing and report.errors:
        raise AllFailed(report.summary + kept)
    if not call.quiet:
        print(report.summary)
    return None if call.out or call.quiet else result


def _mode(display: str) -> str:
    """The magic's display setting as a batch view mode."""
    return {"live": "auto", "final": "auto"}.get(display, display)
