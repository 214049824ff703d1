"""The pure part of a batch: items in, request bodies, cache keys, who does what, results out.

Nothing here does I/O or imports pandas: a DataFrame or Series is recognised by its methods, so
the package runs without pandas and only a user who has one hands one in. :class:`Plan` is the
bookkeeping of a run (which items wait, which host has a free slot, which host is cooling down
after a failure and when it may be tried again, which is out for good), fed by the transport and
read by the display; the clock is always passed in, so the schedule is tested without sleeping.
"""

from __future__ import annotations

import hashlib
import json
from collections import ChainMap, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..args import fill_prompt
from ..errors import (
    ConnectionFailed,
    ModelNotFound,
    OllamaError,
    ReadTimedOut,
    ResponseError,
    StreamTruncated,
    UnexpectedReply,
)

#: Requests in flight per host when neither ``--parallel`` nor the config says: Ollama's API does
#: not tell how many it serves at once (``OLLAMA_NUM_PARALLEL`` is nowhere in ``/api/ps`` or
#: ``/api/version``), and 2 keeps a one-slot server busy (the next request waits, ready) without
#: crowding it.
DEFAULT_PARALLEL = 2

#: Request fields that never change the answer, left out of the cache key.
NOT_IN_KEY = ("stream", "keep_alive")

#: Status codes that mean the host (or a proxy in front of it) is unwell, not the item.
HOST_STATUSES = (502, 503, 504)


class Items:
    """The data a batch runs over, as rows of fields for the prompt template.

    A list, tuple or pandas Series gives ``{"item": value}`` per element; a DataFrame gives its
    row as ``{column: value}``. ``frame`` keeps the DataFrame for the output copy.

    >>> Items.of(["a", "b"]).rows
    [{'item': 'a'}, {'item': 'b'}]
    """

    def __init__(self, rows: list[dict[str, Any]], frame: Any = None) -> None:
        self.rows = rows
        self.frame = frame

    def __len__(self) -> int:
        return len(self.rows)

    @classmethod
    def of(cls, data: Any) -> Items:
        if is_frame(data):
            columns = [str(c) for c in data.columns]
            tuples = data.itertuples(index=False, name=None)
            rows = [dict(zip(columns, row, strict=True)) for row in tuples]
            return cls(rows, frame=data)
        if is_series(data):
            return cls([{"item": v} for v in data.tolist()])
        if isinstance(data, (str, bytes, Mapping)) or not isinstance(data, Iterable):
            raise TypeError(
                f"a {type(data).__name__} is not a dataset: use a list, a pandas Series or a "
                "DataFrame"
            )
        return cls([{"item": v} for v in data])


def is_frame(data: Any) -> bool:
    return type(data).__name__ == "DataFrame" and hasattr(data, "itertuples")


def is_series(data: Any) -> bool:
    return type(data).__name__ == "Series" and hasattr(data, "tolist")


def item_body(
    base: Mapping[str, Any], template: str, row: Mapping[str, Any], namespace: Mapping[str, Any]
) -> dict[str, Any]:
    """The request for one item: ``base`` with the template filled by the brace-safe rule, the
    row's fields first, then ``namespace`` (the user's variables, or nothing with --literal).

    >>> item_body({"model": "m"}, "Is {item} a {kind}? {}", {"item": "cat"}, {})
    {'model': 'm', 'prompt': 'Is cat a {kind}? {}'}
    """
    body = dict(base)
    body["prompt"] = fill_prompt(template, ChainMap(dict(row), dict(namespace)))
    return body


def cache_key(path: str, body: Mapping[str, Any]) -> str:
    """A hash of what decides the answer: the endpoint and the canonical JSON of the body, with
    no host, ``stream`` or ``keep_alive``, so the same request hits from any server.

    >>> a = cache_key("/api/generate", {"model": "m", "prompt": "x", "stream": True})
    >>> a == cache_key("/api/generate", {"prompt": "x", "model": "m", "keep_alive": "5m"})
    True
    >>> a == cache_key("/api/generate", {"model": "m", "prompt": "y"})
    False
    """
    kept = {k: v for k, v in body.items() if k not in NOT_IN_KEY}
    text = json.dumps(
        {"path": path, "body": kept}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(text.encode()).hexdigest()


def permanent_fault(error: OllamaError) -> bool:
    """Whether a host fault will not pass by waiting: the model is not there (404).

    >>> permanent_fault(ModelNotFound("m", "gone")), permanent_fault(ResponseError(503, "busy"))
    (True, False)
    """
    return isinstance(error, ModelNotFound)


@dataclass(frozen=True)
class Backoff:
    """When a host that failed is tried again: after ``first`` s, then twice as long each time
    it fails again, at most ``cap`` s; after ``retries`` failed retries in a row (so
    ``retries + 1`` failures) it is out for good. A dropped connection, an Ollama restart or a
    503 "server busy" then costs a pause, not the run.

    >>> b = Backoff(first=1.0, cap=5.0, retries=4)
    >>> [b.delay(n) for n in range(1, 6)], b.gives_up(4), b.gives_up(5)
    ([1.0, 2.0, 4.0, 5.0, 5.0], False, True)
    """

    first: float = 1.0
    cap: float = 30.0
    retries: int = 4

    def delay(self, failures: int) -> float:
        """The cool-down after the ``failures``-th failure in a row (1, 2, …)."""
        return float(min(self.cap, self.first * 2 ** max(failures - 1, 0)))

    def gives_up(self, failures: int) -> bool:
        return failures > self.retries


def host_fault(error: OllamaError) -> bool:
    """Whether ``error`` says the host failed (try the item elsewhere), not the item itself. A
    missing model counts: every other item would fail there the same way.

    >>> host_fault(ConnectionFailed("http://h:1")), host_fault(ResponseError(400, "bad"))
    (True, False)
    """
    if isinstance(error, ModelNotFound):
        return True
    if isinstance(error, ResponseError):
        return error.status in HOST_STATUSES
    return isinstance(error, (ConnectionFailed, ReadTimedOut, StreamTruncated, UnexpectedReply))


@dataclass
class HostState:
    """One host's share of a run. A host is *up*, *cooling down* after a failure (``error`` set,
    ``retry_at`` says when it may be tried again) or *out* for good (``out``)."""

    url: str
    slots: int
    in_flight: int = 0
    done: int = 0
    failed: int = 0
    tokens: int = 0
    error: str | None = None  # why it was set aside (the latest failure)
    failures: int = 0  # failures in a row; an answer (good or not) resets them
    retry_at: float | None = None  # while cooling down: when it may be tried again
    out: bool = False  # set aside for good: the model is missing, or it failed too often
    attempt: int = 0  # counts failures, so items sent before one do not count twice

    @property
    def alive(self) -> bool:
        """Up: not cooling down, not out."""
        return self.error is None

    def usable(self, now: float) -> bool:
        """May be sent to now: up, or its cool-down is over (then one probe at a time)."""
        if self.out:
            return False
        return self.retry_at is None or now >= self.retry_at

    def capacity(self) -> int:
        """Requests it may have in flight: all its slots when up, one while it is on trial."""
        return self.slots if self.failures == 0 else 1


@dataclass
class Snapshot:
    """What the progress view shows at one moment."""

    total: int
    done: int
    failed: int
    cached: int
    in_flight: int
    tokens: int
    elapsed: float
    hosts: list[HostState]
    finished_here: int  # items this run finished (not from the cache): the pace for time left
    now: float = 0.0  # the run's clock, for the time left of each host's cool-down

    @property
    def waiting(self) -> int:
        return self.total - self.done - self.failed - self.in_flight

    @property
    def rate(self) -> float | None:
        return self.tokens / self.elapsed if self.elapsed > 0.2 and self.tokens else None

    @property
    def seconds_left(self) -> float | None:
        left = self.total - self.done - self.failed
        if not left:
            return 0.0
        if not self.finished_here or self.elapsed <= 0:
            return None
        return left * self.elapsed / self.finished_here


@dataclass
class Plan:
    """Which items wait, which run where, and which hosts are still usable.

    Items go out in input order to any host with a free slot. An item whose host failed goes
    back to the front of the queue and that host cools down for :class:`Backoff`'s delay; then
    it gets one item on trial, and all its slots again once it answers. Items wait for a host
    that may still come back; when every host is out for good (a missing model, or too many
    failures in a row), the items still waiting fail with the last host's error.

    >>> plan = Plan.start([0, 1, 2], {"a": 1, "b": 1}, Backoff(first=1.0, retries=1))
    >>> plan.take("a", 0.0), plan.take("a", 0.0), plan.take("b", 0.0)
    (0, None, 1)
    >>> plan.host_failed(0, "a", "refused", 0.0); plan.take("b", 0.5), plan.take("a", 0.5)
    (None, None)
    >>> plan.finish(1, "b", ok=True); plan.take("a", 1.0), plan.take("b", 1.0)
    (0, 2)
    >>> plan.host_failed(0, "a", "refused", 1.0); plan.hosts["a"].out, plan.take("b", 1.0)
    (True, None)
    """

    pending: deque[int]
    hosts: dict[str, HostState]
    backoff: Backoff = field(default_factory=Backoff)
    running: dict[int, tuple[str, int]] = field(default_factory=dict)  # index: (url, attempt)
    lost: dict[int, str] = field(default_factory=dict)  # items no host was left to run

    @classmethod
    def start(
        cls, todo: Iterable[int], slots: Mapping[str, int], backoff: Backoff | None = None
    ) -> Plan:
        hosts = {url: HostState(url, n) for url, n in slots.items()}
        return cls(deque(todo), hosts, backoff or Backoff())

    def take(self, url: str, now: float) -> int | None:
        host = self.hosts[url]
        if not host.usable(now) or host.in_flight >= host.capacity() or not self.pending:
            return None
        index = self.pending.popleft()
        self.running[index] = (url, host.attempt)
        host.in_flight += 1
        return index

    def finish(self, index: int, url: str, *, ok: bool, tokens: int = 0) -> None:
        """Item ``index`` was answered (well or not): the host works, whatever it said."""
        host = self.hosts[url]
        self.running.pop(index, None)
        host.in_flight -= 1
        host.tokens += tokens
        if ok:
            host.done += 1
        else:
            host.failed += 1
        if not host.out:
            host.failures, host.error, host.retry_at = 0, None, None

    def host_failed(
        self, index: int, url: str, error: str, now: float, *, permanent: bool = False
    ) -> None:
        """The host failed item ``index``: the item waits again, first in line, and the host
        cools down (or is out for good). Items it had in flight from before that failure come
        back here too but do not count as failures of their own."""
        host = self.hosts[url]
        _, attempt = self.running.pop(index, (url, host.attempt))
        host.in_flight -= 1
        self.pending.appendleft(index)
        if permanent and not host.out:
            host.out, host.error, host.retry_at = True, error, None
        elif attempt == host.attempt and not host.out:
            host.attempt += 1
            host.failures += 1
            host.error = error
            if self.backoff.gives_up(host.failures):
                host.out, host.retry_at = True, None
            else:
                host.retry_at = now + self.backoff.delay(host.failures)
        if all(h.out for h in self.hosts.values()):
            while self.pending:
                self.lost[self.pending.popleft()] = error

    def wake_in(self, url: str, now: float) -> float | None:
        """Seconds until ``url``'s cool-down ends, or ``None`` when it is not cooling down."""
        host = self.hosts[url]
        if host.out or host.retry_at is None or now >= host.retry_at:
            return None
        return host.retry_at - now

    @property
    def over(self) -> bool:
        """Nothing waits and nothing runs: every item is finished, failed or lost (items wait
        while any host may still come back)."""
        return not self.pending and not self.running

    @property
    def in_flight(self) -> int:
        return len(self.running)


def ordered(results: Mapping[int, Any], total: int, missing: Any) -> Iterator[Any]:
    """Results in input order, ``missing(i)`` where an item has none.

    >>> list(ordered({1: "b", 0: "a"}, 3, lambda i: None))
    ['a', 'b', None]
    """
    for i in range(total):
        yield results[i] if i in results else missing(i)


def schema_fields(schema: Any) -> list[str]:
    """The top-level field names a ``--format`` schema (dict or pydantic class) declares.

    >>> schema_fields({"type": "object", "properties": {"name": {}, "age": {}}})
    ['name', 'age']
    """
    fields_of = getattr(schema, "model_fields", None)
    if isinstance(fields_of, Mapping):
        return [str(name) for name in fields_of]
    if isinstance(schema, Mapping) and isinstance(schema.get("properties"), Mapping):
        return [str(name) for name in schema["properties"]]
    return []


def free_name(name: str, taken: Sequence[str]) -> str:
    """``name``, or ``name_2``, ``name_3``... when the input already has such a column.

    >>> free_name("answer", ["text", "answer"])
    'answer_2'
    """
    if name not in taken:
        return name
    n = 2
    while f"{name}_{n}" in taken:
        n += 1
    return f"{name}_{n}"
