"""How a batch shows its progress: one live view, never one output per item.

In a notebook, one display updated at most twice a second, which starts and ends empty (nbval
sees only first versions, a saved notebook the last: both see nothing), then a summary line
printed once. In a terminal, one line rewritten with ``\\r`` (on a TTY only). The texts are
pure functions of a :class:`~.core.Snapshot`; model text never appears here, and host names
are escaped.
"""

from __future__ import annotations

import html
import math
import uuid
from collections.abc import Callable
from typing import Protocol, TextIO

from ..live import EMPTY, IPythonPublisher, Publisher, RewrittenLine, Throttle
from ..progress import bar
from .core import HostState, Snapshot

#: Least time between two notebook updates (the browser redraws the whole output each time).
NOTEBOOK_INTERVAL = 0.5


def clock_text(seconds: float) -> str:
    """
    >>> clock_text(42), clock_text(125), clock_text(7322)
    ('42 s', '2 min 5 s', '2 h 2 min')
    """
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def counts(s: Snapshot) -> str:
    """The one line: done, failed, in flight, tokens/s, time left.

    >>> from ollama_magic.batch.core import HostState
    >>> snap = Snapshot(10, 4, 1, 0, 2, 300, 3.0, [HostState("h", 2)], 5)
    >>> counts(snap)
    '4/10 done · 1 failed · 2 in flight · 100.0 tokens/s · 3 s left'
    """
    parts = [f"{s.done}/{s.total} done"]
    if s.failed:
        parts.append(f"{s.failed} failed")
    parts.append(f"{s.in_flight} in flight")
    rate = s.rate
    if rate:
        parts.append(f"{rate:.1f} tokens/s")
    left = s.seconds_left
    if left is not None and s.done + s.failed < s.total:
        parts.append(f"{clock_text(left)} left")
    return " · ".join(parts)


def host_state(h: HostState, now: float, *, detail: bool = False) -> str:
    """What a host is doing: its counts when up, its cool-down, or why it is out for good.

    >>> h = HostState("h", 2, done=3, in_flight=1)
    >>> host_state(h, 0.0)
    '3 done, 1 in flight'
    >>> h.error, h.failures, h.retry_at = "cannot connect", 1, 2.2
    >>> host_state(h, 0.5), host_state(h, 3.0)
    ('retrying in 2 s', 'retrying now')
    >>> h.out = True; host_state(h, 3.0)
    'out for good: cannot connect'
    """
    if h.out:
        return f"out for good: {h.error if detail else terse(h.error or '')}"
    if h.retry_at is not None and now < h.retry_at:
        wait = f"retrying in {clock_text(math.ceil(h.retry_at - now))}"
        return f"{wait} ({h.error})" if detail else wait
    if h.failures:
        return "retrying now"
    if detail:
        return f"{h.done} done · {h.failed} failed · {h.in_flight} in flight · {h.tokens} tokens"
    return f"{h.done} done, {h.in_flight} in flight"


def terse(text: str, width: int = 60) -> str:
    """A server's message fit for one terminal line: printable, at most ``width`` characters.

    >>> terse("bad\x1b[2Jnews " + "x" * 80, 12)
    'bad?[2Jnews…'
    """
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= width else text[: width - 1] + "…"


def host_line(s: Snapshot) -> str:
    """Per host, when there are several or one is in trouble: its state (:func:`host_state`)."""
    if len(s.hosts) < 2 and all(h.alive for h in s.hosts):
        return ""
    return " | ".join(f"{h.url} {host_state(h, s.now)}" for h in s.hosts)


def line(s: Snapshot, width: int = 24) -> str:
    """The terminal line: a bar, the counts and (with several hosts) each host."""
    finished = (s.done + s.failed) / s.total if s.total else 1.0
    hosts = host_line(s)
    return f"{bar(finished, width)} {counts(s)}" + (f" | {hosts}" if hosts else "")


def html_view(s: Snapshot) -> str:
    """The notebook view: a progress bar, the counts, and a row per host when several or when
    one is cooling down or out."""
    finished = s.done + s.failed
    rows = ""
    if len(s.hosts) > 1 or not all(h.alive for h in s.hosts):
        cells = []
        for h in s.hosts:
            state = host_state(h, s.now, detail=True)
            cells.append(
                f"<tr><td style='text-align:left;font-family:monospace'>{html.escape(h.url)}"
                f"</td><td style='text-align:left'>{html.escape(state)}</td></tr>"
            )
        rows = f"<table>{''.join(cells)}</table>"
    return (
        f"<div><progress value='{finished}' max='{max(s.total, 1)}' style='width:24em'>"
        f"</progress> {html.escape(counts(s))}{rows}</div>"
    )


def summary(s: Snapshot, *, interrupted: bool = False, first_error: str | None = None) -> str:
    """The line printed once at the end.

    >>> from ollama_magic.batch.core import HostState
    >>> print(summary(Snapshot(3, 2, 1, 1, 0, 40, 2.0, [HostState("h", 2)], 2), first_error="x"))
    ... # doctest: +NORMALIZE_WHITESPACE
    3 items: 2 done (1 from the cache), 1 failed, in 2.00 s, 20.0 tokens/s.
    Run it again to retry the failed ones. First error: x
    """
    parts = [f"{s.done} done" + (f" ({s.cached} from the cache)" if s.cached else "")]
    if s.failed:
        parts.append(f"{s.failed} failed")
    unsent = s.total - s.done - s.failed
    if unsent:
        parts.append(f"{unsent} not finished")
    text = f"{s.total} item{'s' if s.total != 1 else ''}: " + ", ".join(parts)
    if s.finished_here or s.failed:
        text += f", in {s.elapsed:.2f} s"
        if s.tokens and s.elapsed > 0:  # always when tokens came: the line reads the same each run
            text += f", {s.tokens / s.elapsed:.1f} tokens/s"
    text += "."
    for h in s.hosts:
        if h.out:
            tries = f" after {h.failures} failures in a row" if h.failures > 1 else ""
            text += f" {h.url} was set aside for good{tries}: {h.error}."
        elif not h.alive:
            text += f" {h.url} was set aside: {h.error}."
    if interrupted:
        text += " Interrupted: the finished answers are kept; run it again to send only the rest."
    elif s.failed:
        text += " Run it again to retry the failed ones."
    if first_error:
        text += f" First error: {first_error}"
    return text


class View(Protocol):
    def update(self, snapshot: Snapshot, now: float) -> None: ...

    def close(self) -> None: ...


class NoView:
    """Shows nothing (``display="none"``, ``--quiet``)."""

    def update(self, snapshot: Snapshot, now: float) -> None:
        pass

    def close(self) -> None:
        pass


class NotebookView:
    """One display, shown empty, updated at most every ``interval`` s, emptied at the end."""

    def __init__(self, publisher: Publisher, *, interval: float = NOTEBOOK_INTERVAL) -> None:
        self._publisher = publisher
        self._throttle = Throttle(interval)
        self._display_id = uuid.uuid4().hex
        self._shown = False

    def update(self, snapshot: Snapshot, now: float) -> None:
        if not self._shown:
            self._publisher.show(EMPTY, self._display_id)
            self._shown = True
        if self._throttle.take(now):
            self._publisher.update({"text/html": html_view(snapshot)}, self._display_id)

    def close(self) -> None:
        if self._shown:
            self._publisher.update(EMPTY, self._display_id)


class TerminalView:
    """One line rewritten in place on a TTY (twice a second); nothing when output is a file."""

    def __init__(self, out: TextIO | None = None, *, interval: float = 0.5) -> None:
        self._line = RewrittenLine(out, interval=interval)

    def update(self, snapshot: Snapshot, now: float) -> None:
        self._line.show(now, lambda: line(snapshot))

    def close(self) -> None:
        self._line.clear()

def choose_view(mode: str, in_kernel: Callable[[], bool]) -> View:
    """``auto``: the notebook view in a kernel, the terminal line elsewhere; ``none``: nothing."""
    if mode == "none":
        return NoView()
    if mode == "text" or (mode == "auto" and not in_kernel()):
        return TerminalView()
    return NotebookView(IPythonPublisher())
