"""One prompt over a whole dataset, across one or many Ollama hosts: ``%%ollama MODEL --map VAR``
in a cell, :func:`map_prompt` in code. Both run :func:`execute`.

The pieces: :mod:`.core` (pure: items, bodies, cache keys, the plan of who sends what),
:mod:`.runner` (threads and streams), :mod:`.view` (the one progress view), :mod:`.cache`
(finished answers in SQLite, so a rerun sends only what is missing or failed).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..result import INTERRUPTED, GenerationResult
from ..session import attach_data
from .cache import ResultCache, default_dir
from .core import (
    DEFAULT_PARALLEL,
    Backoff,
    HostState,
    Items,
    Snapshot,
    cache_key,
    free_name,
    item_body,
    schema_fields,
)
from .runner import NO_HOST, Job, Outcome, Runner
from .view import View, choose_view, summary

if TYPE_CHECKING:
    from ..client import OllamaClient

__all__ = ["DEFAULT_PARALLEL", "BatchResults", "ResultCache", "map_prompt"]

GENERATE = "/api/generate"
NOT_FINISHED = "not finished: the run was interrupted"

#: Lines of a :class:`BatchResults` repr before it says how many more there are.
SHOWN = 20


class BatchResults(list[GenerationResult]):
    """The results of a batch over a list or Series, in input order.

    Each is a :class:`~ollama_magic.result.GenerationResult`; ``errors[i]`` says why item ``i``
    failed (``None`` when it did not), ``answers`` and ``data`` are the texts and the parsed
    ``--format`` values (``None`` for failed items), ``summary`` the line printed at the end.
    """

    def __init__(
        self,
        results: Iterable[GenerationResult],
        errors: Sequence[str | None],
        summary: str = "",
        interrupted: bool = False,
    ) -> None:
        super().__init__(results)
        self.errors = list(errors)
        self.summary = summary
        self.interrupted = interrupted

    @property
    def answers(self) -> list[str | None]:
        return [None if e else r.answer for r, e in zip(self, self.errors, strict=True)]

    @property
    def data(self) -> list[Any]:
        return [None if e else r.data for r, e in zip(self, self.errors, strict=True)]

    @property
    def failed(self) -> list[int]:
        """Indices of the items that failed or were not finished."""
        return [i for i, e in enumerate(self.errors) if e]

    def __repr__(self) -> str:
        lines = [f"BatchResults: {len(self)} items, {len(self.failed)} failed"]
        for i, (result, error) in enumerate(zip(self, self.errors, strict=True)):
            if i == SHOWN:
                lines.append(f"... and {len(self) - SHOWN} more")
                break
            lines.append(f"[{i}] " + (f"error: {error}" if error else repr(result.answer)))
        return "\n".join(lines)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))


@dataclass
class Batch:
    """A template, the items it is filled with and the request every item shares."""

    template: str
    items: Items
    base: dict[str, Any]  # the request body without its prompt
    namespace: Mapping[str, Any] = field(default_factory=dict)
    schema_model: Any = None
    path: str = GENERATE

    def body(self, index: int) -> dict[str, Any]:
        return item_body(self.base, self.template, self.items.rows[index], self.namespace)

    def check(self, result: GenerationResult) -> str | None:
        """For ``--format``: parse the answer into ``.data``; why it does not parse, if not."""
        if "format" not in self.base:
            return None
        note = attach_data(result, self.schema_model)
        if note is None and result.data is None:
            return "the answer is empty, so .data is None"
        return note


@dataclass
class Settings:
    """Where and how a batch runs."""

    hosts: Sequence[str | None]  # None: $OLLAMA_HOST, else the default address
    connect: Callable[[str | None], OllamaClient]
    parallel: int = DEFAULT_PARALLEL
    cache: ResultCache | None = None
    view: View | None = None
    progress: Callable[[Snapshot], None] | None = None
    backoff: Backoff = field(default_factory=Backoff)  # when a failed host is tried again


@dataclass
class Report:
    """What :func:`execute` gives back: the results in order, the errors, the summary line."""

    results: list[GenerationResult]
    errors: list[str | None]
    summary: str
    interrupted: bool
    last: Snapshot


def execute(batch: Batch, settings: Settings) -> Report:
    """Answer what the cache has, send the rest, collect everything in input order."""
    clients = _clients(settings)  # every address checked before anything is read or sent
    originals = {url: host for url, (host, _) in clients.items()}
    try:
        keys, found = _lookup(batch, settings.cache)
    except BaseException:
        for _, client in clients.values():
            client.close()
        raise
    total = len(batch.items)
    todo = [i for i in range(total) if i not in found]
    view = settings.view

    def connect(url: str) -> OllamaClient:
        first = clients.pop(url, None)
        return first[1] if first is not None else settings.connect(originals[url])

    def done(index: int, result: GenerationResult) -> None:
        if settings.cache is not None:
            settings.cache.put(keys[index], result)

    def tick(snapshot: Snapshot) -> None:
        if view is not None:
            view.update(snapshot, time.monotonic())
        if settings.progress is not None:
            settings.progress(snapshot)

    job = Job(
        path=batch.path,
        total=total,
        todo=todo,
        body=batch.body,
        hosts=list(originals),
        parallel=settings.parallel,
        check=batch.check,
        done=done,
        cached=len(found),
    )
    outcome = None
    try:
        if todo:
            outcome = Runner(job, connect, backoff=settings.backoff).run(tick)
    finally:
        for _, unused in clients.values():
            unused.close()
        if view is not None:
            view.close()
    if outcome is not None and outcome.last is not None:
        last = outcome.last
    else:
        hosts = [HostState(url, settings.parallel) for url in originals]
        last = Snapshot(total, len(found), 0, len(found), 0, 0, 0.0, hosts, 0)
    return _collect(batch, found, outcome, last)


def _clients(settings: Settings) -> dict[str, tuple[str | None, OllamaClient]]:
    """One client per distinct server (by its address without a password), with the setting
    it came from; a bad address raises before anything is sent."""
    clients: dict[str, tuple[str | None, OllamaClient]] = {}
    try:
        for host in settings.hosts:
            client = settings.connect(host)
            if client.base_url in clients:
                client.close()
            else:
                clients[client.base_url] = (host, client)
    except BaseException:
        for _, client in clients.values():
            client.close()
        raise
    return clients


def _lookup(
    batch: Batch, cache: ResultCache | None
) -> tuple[list[str], dict[int, GenerationResult]]:
    """Each item's cache key, and the items the cache already answers (and still fit
    ``--format``)."""
    keys: list[str] = []
    found: dict[int, GenerationResult] = {}
    if cache is None:
        return keys, found
    for index in range(len(batch.items)):
        body = batch.body(index)
        key = cache_key(batch.path, body)
        keys.append(key)
        hit = cache.get(key, body)
        if hit is not None and batch.check(hit) is None:
            found[index] = hit
    return keys, found


def _collect(
    batch: Batch, found: dict[int, GenerationResult], outcome: Outcome | None, last: Snapshot
) -> Report:
    """Every item's result and error in input order; an item nobody finished says so."""
    results_by_index = dict(found)
    errors_by_index: dict[int, str] = {}
    if outcome is not None:
        results_by_index.update(outcome.results)
        errors_by_index.update(outcome.errors)
    results: list[GenerationResult] = []
    errors: list[str | None] = []
    model = str(batch.base.get("model", ""))
    for index in range(len(batch.items)):
        result = results_by_index.get(index)
        if result is None:
            result = GenerationResult(model, done_reason=INTERRUPTED, error=NOT_FINISHED)
            result.request = batch.body(index)
            errors_by_index[index] = NOT_FINISHED
        results.append(result)
        errors.append(errors_by_index.get(index))
    interrupted = bool(outcome and outcome.interrupted)
    first = next((e for e in errors if e and e not in (NOT_FINISHED, NO_HOST)), None)
    line = summary(last, interrupted=interrupted, first_error=first)
    return Report(results, errors, line, interrupted, last)


def output(batch: Batch, report: Report) -> Any:
    """A :class:`BatchResults` for a list or Series; for a DataFrame, a copy with the answers
    added: ``answer`` (or one column per ``--format`` schema field, or ``data`` for plain
    ``json``) and ``error`` (``None`` where the row went well)."""
    frame = batch.items.frame
    if frame is None:
        return BatchResults(report.results, report.errors, report.summary, report.interrupted)
    out = frame.copy()
    taken = [str(c) for c in out.columns]
    pairs = list(zip(report.results, [e is None for e in report.errors], strict=True))
    values = [r.data if good else None for r, good in pairs]
    if "format" in batch.base:
        names = schema_fields(batch.schema_model or batch.base["format"])
        if names:
            for name in names:
                column = free_name(name, taken)
                out[column] = [_field(d, name) if d is not None else None for d in values]
                taken.append(column)
        else:
            column = free_name("data", taken)
            out[column] = values
            taken.append(column)
    else:
        column = free_name("answer", taken)
        out[column] = [r.answer if good else None for r, good in pairs]
        taken.append(column)
    out[free_name("error", taken)] = report.errors
    return out


def _field(data: Any, name: str) -> Any:
    if isinstance(data, Mapping):
        return data.get(name)
    return getattr(data, name, None)


def map_prompt(
    template: str,
    data: Any,
    model: str,
    *,
    hosts: str | Sequence[str] | None = None,
    parallel: int = DEFAULT_PARALLEL,
    flags: str = "",
    cache: bool | str | Path = True,
    display: str = "auto",
    progress: Callable[[Snapshot], None] | None = None,
    namespace: Mapping[str, Any] | None = None,
    connect_timeout: float = 5.0,
    timeout: float = 600.0,
    retries: int = 4,
    retry_wait: float = 1.0,
    **fields: Any,
) -> Any:
    """Fill ``template`` with each item of ``data`` and ask ``model``; results in input order.

    **Parameters:** ``data``: a list, a pandas Series (``{item}`` in the template) or a
    DataFrame (``{column}``); ``hosts``: one address or several (default ``$OLLAMA_HOST``);
    ``parallel``: requests in flight per host; ``flags``: any ``%%ollama`` flags, e.g.
    ``"--temperature 0 --num-predict 20"``; ``fields``: request fields set directly
    (``format=`` takes a schema dict or a pydantic model class); ``cache``: ``False``, or a
    directory instead of the default; ``display``: ``auto``, ``text`` or ``none``;
    ``progress(snapshot)`` is called on the calling thread as the run goes (raising
    ``KeyboardInterrupt`` there stops it as Ctrl-C does); ``namespace``: variables the
    template may also use; ``retries``, ``retry_wait``: a host that fails (refused, dropped,
    timed out, 502/503/504) is tried again after ``retry_wait`` s, then twice as long each time
    (at most 30 s), and is out for good after ``retries`` failed retries in a row; items wait
    for it meanwhile, so a restarting or busy Ollama costs a pause, not the run.

    **Returns:** a :class:`BatchResults`, or for a DataFrame a copy with answer columns.

    **Usage:** ``map_prompt("Sentiment of: {item}", reviews, "llama3.2", parallel=4)``.
    """
    from ..args import Defaults, build_call, parse_line
    from ..client import OllamaClient

    ns = parse_line(f"{model} {flags}")
    format_value = fields.pop("format", None)
    call = build_call(ns, template, {}, Defaults(model=model))
    base = dict(call.body)
    schema_model = call.schema_model
    if format_value is not None:
        schema_of = getattr(format_value, "model_json_schema", None)
        if isinstance(format_value, type) and callable(schema_of):
            base["format"], schema_model = schema_of(), format_value
        else:
            base["format"] = format_value
    base.update(fields)
    base.pop("prompt", None)
    if isinstance(hosts, str):
        hosts = [hosts]
    store: ResultCache | None = None
    if cache is not False:
        store = ResultCache(default_dir("" if cache is True else str(cache)))
    batch = Batch(template, Items.of(data), base, namespace or {}, schema_model)
    settings = Settings(
        hosts=list(hosts) if hosts else [None],
        connect=lambda host: OllamaClient(
            host, connect_timeout=connect_timeout, read_timeout=timeout
        ),
        parallel=_checked_parallel(parallel),
        cache=store,
        view=choose_view(display, _in_kernel),
        progress=progress,
        backoff=_checked_backoff(retries, retry_wait),
    )
    try:
        report = execute(batch, settings)
    finally:
        if store is not None:
            store.close()
    if display != "none":
        print(report.summary)
    return output(batch, report)


def _checked_parallel(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 256:
        raise ValueError(f"parallel {value!r}: use a whole number from 1 to 256")
    return value


def _checked_backoff(retries: int, retry_wait: float) -> Backoff:
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 100:
        raise ValueError(f"retries {retries!r}: use a whole number from 0 to 100")
    if isinstance(retry_wait, bool) or not isinstance(retry_wait, (int, float)):
        raise ValueError(f"retry_wait {retry_wait!r}: use seconds, e.g. 1.0")
    if not 0 <= retry_wait <= 3600:
        raise ValueError(f"retry_wait {retry_wait!r}: use seconds from 0 to 3600")
    return Backoff(first=float(retry_wait), cap=max(30.0, float(retry_wait)), retries=retries)


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return getattr(shell, "kernel", None) is not None
