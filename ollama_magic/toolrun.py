"""A chat turn with tools, end to end: each request streamed by :func:`~.session.run`, the calls
run by :mod:`ollama_magic.tools`, and both shown as they happen.

The notebook view follows :mod:`ollama_magic.live`'s rule for nbval: every live output starts
and ends empty, and the final rendering (the calls, collapsed, above the answer) is displayed
once at the end. A round that ends in tool calls shows no answer of its own: its live text is
emptied and the calls take its place.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

from .live import EMPTY, Publisher, Sink
from .render import html_bundle
from .result import ERROR, INTERRUPTED, GenerationResult
from .session import chat_pieces, run
from .tools import (
    DEFAULT_MAX_ROUNDS,
    Approve,
    CannotAsk,
    ToolCall,
    ToolTurn,
    ToolView,
    call_html,
    call_line,
    chat_with_tools,
    tool_schema,
)

if TYPE_CHECKING:
    from .client import OllamaClient
    from .errors import OllamaError


class CallCollector:
    """Reads a chat stream's pieces as :func:`~.session.chat_pieces` does, and keeps every
    ``tool_calls`` entry on the way (Ollama may send them on any chunk)."""

    def __init__(self) -> None:
        self.raw: list[Any] = []

    def pieces(self, chunk: dict[str, Any]) -> tuple[str, str]:
        found = chat_pieces(chunk)
        message = chunk.get("message")
        if isinstance(message, dict) and message.get("tool_calls") is not None:
            calls = message["tool_calls"]
            self.raw.extend(calls if isinstance(calls, list) else [calls])
        return found


class RoundSink:
    """One request's sink: the answer streams as usual; a round that ends in calls (and is not
    the last) shows nothing final, and the final one carries the turn's calls."""

    def __init__(
        self,
        inner: Sink,
        collector: CallCollector,
        earlier: list[ToolCall],
        last: bool,
        before_final: Callable[[], None] = lambda: None,
    ) -> None:
        self.inner, self.collector, self.earlier, self.last = inner, collector, earlier, last
        self.before_final = before_final  # empties the live calls: the final shows them all

    def thinking(self, text: str) -> None:
        self.inner.thinking(text)

    def answer(self, text: str) -> None:
        self.inner.answer(text)

    def retract(self, reasoning: str) -> None:
        self.inner.retract(reasoning)

    def finish(self, result: GenerationResult) -> None:
        result.tool_calls = list(self.earlier)
        going_on = self.collector.raw and not self.last and result.done_reason != INTERRUPTED
        if going_on:
            clear = getattr(self.inner, "clear", None)
            if clear is not None:
                clear()
        else:
            self.before_final()
            self.inner.finish(result)


class LiveCalls:
    """Each call as a live output in the notebook while it runs; emptied at the end, when the
    final rendering shows them all."""

    def __init__(self, publisher: Publisher) -> None:
        self._publisher = publisher
        self._shown: dict[int, str] = {}

    def started(self, call: ToolCall) -> None:
        display_id = uuid.uuid4().hex
        self._shown[id(call)] = display_id
        self._publisher.show(EMPTY, display_id)
        self._publisher.update(html_bundle(call_html(call)), display_id)

    def finished(self, call: ToolCall) -> None:
        display_id = self._shown.get(id(call))
        if display_id is not None:
            self._publisher.update(html_bundle(call_html(call)), display_id)

    def close(self) -> None:
        for display_id in self._shown.values():
            self._publisher.update(EMPTY, display_id)
        self._shown.clear()


class TextCalls:
    """Calls in a terminal: a line when each starts, one when it ends."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out or sys.stdout

    def started(self, call: ToolCall) -> None:
        self._out.write(f"\n→ {call.signature()}\n")
        self._out.flush()

    def finished(self, call: ToolCall) -> None:
        self._out.write(f"  {call_line(call)}\n")
        self._out.flush()

    def close(self) -> None:
        pass


class ConfirmUnavailable(CannotAsk):
    """``--confirm`` cannot ask: this front end runs cells unattended."""


def ask(call: ToolCall) -> bool:
    """``--confirm`` alone where there are no buttons: ask with ``input()`` (a terminal; a text
    box in a notebook)."""
    from IPython.core.error import StdinNotImplementedError

    try:
        answer = input(f"Run {call.signature()}? [y/N] ")
    except StdinNotImplementedError:
        raise ConfirmUnavailable from None
    except EOFError:  # nobody to answer (stdin closed): no is the safe answer
        return False
    return answer.strip().lower() in ("y", "yes")


@contextmanager
def confirming(confirm: Any, buttons: bool) -> Iterator[Approve | None]:
    """What ``--confirm`` runs before each call: ``FUNC`` as given; for ``--confirm`` alone,
    Run / Skip buttons when ``buttons`` (a notebook front end) and the kernel can take their
    clicks while the cell runs, else :func:`ask`. ``None`` when there is no ``--confirm``.

    Either needs someone to answer: a front end that runs cells unattended (nbval, nbclient)
    says so by not allowing ``input()`` for the cell (ipykernel keeps that in ``_allow_stdin``),
    and :class:`ConfirmUnavailable` is raised at once, before the model is asked anything."""
    if confirm is None or callable(confirm):
        yield confirm
        return
    from IPython import get_ipython

    kernel = getattr(get_ipython(), "kernel", None)
    if kernel is not None and not getattr(kernel, "_allow_stdin", True):
        raise ConfirmUnavailable  # before the model is asked anything
    if not buttons or kernel is None:
        yield ask
        return
    try:
        from .widgets.confirm import ButtonConfirm, ui_pump
    except ImportError:  # no ipywidgets: the text box
        yield ask
        return
    with ui_pump(kernel) as pump:
        yield ask if pump is None else ButtonConfirm(pump)


def tool_turn(
    client: OllamaClient,
    body: dict[str, Any],
    functions: Mapping[str, Callable[..., Any]],
    make_sink: Callable[[], Sink],
    view: ToolView,
    approve: Callable[[ToolCall], bool] | None = None,
    *,
    max_rounds: int = DEFAULT_MAX_ROUNDS,
    stopped: Callable[[], str | None] | None = None,
) -> tuple[GenerationResult, OllamaError | None, ToolTurn]:
    """Run one chat turn with ``functions`` as tools; return the final result (with every
    call in ``tool_calls``), its error and what the loop did. ``stopped`` is
    :func:`~.session.run`'s (an app's Stop button)."""
    body = {**body, "tools": [tool_schema(f) for f in functions.values()]}

    def send(
        request: dict[str, Any], earlier: list[ToolCall], last: bool
    ) -> tuple[GenerationResult, OllamaError | None, list[Any]]:
        collector = CallCollector()
        sink = RoundSink(make_sink(), collector, earlier, last, view.close)
        result, error = run(client, "/api/chat", request, sink, collector.pieces, stopped=stopped)
        result.tool_calls = list(earlier)
        return result, error, collector.raw

    turn = chat_with_tools(
        send,
        body,
        functions,
        max_rounds=max_rounds,
        view=view,
        approve=approve,
        answered=lambda result: result.done_reason not in (INTERRUPTED, ERROR),
    )
    result: GenerationResult | None = turn.result
    if result is None:  # Ctrl-C during a call: keep what was shown, say where it stopped
        running = next((c for c in reversed(turn.calls) if c.status == INTERRUPTED), None)
        where = f" at the call to {running.name}()" if running else ""
        result = GenerationResult(
            str(body.get("model", "")),
            done_reason=INTERRUPTED,
            error=f"interrupted by the user{where}",
            request=body,
        )
        result.tool_calls = list(turn.calls)
        view.close()
        make_sink().finish(result)
    result.tool_calls = list(turn.calls)
    return result, turn.error, turn
