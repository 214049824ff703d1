"""Where a streaming answer is shown: live in a notebook, as plain text in a terminal, or nowhere.

The notebook view is built for three constraints at once:

* **Cheap for the browser.** An update replaces a whole output, so re-sending the full answer on
  every update costs the square of its length. The answer is shown in *slots* (outputs of the
  cell): only the last slot is updated, and it is closed and a new one opened at a line break
  once it grows past a size that depends on the stream's pace. Updates are throttled and wait
  for enough new text to be worth sending, so display bytes stay a small multiple of the answer.
* **Honest under nbval.** nbval ignores ``update_display_data``. Every live slot therefore starts
  as an empty bundle and is emptied again at the end, and the final answer is displayed once as
  a new output. A saved notebook and a re-run both hold: empty slots (compared as nothing) and
  the same final rendering.
* **Safe.** Only bundles from :mod:`ollama_magic.render` are shown: model text is rendered to
  HTML in the kernel and sanitized there, live pieces included.
"""

from __future__ import annotations

import re
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol, TextIO

from .logprobs import tokens_text
from .progress import Progress
from .render import (
    footer_text,
    html_bundle,
    live_status,
    live_thinking_piece,
    markdown_html,
    open_fence,
    result_bundle,
    thinking_block,
)
from .result import GenerationResult

Bundle = dict[str, Any]
_TAG = re.compile(r"<[^>]+>")
EMPTY: Bundle = {}


class Throttle:
    """At most one update every ``interval`` seconds: the state each throttled view keeps."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.last = -1e9  # when the last update went out

    def since(self, now: float) -> float:
        return now - self.last

    def ready(self, now: float) -> bool:
        return self.since(now) >= self.interval

    def take(self, now: float) -> bool:
        """Whether an update may go out now; if so, it counts as sent."""
        if not self.ready(now):
            return False
        self.last = now
        return True



class RewrittenLine:
    """One status line rewritten in place on a TTY, at most every ``interval`` seconds: the
    terminal form of a progress view (pulls, ``--map``). Writes nothing when ``out`` is no TTY."""

    def __init__(self, out: TextIO | None = None, *, interval: float) -> None:
        self.out = out or sys.stdout
        self.tty = bool(getattr(self.out, "isatty", lambda: False)())
        self._throttle = Throttle(interval)
        self._width = 0

    def show(self, now: float, text: Callable[[], str]) -> None:
        """Rewrite the line with ``text()`` (only built when an update may go out)."""
        if not self.tty or not self._throttle.take(now):
            return
        said = text()
        self.out.write("\r" + said.ljust(self._width))
        self._width = len(said)
        self.out.flush()

    def clear(self) -> None:
        if self._width:
            self.out.write("\r" + " " * self._width + "\r")
            self.out.flush()
            self._width = 0

class Sink(Protocol):
    """Receives a generation as it happens (the session calls these in order)."""

    def thinking(self, text: str) -> None: ...

    def answer(self, text: str) -> None: ...

    def retract(self, reasoning: str) -> None:
        """Everything shown as answer so far was reasoning; ``reasoning`` is all of it."""
        ...

    def finish(self, result: GenerationResult) -> None: ...


class Publisher(Protocol):
    """The three display operations a notebook front end understands."""

    def show(self, bundle: Bundle, display_id: str) -> None: ...

    def update(self, bundle: Bundle, display_id: str) -> None: ...

    def final(self, bundle: Bundle) -> None: ...


class IPythonPublisher:
    """Publishes through IPython's display machinery (``display_data`` and updates)."""

    def show(self, bundle: Bundle, display_id: str) -> None:
        from IPython.display import display

        display(bundle, raw=True, display_id=display_id)

    def update(self, bundle: Bundle, display_id: str) -> None:
        from IPython.display import update_display

        update_display(bundle, raw=True, display_id=display_id)

    def final(self, bundle: Bundle) -> None:
        from IPython.display import display

        display(bundle, raw=True)


class NullSink:
    """Shows nothing (``--quiet``)."""

    def thinking(self, text: str) -> None:
        pass

    def answer(self, text: str) -> None:
        pass

    def retract(self, reasoning: str) -> None:
        pass

    def finish(self, result: GenerationResult) -> None:
        pass


class FinalOnly(NullSink):
    """Shows only the finished result (``--no-stream``, or ``%config OllamaMagics.display``)."""

    def __init__(self, publisher: Publisher, *, show_thinking: bool = True) -> None:
        self._publisher = publisher
        self._show_thinking = show_thinking

    def finish(self, result: GenerationResult) -> None:
        self._publisher.final(result_bundle(result, show_thinking=self._show_thinking))


class TextSink:
    """Terminal IPython: plain streamed text, reasoning dimmed when the terminal has colour."""

    def __init__(self, out: TextIO | None = None, *, show_thinking: bool = True) -> None:
        self._out = out or sys.stdout
        self._show_thinking = show_thinking
        self._color = bool(getattr(self._out, "isatty", lambda: False)())
        self._mode = ""

    def _write(self, text: str, mode: str) -> None:
        if mode != self._mode:
            if mode == "thinking":
                self._out.write("\x1b[2m" if self._color else "")
                self._out.write("Thinking…\n" if not self._mode else "")
            elif self._mode == "thinking":
                self._out.write("\x1b[0m" if self._color else "")
                self._out.write("\n\n")
            self._mode = mode
        self._out.write(text)
        self._out.flush()

    def thinking(self, text: str) -> None:
        if self._show_thinking:
            self._write(text, "thinking")

    def answer(self, text: str) -> None:
        self._write(text, "answer")

    def retract(self, reasoning: str) -> None:
        self._write("\n(the text above was the model's reasoning)\n", "answer")

    def finish(self, result: GenerationResult) -> None:
        self._write("", "answer")
        if result.logprobs is not None:
            self._out.write(f"\n\n{tokens_text(result.logprobs)}")
        self._out.write(f"\n\n[{footer_text(result)}]\n")
        self._out.flush()


class _Slot:
    """One output of the cell, created empty, showing one piece of the live stream."""

    __slots__ = ("display_id", "kind")

    def __init__(self, kind: str) -> None:
        self.display_id = uuid.uuid4().hex
        self.kind = kind


class LiveDisplay:
    """The notebook view: live slots while streaming, one final rendering at the end.

    **Parameters:** ``interval``, the least time between two messages while streaming (18 a
    second; opening a slot counts as one);
    ``ratio``, an update waits until the new text is at least 1/``ratio`` of the slot it
    refreshes (so updates cost at most ``ratio`` times the text they add), or ``max_wait``;
    ``slot_seconds``, how much of the stream's pace one slot may hold before a new one starts.
    """

    def __init__(
        self,
        publisher: Publisher,
        *,
        show_thinking: bool = True,
        clock: Callable[[], float] = time.monotonic,
        interval: float = 0.055,
        ratio: int = 2,
        max_wait: float = 0.5,
        slot_seconds: float = 0.75,
        min_slot: int = 60,
        max_slot: int = 2400,
    ) -> None:
        self._publisher = publisher
        self._show_thinking = show_thinking
        self._clock = clock
        self._throttle = Throttle(interval)
        self._ratio = ratio
        self._max_wait = max_wait
        self._slot_seconds = slot_seconds
        self._min_slot = min_slot
        self._max_slot = max_slot
        self._slots: list[_Slot] = []
        self._status: str | None = None  # the display id of the line that counts tokens
        self._status_throttle = Throttle(1.0)
        self._pieces = 0
        self._first = 0.0
        self._kind = ""  # kind of the current tail: "thinking" or "answer"
        self._tail = ""  # text of the current (last) slot
        self._fence: str | None = None  # code fence the tail starts inside
        self._shown = 0  # length of the tail already on screen
        self._started = 0.0
        self._seen = 0  # characters received, for the pace

    # Sink -------------------------------------------------------------------------------
    def thinking(self, text: str) -> None:
        self._count(text)
        if self._show_thinking:
            self._append("thinking", text)

    def answer(self, text: str) -> None:
        # The reasoning stays open above the answer until it is done: it may still be read.
        self._count(text)
        self._append("answer", text)

    def retract(self, reasoning: str) -> None:
        for slot in self._slots:
            self._publisher.update(EMPTY, slot.display_id)
        self._slots.clear()
        self._kind, self._tail, self._shown, self._fence = "", "", 0, None
        if self._show_thinking and reasoning:
            self._append("thinking", reasoning)

    def finish(self, result: GenerationResult) -> None:
        self.clear()
        self._publisher.final(result_bundle(result, show_thinking=self._show_thinking))

    def clear(self) -> None:
        """Empty every live output (a round of tool calls ends without an answer to show)."""
        for slot in self._slots:
            self._publisher.update(EMPTY, slot.display_id)
        self._slots.clear()
        if self._status is not None:
            self._publisher.update(EMPTY, self._status)
            self._status = None

    # Internals --------------------------------------------------------------------------
    def _count(self, text: str) -> None:
        """One more token (Ollama streams one a chunk): the status line above says how many,
        refreshed once a second, so the count costs next to nothing."""
        now = self._clock()
        if self._status is None:
            self._status = uuid.uuid4().hex
            self._publisher.show(EMPTY, self._status)
            self._first = now
        self._pieces += 1
        if self._status_throttle.take(now) and self._pieces > 1:
            rate = (self._pieces - 1) / max(now - self._first, 1e-3)
            line = f"{self._pieces} tokens so far · {rate:.1f} tokens/s"
            self._publisher.update({"text/html": live_status(line)}, self._status)

    def _append(self, kind: str, text: str) -> None:
        now = self._clock()
        if not self._seen:
            self._started = now
        self._seen += len(text)
        if kind != self._kind:
            self._open_slot(kind)
        self._tail += text
        self._maybe_update(now)

    def _open_slot(self, kind: str, fence: str | None = None) -> None:
        if self._shown < len(self._tail) and self._slots:
            self._push(self._tail)
        slot = _Slot(kind)
        self._publisher.show(EMPTY, slot.display_id)
        self._slots.append(slot)
        self._kind, self._tail, self._shown, self._fence = kind, "", 0, fence

    def _slot_limit(self, now: float) -> int:
        elapsed = max(now - self._started, 1e-3)
        pace = self._seen / elapsed  # characters a second
        return int(min(self._max_slot, max(self._min_slot, pace * self._slot_seconds)))

    def _maybe_update(self, now: float) -> None:
        new = len(self._tail) - self._shown
        if new <= 0 or not self._throttle.ready(now):
            return
        waited = self._throttle.since(now)
        if self._shown and new * self._ratio < len(self._tail) and waited < self._max_wait:
            return
        limit = self._slot_limit(now)
        if len(self._tail) > limit:
            cut = self._cut_point(limit)
            if cut:
                head, rest = self._tail[:cut], self._tail[cut:]
                self._push(head)
                fence = open_fence(self._source(head)) if self._kind == "answer" else None
                self._tail = head
                self._open_slot(self._kind, fence)
                self._tail = rest
                if rest.strip():  # shown now: the next piece may be a while coming
                    self._push(rest)
                self._throttle.last = now + 2 * self._throttle.interval  # three messages went out
                return
        if self._push(self._tail):
            self._throttle.last = now

    def _cut_point(self, limit: int) -> int:
        """Where to close the current slot: after a line break, else a space, else anywhere."""
        tail = self._tail
        for sep in ("\n\n", "\n"):
            at = tail.rfind(sep, limit // 4)
            if at >= 0:
                return at + len(sep)
        if len(tail) > 2 * limit:
            at = tail.rfind(" ", limit // 2)
            return at + 1 if at >= 0 else len(tail)
        return 0

    def _push(self, text: str) -> bool:
        """Show ``text`` in the last slot; ``False`` when it has nothing to read yet."""
        slot = self._slots[-1]
        first = len(self._slots) == 1 or self._slots[-2].kind != slot.kind
        if slot.kind == "thinking":
            fragment = thinking_block(text, live=True) if first else live_thinking_piece(text)
        else:
            fragment = markdown_html(self._source(text), highlight=False)
        # A piece with nothing to read yet ("#", a code block just opened) would be a blank box:
        # it waits for the next token, which may then go out at once.
        if not _TAG.sub("", fragment).strip():
            return False
        self._publisher.update(html_bundle(fragment), slot.display_id)
        self._shown = len(text)
        return True

    def _source(self, text: str) -> str:
        """A piece of the answer as Markdown: reopened inside the code block it continues."""
        return f"{self._fence}\n{text}" if self._fence else text


class ProgressDisplay:
    """A pull, push or create in a notebook: one throttled HTML output, emptied at the end.

    Like the answer slots it starts and ends as an empty bundle, so nbval (which ignores
    updates) and the saved notebook agree; the magic then prints one summary line.
    """

    def __init__(self, publisher: Publisher, *, interval: float = 0.1) -> None:
        self._publisher = publisher
        self._throttle = Throttle(interval)
        self._display_id = uuid.uuid4().hex
        self._shown = False

    def update(self, progress: Progress, now: float) -> None:
        if not self._shown:
            self._publisher.show(EMPTY, self._display_id)
            self._shown = True
        if self._throttle.take(now):
            self._publisher.update({"text/html": progress.html()}, self._display_id)

    def close(self, progress: Progress, now: float) -> None:
        if self._shown:
            self._publisher.update(EMPTY, self._display_id)


class ProgressText:
    """A pull, push or create in a terminal: one rewritten line on a TTY, else each status once."""

    def __init__(self, out: TextIO | None = None, *, interval: float = 0.1) -> None:
        self._line = RewrittenLine(out, interval=interval)
        self._printed: set[str] = set()

    def update(self, progress: Progress, now: float) -> None:
        if not self._line.tty:
            status = progress.status
            if status and status not in self._printed:
                self._printed.add(status)
                self._line.out.write(status + "\n")
                self._line.out.flush()
            return
        self._line.show(now, progress.line)

    def close(self, progress: Progress, now: float) -> None:
        self._line.clear()
