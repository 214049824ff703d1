"""The transport of a batch: worker threads, ``parallel`` per host, each with its own client.

Each worker takes the next waiting item from the shared :class:`~.core.Plan`, streams it through
:func:`~ollama_magic.session.run` (so an item is answered exactly as a ``%%ollama`` cell would
be) and reports back. A worker whose host is cooling down after a failure waits on the shared
condition until the plan's retry time (never a plain sleep), so Ctrl-C or the end of the run
wakes it at once. The calling thread only waits, hands snapshots to ``on_tick`` and takes
Ctrl-C: then nothing more is sent, the open streams are shut at once (the server stops
generating) and every finished item is kept. No display code here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..errors import OllamaError
from ..live import NullSink
from ..result import ERROR, GenerationResult
from ..session import run
from .core import Backoff, Plan, Snapshot, host_fault, permanent_fault

if TYPE_CHECKING:
    from ..client import OllamaClient, Stream

STOPPED = "interrupted by the user"
NO_HOST = "not sent: every host was set aside"


@dataclass
class Job:
    """What a run sends: ``body(i)`` for each index in ``todo``, to ``path`` on ``hosts``.

    ``check(result)`` says why a finished answer is still a failure (``--format`` that does not
    parse), or ``None``; ``done(i, result)`` hears of each good one (the cache writes it).
    """

    path: str
    total: int
    todo: Sequence[int]
    body: Callable[[int], dict[str, Any]]
    hosts: Sequence[str]
    parallel: int
    check: Callable[[GenerationResult], str | None] = lambda result: None
    done: Callable[[int, GenerationResult], None] = lambda index, result: None
    cached: int = 0  # items answered before the run (from the cache), for the counts


@dataclass
class Outcome:
    """What a run did: results by index (good and failed), errors by index, and whether it was
    interrupted (then the items that were not finished have neither)."""

    results: dict[int, GenerationResult] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    interrupted: bool = False
    last: Snapshot | None = None


class _Counter(NullSink):
    """Counts the pieces a worker receives, for the live tokens/s (read without a lock: an int)."""

    def __init__(self) -> None:
        self.tokens = 0

    def thinking(self, text: str) -> None:
        self.tokens += 1

    def answer(self, text: str) -> None:
        self.tokens += 1


class _Reused:
    """A stream whose connection goes back to the pool when it reached its final object."""

    def __init__(self, stream: Stream) -> None:
        self._stream = stream
        self._done = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for chunk in self._stream:
            self._done = self._done or chunk.get("done") is True
            yield chunk

    def close(self) -> None:
        if self._done:
            self._stream.release()
        else:
            self._stream.close()

    def abort(self) -> None:
        self._stream.abort()


class _Tracked:
    """A client whose open stream the calling thread can shut down (Ctrl-C)."""

    def __init__(self, client: OllamaClient) -> None:
        self.client = client
        self.base_url = client.base_url
        self._lock = threading.Lock()
        self._stream: _Reused | None = None
        self._stopping = False
        self._ps: list[dict[str, Any]] | OllamaError | None = None

    def stream(self, path: str, body: dict[str, Any], method: str = "POST") -> _Reused:
        stream = _Reused(self.client.stream(path, body, method))
        with self._lock:
            self._stream = stream
            stop_now = self._stopping
        if stop_now:
            stream.abort()
        return stream

    def listing(self, path: str) -> list[dict[str, Any]]:
        """``/api/ps`` once per worker and run: :func:`~ollama_magic.session.run` asks it after
        each long prompt (was it cut to fit?), and the window cannot change while every item
        shares its options. A failure is remembered too (a proxy may not serve ``/api/ps``)."""
        if path != "/api/ps":
            return self.client.listing(path)
        if self._ps is None:
            try:
                self._ps = self.client.listing(path)
            except OllamaError as exc:
                self._ps = exc
        if isinstance(self._ps, OllamaError):
            raise self._ps
        return self._ps

    def forget(self) -> None:
        with self._lock:
            self._stream = None

    def abort(self) -> None:
        with self._lock:
            self._stopping = True
            stream = self._stream
        if stream is not None:
            stream.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


class Runner:
    """One run of a :class:`Job` over clients made by ``connect(url)``; a host that fails is
    tried again on ``backoff``'s schedule."""

    def __init__(
        self,
        job: Job,
        connect: Callable[[str], OllamaClient],
        *,
        clock: Callable[[], float] = time.monotonic,
        backoff: Backoff | None = None,
    ) -> None:
        self.job = job
        self.clock = clock
        self.plan = Plan.start(job.todo, {url: job.parallel for url in job.hosts}, backoff)
        self.outcome = Outcome()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._workers: list[tuple[str, _Tracked, _Counter]] = []
        for url in job.hosts:
            for _ in range(job.parallel):
                self._workers.append((url, _Tracked(connect(url)), _Counter()))
        self._finished_here = 0
        self._started = 0.0

    def run(self, on_tick: Callable[[Snapshot], None], tick: float = 0.5) -> Outcome:
        """Run to the end or to Ctrl-C; ``on_tick`` gets a snapshot at least every ``tick`` s
        and after each item (on this thread)."""
        self._started = self.clock()
        threads = [
            threading.Thread(target=self._work, args=w, name=f"ollama-batch-{i}", daemon=True)
            for i, w in enumerate(self._workers)
        ]
        try:
            for thread in threads:
                thread.start()
            while True:
                with self._cond:
                    if self.plan.over:
                        break
                    self._cond.wait(timeout=tick)
                    snapshot = self.snapshot()
                on_tick(snapshot)
        except KeyboardInterrupt:
            self.outcome.interrupted = True
        finally:
            self._halt(threads)
        with self._cond:
            self._lose()
            self.outcome.last = self.snapshot()
        return self.outcome

    def _halt(self, threads: list[threading.Thread]) -> None:
        """Stop sending, shut the open streams and wait for the workers (a second Ctrl-C
        while waiting is taken as the first one was)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for _, tracked, _ in self._workers:
            tracked.abort()
        for thread in threads:
            while thread.is_alive():
                try:
                    thread.join(timeout=0.1)
                except KeyboardInterrupt:
                    self.outcome.interrupted = True
        for _, tracked, _ in self._workers:
            tracked.client.close()

    def _lose(self) -> None:
        """Items no host was left to run fail with the last host's error."""
        for index in self.plan.lost:
            if index not in self.outcome.errors:
                self.outcome.errors[index] = NO_HOST
                self.outcome.results[index] = GenerationResult(
                    str(self.job.body(index).get("model", "")),
                    done_reason=ERROR,
                    error=self.outcome.errors[index],
                )

    def _take(self, url: str) -> int | None:
        """The next item for ``url``, waiting for a free slot, an item, or the end of its
        cool-down; ``None`` when the run stops or the host is out for good."""
        with self._cond:
            while True:
                host = self.plan.hosts[url]
                if self._stop.is_set() or host.out or self.plan.over:
                    return None
                now = self.clock()
                index = self.plan.take(url, now)
                if index is not None:
                    return index
                self._cond.wait(timeout=self.plan.wake_in(url, now))

    def _work(self, url: str, tracked: _Tracked, counter: _Counter) -> None:
        while True:
            index = self._take(url)
            if index is None:
                return
            try:
                result, error, problem = self._one(index, tracked, counter)
            except Exception as exc:  # a bug or a full disk must not leave the item running
                model = str(self.job.body(index).get("model", ""))
                result, error = GenerationResult(model, done_reason=ERROR, error=str(exc)), None
                problem = f"{type(exc).__name__}: {exc}"
            with self._cond:
                self._report(index, url, result, error, problem)
                self._cond.notify_all()

    def _one(
        self, index: int, tracked: _Tracked, counter: _Counter
    ) -> tuple[GenerationResult, OllamaError | None, str | None]:
        """Send item ``index``; its result, the transport's error, and why a finished answer
        still fails (``--format``); a good one is handed to ``job.done`` (the cache)."""
        result, error = run(
            tracked,  # type: ignore[arg-type]  # an OllamaClient by delegation
            self.job.path,
            self.job.body(index),
            counter,
            stopped=lambda: STOPPED if self._stop.is_set() else None,
        )
        tracked.forget()
        problem = None
        if error is None and result.ok:
            problem = self.job.check(result)
            if problem is None:
                self.job.done(index, result)
        return result, error, problem

    def _report(
        self,
        index: int,
        url: str,
        result: GenerationResult,
        error: OllamaError | None,
        problem: str | None,
    ) -> None:
        plan = self.plan
        if self._stop.is_set() and not result.ok:  # cut by Ctrl-C: neither done nor failed
            plan.running.pop(index, None)
            plan.hosts[url].in_flight -= 1
            return
        if error is not None and host_fault(error):
            plan.host_failed(index, url, str(error), self.clock(), permanent=permanent_fault(error))
            return
        self._finished_here += 1
        self.outcome.results[index] = result
        message = problem or (str(error) if error else None)
        if message is None and not result.ok:
            message = result.error
        if message is None and not result.ok:
            message = f"the answer ended with done_reason {result.done_reason!r}"
        if message is not None:
            self.outcome.errors[index] = message
        plan.finish(index, url, ok=message is None, tokens=result.streamed_tokens)

    def snapshot(self) -> Snapshot:
        """The counts now (call with the lock held)."""
        live: dict[str, int] = {}
        for url, _, counter in self._workers:
            live[url] = live.get(url, 0) + counter.tokens
        hosts = [replace(h, tokens=live.get(h.url, 0)) for h in self.plan.hosts.values()]
        ok = sum(h.done for h in self.plan.hosts.values())
        failed = sum(h.failed for h in self.plan.hosts.values()) + len(self.plan.lost)
        return Snapshot(
            total=self.job.total,
            done=ok + self.job.cached,
            failed=failed,
            cached=self.job.cached,
            in_flight=self.plan.in_flight,
            tokens=sum(live.values()),
            elapsed=self.clock() - self._started,
            hosts=hosts,
            finished_here=self._finished_here,
            now=self.clock(),
        )
