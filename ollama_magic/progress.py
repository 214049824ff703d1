"""The state of a pull, push or create, built from Ollama's progress objects. Pure: no I/O.

Ollama streams ``{"status", "digest"?, "total"?, "completed"?}`` objects: per-layer byte counts
(``pulling 6a0746a1ec1a``) between plain status lines (``pulling manifest``, ``verifying sha256
digest``, ``writing manifest``, ``success``). :class:`Progress` folds them into layers, totals and
a transfer rate; the caller passes the clock, so every rendering is a function of its inputs.
"""

from __future__ import annotations

import html
from collections import deque
from dataclasses import dataclass

from .fields import count, one_line, text
from .present import human_bytes, human_rate

RATE_WINDOW = 3.0  # seconds of samples the transfer rate is averaged over
BAR_WIDTH = 24


@dataclass
class Layer:
    """One blob being transferred."""

    digest: str
    status: str
    total: int = 0
    completed: int = 0

    @property
    def fraction(self) -> float:
        return min(1.0, self.completed / self.total) if self.total else 0.0


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """A text progress bar.

    >>> bar(0.5, 8), bar(1.0, 4), bar(0, 4)
    ('▕████    ▏', '▕████▏', '▕    ▏')
    """
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "▕" + "█" * filled + " " * (width - filled) + "▏"


class Progress:
    """Everything a progress display needs, fed one status object at a time."""

    def __init__(self, action: str, name: str, started: float) -> None:
        self.action = action  # "pull", "push" or "create"
        self.name = name
        self.started = started
        self.layers: dict[str, Layer] = {}
        self.statuses: list[str] = []  # every distinct status line, in order
        self.status = ""
        self._samples: deque[tuple[float, int]] = deque()

    def feed(self, item: dict[str, object], now: float) -> None:
        """Fold in one progress object; fields of the wrong type (a ``total`` of ``"abc"`` or
        ``1e400``, a ``status`` that is a list) are ignored."""
        status = one_line(text(item.get("status")), limit=200)
        digest = text(item.get("digest"))
        if status and (not self.statuses or self.statuses[-1] != status):
            self.statuses.append(status)
        self.status = status or self.status
        if digest:
            layer = self.layers.setdefault(digest, Layer(digest, status))
            layer.status = status or layer.status
            total, completed = count(item.get("total")), count(item.get("completed"))
            if total is not None:
                layer.total = total
            if completed is not None:
                layer.completed = completed
            self._samples.append((now, self.completed))
            while len(self._samples) > 2 and now - self._samples[0][0] > RATE_WINDOW:
                self._samples.popleft()

    @property
    def total(self) -> int:
        return sum(layer.total for layer in self.layers.values())

    @property
    def completed(self) -> int:
        return sum(layer.completed for layer in self.layers.values())

    @property
    def fraction(self) -> float:
        """The share done over all layers, from 0 to 1 (whatever the server's numbers say)."""
        return min(1.0, self.completed / self.total) if self.total else 0.0

    @property
    def succeeded(self) -> bool:
        return self.status == "success"

    def rate(self) -> float:
        """Bytes per second over the last few seconds (0 until two samples exist)."""
        if len(self._samples) < 2:
            return 0.0
        (t0, c0), (t1, c1) = self._samples[0], self._samples[-1]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0

    def line(self) -> str:
        """One terminal line, like the Ollama CLI's progress line.

        >>> p = Progress("pull", "m", 0.0)
        >>> p.feed({"status": "pulling abc", "digest": "sha256:abc", "total": 100}, 0.0)
        >>> p.feed({"status": "pulling abc", "digest": "sha256:abc", "total": 100,
        ...         "completed": 50}, 1.0)
        >>> p.line()
        'pulling abc   50% ▕████████████            ▏   50 B/100 B  50 B/s'
        """
        layer = self._current_layer()
        if layer is None:
            return self.status
        text = (
            f"{layer.status}  {layer.fraction * 100:3.0f}% {bar(layer.fraction)} "
            f"{human_bytes(layer.completed):>6}/{human_bytes(layer.total)}"
        )
        rate = self.rate()
        return text + (f"  {human_rate(rate)}" if rate > 0 else "")

    def html(self) -> str:
        """Status lines in order, with a bar per layer where its line is; all escaped."""
        layer_of = {layer.status: layer for layer in self.layers.values()}
        rows = []
        for status in self.statuses:
            layer = layer_of.get(status)
            if layer is None:
                rows.append(
                    f"<tr><td colspan=4 style='text-align:left;font-family:monospace'>"
                    f"{html.escape(status)}</td></tr>"
                )
                continue
            rows.append(
                "<tr><td style='text-align:left;font-family:monospace'>"
                f"{html.escape(status)}</td>"
                f"<td><progress value='{layer.completed}' max='{max(layer.total, 1)}' "
                f"style='width:16em'></progress></td>"
                f"<td style='text-align:right'>{layer.fraction * 100:.0f}%</td>"
                f"<td style='text-align:left'>{human_bytes(layer.completed)} / "
                f"{human_bytes(layer.total)}</td></tr>"
            )
        rate = self.rate()
        total = (
            f"{human_bytes(self.completed)} of {human_bytes(self.total)}" if self.total else ""
        )
        tail = " · ".join(part for part in (total, human_rate(rate) if rate > 0 else "") if part)
        return (
            f"<div><b>{html.escape(self.action)} {html.escape(self.name)}</b>"
            f"<table>{''.join(rows)}</table><div style='opacity:0.7'>{tail}</div></div>"
        )

    def summary(self, now: float) -> str:
        """The final line: what happened, how much, how long.

        >>> p = Progress("pull", "m:latest", 0.0)
        >>> p.feed({"status": "pulling x", "digest": "sha256:x", "total": 2_000_000,
        ...         "completed": 2_000_000}, 1.5)
        >>> p.feed({"status": "success"}, 2.0)
        >>> p.summary(2.0)
        'Pulled m:latest: 2.0 MB in 2.0 s.'
        """
        verb = {"pull": "Pulled", "push": "Pushed", "create": "Created"}.get(
            self.action, self.action
        )
        size = f": {human_bytes(self.total)}" if self.total else ""
        return f"{verb} {self.name}{size} in {now - self.started:.1f} s."

    def stopped(self) -> str:
        """Where an interrupted or failed transfer stopped.

        >>> p = Progress("pull", "m", 0.0)
        >>> p.feed({"status": "pulling x", "digest": "sha256:x", "total": 400,
        ...         "completed": 100}, 1.0)
        >>> p.stopped()
        'at 25% (100 B of 400 B)'
        """
        if not self.total:
            return f"at '{self.status}'" if self.status else "before it started"
        share = self.fraction * 100
        return f"at {share:.0f}% ({human_bytes(self.completed)} of {human_bytes(self.total)})"

    def _current_layer(self) -> Layer | None:
        for layer in reversed(self.layers.values()):
            if layer.status == self.status:
                return layer
        return None
