"""What the three apps share: the :class:`App` frame (a message line, Stop, wait, close), a
widget publisher for the magic's live display, worker threads that a button can stop, and
one-line messages instead of tracebacks.

Why threads: while a cell runs, the kernel handles no widget events, so a Stop button could not
be pressed. Each app therefore returns at once and streams on a daemon thread; widget values set
from that thread are plain trait syncs, which ipykernel sends from any thread.
"""

from __future__ import annotations

import functools
import html
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from typing import Any, Generic, Protocol, TypeVar

import ipywidgets as w

from .. import lifecycle
from ..args import ArgsError
from ..client import HostError, OllamaClient, Stream, resolve_host
from ..errors import OllamaError
from ..live import EMPTY, Bundle, LiveDisplay
from ..messages import describe, outcome
from ..result import ERROR, INTERRUPTED, GenerationResult
from ..session import attach_data, generate_pieces, run

STOPPED_BY_USER = "stopped by the user"

_COLOURS = {"error": "#c62828", "note": "var(--jp-ui-font-color2, #666)", "ok": "#2e7d32"}


def message_html(text: str, kind: str = "note") -> str:
    """A short message for an app's message line (escaped: it may quote the server)."""
    if not text:
        return ""
    colour = _COLOURS.get(kind, _COLOURS["note"])
    return f'<span class="ollama-{kind}" style="color:{colour}">{html.escape(text)}</span>'


def short_error(exc: BaseException) -> str:
    """Any failure as one line; the server's errors in the magic's words."""
    if isinstance(exc, OllamaError):
        return describe(exc)
    if isinstance(exc, ArgsError):
        return str(exc)
    if isinstance(exc, HostError):
        return f"Ollama host {exc}"
    return f"{type(exc).__name__}: {exc}"


def safely(report: Callable[[str], None]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Wrap a widget callback so a failure becomes ``report(one line)``, never a traceback in the
    log (ipywidgets would print one there and the user would not see it in the app)."""

    def wrap(callback: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(callback)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return callback(*args, **kwargs)
            except Exception as exc:
                report(short_error(exc))
                return None

        return guarded

    return wrap


def spawn(work: Callable[[], None], fail: Callable[[str], None], name: str) -> threading.Thread:
    """Run ``work`` on a daemon thread (it never keeps the kernel or a test alive); an exception
    becomes ``fail(one line)``."""

    def body() -> None:
        try:
            work()
        except Exception as exc:
            fail(short_error(exc))

    thread = threading.Thread(target=body, name=name, daemon=True)
    thread.start()
    return thread


class Connection:
    """Where an app's server is and how patient to be; one short-lived client per task, since a
    ``requests`` session must not be shared between threads."""

    def __init__(
        self, host: str | None, *, timeout: float = 600.0, connect_timeout: float = 5.0
    ) -> None:
        self.host = host or None
        self.timeout = timeout
        self.connect_timeout = connect_timeout

    def client(self, *, quick: bool = False) -> OllamaClient:
        """A new client; ``quick`` for listing calls that must not keep a button waiting."""
        if quick:
            return OllamaClient(
                self.host, connect_timeout=min(self.connect_timeout, 2.0), read_timeout=10.0
            )
        return OllamaClient(
            self.host, connect_timeout=self.connect_timeout, read_timeout=self.timeout
        )

    def tags(self) -> list[dict[str, Any]]:
        with closing(self.client(quick=True)) as client:
            return client.tags()

    def key(self) -> str:
        """The server, as every app on it names it (a bad host names itself)."""
        try:
            return resolve_host(self.host)
        except Exception:
            return str(self.host)

    def subscribe(self, listener: ModelListener) -> None:
        """Have ``listener.models_changed()`` called whenever an app on this server pulls or
        deletes a model (so every open app shows the same models)."""
        with _LISTENERS_LOCK:
            _LISTENERS.setdefault(self.key(), weakref.WeakSet()).add(listener)

    def unsubscribe(self, listener: ModelListener) -> None:
        with _LISTENERS_LOCK:
            _LISTENERS.get(self.key(), weakref.WeakSet()).discard(listener)

    def models_changed(self) -> None:
        """Tell every open app on this server that its models changed (a pull, a delete)."""
        with _LISTENERS_LOCK:
            listeners = list(_LISTENERS.get(self.key(), ()))
        for listener in listeners:
            listener.models_changed()


class ModelListener(Protocol):
    """An open app that shows a server's models."""

    def models_changed(self) -> None: ...


_LISTENERS: dict[str, weakref.WeakSet[Any]] = {}
_LISTENERS_LOCK = threading.Lock()


class AnswerView(w.VBox):
    """Where an app shows an answer: one ``Output`` widget per output the magic would make.

    The magic's live view keeps updates cheap by showing the answer in slots and updating only
    the last one; an ``Output`` re-sends all it holds on every change, so each slot gets its
    own, and an update costs that slot only, as in a cell. At the end one ``Output`` holds the
    final answer, exactly the magic's final output.
    """

    children: tuple[w.Output, ...]  # (a trait: it takes a list and holds a tuple)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__([], **kwargs)
        self.add_class("ollama-answer")

    @property
    def outputs(self) -> tuple[dict[str, Any], ...]:
        """Everything shown, in order, as ``Output.outputs`` entries."""
        return tuple(entry for child in self.children for entry in child.outputs)

    def clear(self) -> None:
        old, self.children = self.children, ()
        for child in old:
            close_tree(child)


def _entries(bundle: Bundle) -> tuple[dict[str, Any], ...]:
    if bundle == EMPTY:
        return ()
    return ({"output_type": "display_data", "data": bundle, "metadata": {}},)


def reworded(bundle: Bundle, words: Mapping[str, str]) -> Bundle:
    """``bundle`` with the magic's phrases (``raise --num-predict``) in an app's words."""
    if not words:
        return bundle
    out = {}
    for mime, value in bundle.items():
        if isinstance(value, str):
            for phrase, instead in words.items():
                value = value.replace(phrase, instead)
        out[mime] = value
    return out


class OutputPublisher:
    """The magic's :class:`~ollama_magic.live.Publisher`, drawn into an :class:`AnswerView`.

    Each display id becomes an ``Output`` widget, in order, as outputs are in a cell; the
    front end renders their bundles as it renders the magic's. Widgets made and changed on the
    worker thread are plain comm messages, which ipykernel sends from any thread. Emptying a
    slot is drawn with the next change, not alone: at the end the final answer replaces the
    emptied slots in one step, where drawing the empty state first would make it flicker.
    """

    def __init__(self, view: AnswerView, words: Mapping[str, str] | None = None) -> None:
        self._view = view
        self._words = dict(words or {})
        self._slots: dict[str, w.Output] = {}
        self._emptied: list[w.Output] = []
        self._muted = False

    def clear(self) -> None:
        self._slots.clear()
        self._emptied.clear()
        self._muted = False
        self._view.clear()

    def mute(self) -> None:
        """Ignore everything from now on (a stopped run that may still be winding down)."""
        self._muted = True

    def show(self, bundle: Bundle, display_id: str) -> None:
        if self._muted:
            return
        slot = w.Output(outputs=_entries(bundle))
        self._slots[display_id] = slot
        self._view.children = (*self._view.children, slot)

    def update(self, bundle: Bundle, display_id: str) -> None:
        slot = self._slots.get(display_id)
        if slot is None or self._muted:
            return
        if bundle == EMPTY:
            self._emptied.append(slot)
            return
        for emptied in self._emptied:
            emptied.outputs = ()
        self._emptied.clear()
        slot.outputs = _entries(bundle)

    def final(self, bundle: Bundle) -> None:
        if self._muted:
            return
        bundle = reworded(bundle, self._words)
        last = w.Output(outputs=_entries(bundle))
        gone = set(self._emptied)
        kept = tuple(c for c in self._view.children if c not in gone)
        self._view.children = (*kept, last)
        for slot in gone:
            close_tree(slot)
        self._emptied.clear()
        self._slots.clear()


class Stopper:
    """Lets the kernel's thread stop a worker's stream: at once if it is open, else the moment
    it opens. ``track(client)`` is the client the worker uses, so every stream is seen."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stream: Stream | None = None
        self.stopped = False

    def track(self, client: OllamaClient) -> Any:
        return _Tracked(client, self)

    def attach(self, stream: Stream) -> None:
        with self._lock:
            self._stream = stream
            stop_now = self.stopped
        if stop_now:
            stream.abort()

    def reason(self) -> str | None:
        """Why the stream ended early, for :func:`~ollama_magic.session.run`: the user's Stop."""
        return STOPPED_BY_USER if self.stopped else None

    def stop(self) -> bool:
        """Stop; ``True`` when a stream was open (its reader ends within moments)."""
        with self._lock:
            self.stopped = True
            stream = self._stream
        if stream is not None:
            stream.abort()
        return stream is not None


class _Tracked:
    """An :class:`OllamaClient` whose streams a :class:`Stopper` can abort."""

    def __init__(self, client: OllamaClient, stopper: Stopper) -> None:
        self._client = client
        self._stopper = stopper

    def stream(self, path: str, body: dict[str, Any], method: str = "POST") -> Stream:
        stream = self._client.stream(path, body, method)
        self._stopper.attach(stream)
        return stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


#: Called once when a generation ends: its result, the message to show (or None), and whether
#: that message is an error.
OnEnd = Callable[[GenerationResult, "str | None", bool], None]


class Generation:
    """One ``/api/generate`` stream on a worker thread, drawn into ``output`` by the magic's
    :class:`~ollama_magic.live.LiveDisplay` and stoppable from the kernel's thread.

    ``on_end`` runs exactly once, on the worker thread or (when stopped before the server sent
    anything) on the caller's; :attr:`done` is set after it.
    """

    def __init__(
        self,
        connection: Connection,
        body: dict[str, Any],
        output: AnswerView,
        on_end: OnEnd,
        *,
        show_thinking: bool = True,
        words: Mapping[str, str] | None = None,
        advice: Mapping[str, str] | None = None,
        functions: Mapping[str, Callable[..., Any]] | None = None,
    ) -> None:
        self.connection = connection
        self.body = body
        self.functions = dict(functions or {})  # tools: the turn goes to /api/chat with them
        self.publisher = OutputPublisher(output, words)
        self.advice = advice
        self.show_thinking = show_thinking
        self.stopper = Stopper()
        self.done = threading.Event()
        self.result: GenerationResult | None = None
        self._on_end = on_end
        self._ended = False
        self._lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.publisher.clear()
        self.thread = spawn(self._work, self._failed, name=f"ollama-{self.body.get('model')}")

    def is_alive(self) -> bool:
        """Whether it has yet to end (as for a thread: an app waits for both alike)."""
        return not self.done.is_set()

    def join(self, timeout: float | None = None) -> None:
        """Wait until it ends (``on_end`` has run), or ``timeout`` seconds."""
        self.done.wait(timeout)

    def stop(self) -> None:
        if self.done.is_set():
            return
        if not self.stopper.stop():
            # Nothing has arrived yet (the server is loading the model, or still connecting):
            # the app is free at once; the worker closes its stream the moment it opens.
            self.publisher.mute()
            result = GenerationResult(str(self.body.get("model", "")), request=self.body)
            result.done_reason, result.error = INTERRUPTED, STOPPED_BY_USER
            self._end(result, outcome(result, None, list, stopped="Stopped"), False)

    def _work(self) -> None:
        if self.functions:
            self._work_with_tools()
            return
        with closing(self.connection.client()) as client:
            result, error = run(
                self.stopper.track(client),
                "/api/generate",
                self.body,
                LiveDisplay(self.publisher, show_thinking=self.show_thinking),
                generate_pieces,
                stopped=self.stopper.reason,
            )
            note = attach_data(result) if "format" in self.body else None
            self._report(client, result, error, note)

    def _work_with_tools(self) -> None:
        """A chat turn with tools: the calls run on this worker thread (the notebook stays
        usable) and show in the answer view as the magic shows them."""
        from ..toolrun import LiveCalls, tool_turn
        from .logic import chat_request

        with closing(self.connection.client()) as client:
            result, error, _ = tool_turn(
                self.stopper.track(client),
                chat_request(self.body),
                self.functions,
                lambda: LiveDisplay(self.publisher, show_thinking=self.show_thinking),
                LiveCalls(self.publisher),
                stopped=self.stopper.reason,
            )
            self._report(client, result, error)

    def _report(
        self,
        client: OllamaClient,
        result: GenerationResult,
        error: OllamaError | None,
        note: str | None = None,
    ) -> None:
        """End the run with what went wrong (the server's models in the advice), else ``note``."""
        problem = outcome(
            result,
            error,
            lambda: lifecycle.installed(client),
            stopped="Stopped",
            advice=self.advice,
        )
        self._end(result, problem or note, error is not None)

    def _failed(self, text: str) -> None:
        result = GenerationResult(str(self.body.get("model", "")), request=self.body)
        result.done_reason, result.error = ERROR, text
        self._end(result, text, True)

    def _end(self, result: GenerationResult, message: str | None, failed: bool) -> None:
        with self._lock:
            if self._ended:
                return
            self._ended = True
        self.result = result
        try:
            self._on_end(result, message, failed)
        finally:
            self.done.set()


class Task(Protocol):
    """Background work an app can wait for: a thread, or a :class:`Generation`."""

    def is_alive(self) -> bool: ...

    def join(self, timeout: float | None = None) -> None: ...


T = TypeVar("T")


class App(w.VBox, Generic[T]):
    """The frame of an app: a message line for news and one-line errors, and its lifetime
    (:meth:`stop`, :meth:`wait`, :meth:`close`).

    A subclass sets its plain state first, then calls this, then builds its widgets (``message``
    among them, where it wants it) into ``children``. So :meth:`close`, which garbage collection
    also runs, maybe on an app whose constructor failed, always finds the state it stops.
    """

    connection: Connection

    def __init__(self, css_class: str) -> None:
        self.offline = False
        self.message = w.HTML()
        self.message.add_class("ollama-app-message")
        self.retry_button = w.Button(
            description="Retry", icon="refresh", tooltip="Ask the server again"
        )
        hide(self.retry_button)
        #: The message line, with Retry while the server does not answer.
        self.message_line = w.HBox([self.message, self.retry_button])
        super().__init__(layout=w.Layout(width="100%"))
        self.add_class(css_class)
        self._on_click(self.retry_button, self.refresh)

    @property
    def running(self) -> bool:
        """Whether background work (a generation, a pull…) is still going."""
        return any(task.is_alive() for _, task in self._tasks())

    def stop(self) -> None:
        """What the app's Stop button does."""
        raise NotImplementedError

    def wait(self, timeout: float | None = 60) -> T:
        """Block until the background work ends (for scripts and tests); what it produced."""
        for what, task in self._tasks():
            task.join(timeout)
            if task.is_alive():
                raise TimeoutError(f"{what} did not end in {timeout} s")
        return self._outcome()

    def refresh(self) -> None:
        """Reload the server's models (what ↻ and Retry do)."""
        raise NotImplementedError

    def models_changed(self) -> None:
        """Another app on this server pulled or deleted a model: show the new list."""
        self._guard(self.refresh)()

    def close(self) -> None:
        """Stop what runs, then close the widgets."""
        connection = getattr(self, "connection", None)
        if connection is not None:
            connection.unsubscribe(self)
        self.stop()
        close_parts(self)
        super().close()

    # -- for subclasses ----------------------------------------------------------------------

    def _tasks(self) -> list[tuple[str, Task]]:
        """The work :meth:`wait` waits for, each with how a timeout names it."""
        return []

    def _outcome(self) -> T:
        """What :meth:`wait` returns."""
        raise NotImplementedError

    def _guard(self, callback: Callable[..., Any]) -> Callable[..., Any]:
        """``callback`` with any failure shown on the message line instead of raised."""
        return safely(self._error)(callback)

    def _on_click(self, button: w.Button, action: Callable[[], Any]) -> None:
        button.on_click(self._guard(lambda _: action()))

    def _tags(self) -> list[dict[str, Any]] | None:
        """The server's models; ``None`` when it does not answer, said once on the message
        line with a Retry button while the app's actions wait (see :meth:`_server_down`)."""
        try:
            tags = self.connection.tags()
        except (OllamaError, HostError) as exc:
            self._server_down(short_error(exc))
            return None
        self._server_up()
        return tags

    def _server_down(self, text: str) -> None:
        """The server does not answer: one message, Retry, and nothing else to click."""
        self.offline = True
        self._error(text)
        hide(self.retry_button, False)
        self._enable()

    def _server_up(self) -> None:
        if not self.offline:
            return
        self.offline = False
        self._say("")
        hide(self.retry_button)
        self._enable()

    def _enable(self) -> None:
        """Enable or disable the app's buttons for its state (busy, server down…)."""

    def _say(self, text: str, kind: str = "note") -> None:
        self.message.value = message_html(text, kind)

    def _error(self, text: str) -> None:
        self._say(text, "error")


Option = str | tuple[str, str]


def option_values(options: Sequence[Any]) -> list[str]:
    """A picker's values, whether its options are names or ``(label, name)`` pairs."""
    return [o[1] if isinstance(o, tuple) else str(o) for o in options]


def model_options(options: Sequence[Option], keep: Sequence[str] = ()) -> list[Option]:
    """The picker's options (names or ``(label, name)``): the server's, plus any asked for
    that it does not list (so that using one shows the server's own "not installed" message,
    in the app)."""
    out: list[Option] = [o if isinstance(o, tuple) else (o, o) for o in options]
    values = option_values(out)
    for name in keep:
        if name and name not in values:
            out.append((name, name))  # pairs only: ipywidgets reads a mixed list as names
            values.append(name)
    return out


def set_options(picker: w.Dropdown, options: Sequence[Option], prefer: str | None = None) -> None:
    """Refill a model picker, keeping its choice when it is still there."""
    current = prefer or picker.value
    options = list(options)
    names = option_values(options)
    if tuple(picker.options) != tuple(options):
        picker.options = options
    if current in names:
        picker.value = current
    elif names and picker.value not in names:
        picker.value = names[0]


def close_tree(widget: w.Widget) -> None:
    """Close a widget and everything inside it, its layout and style included (``close``
    alone leaves those models open in the kernel and the front end)."""
    for child in getattr(widget, "children", ()):
        close_tree(child)
    for part in (getattr(widget, "layout", None), getattr(widget, "style", None)):
        if isinstance(part, w.Widget):
            part.close()
    widget.close()


def close_parts(app: w.Box) -> None:
    """Close what an app is made of (its children, their layouts, its own layout); the app's
    ``close`` then closes the app itself."""
    for child in app.children:
        close_tree(child)
    app.layout.close()


def hide(widget: w.DOMWidget, hidden: bool = True) -> None:
    widget.layout.display = "none" if hidden else None


def settings_from(mapping: Mapping[str, Any], allowed: Sequence[str], what: str) -> None:
    """Refuse unknown keyword arguments with the list of known ones."""
    unknown = sorted(set(mapping) - set(allowed))
    if unknown:
        raise TypeError(f"{what} got unknown settings {unknown}; known: {', '.join(allowed)}")
