"""The model manager: what is installed, what is loaded (live), pull, load, unload, delete."""

from __future__ import annotations

import contextlib
import html
import threading
import time
from collections.abc import Callable
from contextlib import closing
from datetime import datetime, timezone
from typing import Any

import ipywidgets as w

from .. import lifecycle
from ..args import keep_alive_value
from ..client import HostError, resolve_host
from ..errors import ConnectionFailed, ModelNotFound, OllamaError
from ..live import Throttle
from ..messages import describe, transfer_failed
from ..present import LoadedList, ModelList, load_summary, short_name, unload_summary
from ..progress import Progress
from ._base import (
    App,
    Connection,
    Stopper,
    Task,
    hide,
    message_html,
    set_options,
    short_error,
    spawn,
)
from .logic import capabilities, model_choices, transfer_status


class _Installed(ModelList):
    empty = "No models installed yet: pull one below."


class _Loaded(LoadedList):
    empty = "No model is loaded: pick one above and press Load."


class _BarView:
    """A :class:`~ollama_magic.lifecycle.ProgressView` on a progress bar and a status line,
    throttled like the magic's progress output."""

    def __init__(self, bar: w.FloatProgress, status: w.HTML, interval: float = 0.1) -> None:
        self._bar = bar
        self._status = status
        self._throttle = Throttle(interval)

    def update(self, progress: Progress, now: float) -> None:
        if self._throttle.take(now):
            self._draw(progress)

    def close(self, progress: Progress, now: float) -> None:
        self._draw(progress)

    def _draw(self, progress: Progress) -> None:
        self._bar.value = progress.fraction
        self._status.value = message_html(transfer_status(progress), "note")


class ModelManager(App[None]):
    """Manage a server's models: the installed ones with sizes and capabilities, a pull box
    with a progress bar, load (with ``keep_alive``) and unload, delete after a confirmation,
    and what is loaded, refreshed every ``interval`` seconds while the app is open.

    **Parameters:** ``host`` (else ``$OLLAMA_HOST``); ``interval`` between refreshes of the
    loaded list; ``live=False`` starts with live refresh off; ``live_for``, the seconds without
    a click after which live refresh pauses (a kernel cannot tell whether an app is still on
    screen, so an app left behind must not poll forever); ``timeout``/``connect_timeout`` as in
    ``%config OllamaMagics``. :meth:`close` stops the refresh thread.
    """

    def __init__(
        self,
        host: str | None = None,
        *,
        interval: float = 1.0,
        live: bool = True,
        live_for: float = 600.0,
        timeout: float = 600.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self.connection = Connection(host, timeout=timeout, connect_timeout=connect_timeout)
        self.interval = interval
        self.live_for = live_for
        self._touched = time.monotonic()
        self.models: ModelList = ModelList([])
        self.ps: LoadedList = LoadedList([])
        self._closed = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="ollama-ps", daemon=True)
        self._action: threading.Thread | None = None
        self._pull: threading.Thread | None = None
        self._pull_stopper: Stopper | None = None
        self._pending_delete = ""
        super().__init__("ollama-models")
        self.children = self._build(live)
        self._guard(self._show_title)()
        self._guard(self.refresh)()
        self.connection.subscribe(self)
        self._watcher.start()

    def _build(self, live: bool) -> list[w.Widget]:
        """The lists, the model actions and the pull box, wired to their actions."""
        self.title = w.HTML()
        self.refresh_button = w.Button(
            description="Refresh", icon="refresh", tooltip="Reload both lists now"
        )
        self.installed = _table()
        self.model_picker = w.Dropdown(
            description="Model", options=[], layout=w.Layout(width="20em")
        )
        self.keep_alive = w.Text(
            description="keep_alive", placeholder="5m; -1 = forever", layout=w.Layout(width="16em")
        )
        self.load_button = w.Button(description="Load", icon="upload", tooltip="Load it now")
        self.unload_button = w.Button(description="Unload", icon="eject", tooltip="Free its memory")
        self.delete_button = w.Button(
            description="Delete…",
            icon="trash",
            button_style="danger",
            tooltip="Delete it from the server (asks first)",
        )
        self.confirm_text = w.HTML()
        self.confirm_button = w.Button(description="Delete", button_style="danger")
        self.cancel_button = w.Button(description="Cancel")
        self.confirm = w.HBox([self.confirm_text, self.confirm_button, self.cancel_button])
        #: What a load, unload or delete did, beside its buttons.
        self.action_message = w.HTML()
        self.action_message.add_class("ollama-action-message")
        self.pull_name = w.Text(
            description="Pull",
            placeholder="e.g. llama3.2 or qwen3:8b",
            layout=w.Layout(width="20em"),
        )
        self.pull_button = w.Button(description="Pull", icon="download", button_style="primary")
        self.cancel_pull_button = w.Button(description="Cancel", icon="stop", disabled=True)
        self.pull_bar = w.FloatProgress(
            value=0.0, min=0.0, max=1.0, bar_style="info", layout=w.Layout(width="20em")
        )
        self.pull_status = w.HTML()
        self.loaded = _table()
        self.live = w.Checkbox(value=live, description="refresh every second", indent=False)
        self.live.observe(self._guard(lambda _: None), names="value")
        for button, action in (
            (self.refresh_button, self.refresh),
            (self.load_button, self.load),
            (self.unload_button, self.unload),
            (self.delete_button, self.delete),
            (self.confirm_button, self.confirm_delete),
            (self.cancel_button, self.cancel_delete),
            (self.pull_button, self.pull),
            (self.cancel_pull_button, self.stop),
        ):
            self._on_click(button, action)
        hide(self.confirm)
        hide(self.pull_bar)

        def heading(text: str) -> w.HTML:
            return w.HTML(f"<b>{text}</b>")

        #: Everything that needs the server: hidden while it does not answer.
        self.body = w.VBox(
            [
                heading("Installed"),
                self.installed,
                w.HBox([self.model_picker, self.keep_alive]),
                w.HBox(
                    [self.load_button, self.unload_button, self.delete_button, self.action_message],
                    layout=w.Layout(align_items="center"),
                ),
                self.confirm,
                heading("Loaded"),
                self.loaded,
                self.live,
                heading("Get a model"),
                w.HBox([self.pull_name, self.pull_button, self.cancel_pull_button]),
                w.HBox([self.pull_bar, self.pull_status], layout=w.Layout(align_items="center")),
            ]
        )
        return [w.HBox([self.title, self.refresh_button]), self.body, self.message_line]

    # -- lists -----------------------------------------------------------------------------

    def refresh(self) -> None:
        """Reload the installed models and what is loaded (or say once that the server does
        not answer, with Retry)."""
        tags = self._tags()
        if tags is None:
            return
        self.models = _Installed(tags)
        self.installed.value = self.models._repr_html_()
        names = [short_name(n) for n in self.models.names if n]
        set_options(self.model_picker, model_choices(names, capabilities(tags)))
        self._enable()
        try:
            self.refresh_loaded()
        except Exception as exc:
            self._loaded_failed(exc)

    def _loaded_failed(self, exc: Exception) -> None:
        """The loaded list could not be read: the server is down, or said something odd."""
        if isinstance(exc, (ConnectionFailed, HostError)):
            self._server_down(short_error(exc))
        else:
            self._error(short_error(exc))

    def _server_down(self, text: str) -> None:
        super()._server_down(text)
        hide(self.body)

    def _server_up(self) -> None:
        if self.offline:
            hide(self.body, False)
        super()._server_up()

    def refresh_loaded(self) -> None:
        """Reload what is loaded (the live refresh does this every ``interval`` seconds)."""
        with closing(self.connection.client(quick=True)) as client:
            self._refresh_loaded(client)

    def _refresh_loaded(self, client: Any) -> None:
        self.ps = _Loaded(lifecycle.loaded(client).models)
        shown = self.ps._repr_html_()
        if shown != self.loaded.value:
            self.loaded.value = shown

    def _watch(self) -> None:
        """Refresh the loaded list while the app is open; a failure shows where the list was.

        The watcher is one thread for the app's life, so it keeps one client (one connection)."""
        with closing(self.connection.client(quick=True)) as client:
            self._watch_with(client)

    def _watch_with(self, client: Any) -> None:
        while not self._closed.wait(self.interval):
            if not self.live.value:
                continue
            if time.monotonic() - self._touched > self.live_for:
                self.live.value = False
                self._say(
                    f"The loaded list stopped refreshing after {self.live_for / 60:g} min "
                    "without a click; tick “refresh every second” to resume.",
                    "note",
                )
                continue
            if self.offline:  # until the server answers again; then everything reloads
                with contextlib.suppress(Exception):
                    self.refresh()
                continue
            try:
                self._refresh_loaded(client)
            except Exception as exc:
                self._loaded_failed(exc)

    # -- load, unload, delete --------------------------------------------------------------

    def load(self, name: str | None = None) -> None:
        """Load the picked model now, for ``keep_alive`` if given."""
        self._clear_old()
        name = name or self._picked()
        text = self.keep_alive.value.strip()
        keep_alive = keep_alive_value(text) if text else None

        def work(client: Any) -> str:
            report = lifecycle.load(client, name, keep_alive)
            return load_summary(name, report.seconds, report.row, datetime.now(timezone.utc))

        self._act(f"Loading {name}…", work)

    def unload(self, name: str | None = None) -> None:
        """Unload the picked model now (``keep_alive: 0``)."""
        name = name or self._picked()
        self._act(
            f"Unloading {name}…",
            lambda client: unload_summary(name, lifecycle.unload(client, name)),
        )

    def delete(self, name: str | None = None) -> None:
        """Ask to confirm deleting the picked model; :meth:`confirm_delete` does it."""
        name = name or self._picked()
        self._clear_old()
        self._pending_delete = name
        self.confirm_text.value = message_html(
            f"Delete {name} from {self.connection_url()}? Its files are removed.", "error"
        )
        hide(self.confirm, False)

    def confirm_delete(self) -> None:
        name, self._pending_delete = self._pending_delete, ""
        hide(self.confirm)
        if not name:
            return
        with closing(self.connection.client(quick=True)) as client:
            lifecycle.delete(client, name)
        self._tell(f"Deleted {name}.", "ok")
        self.connection.models_changed()  # every open app on this server, this one too

    def cancel_delete(self) -> None:
        self._pending_delete = ""
        hide(self.confirm)
        self._tell("Nothing deleted.", "note")

    # -- pull ------------------------------------------------------------------------------

    def pull(self, name: str | None = None) -> None:
        """Pull a model in the background, with a progress bar; Cancel stops it."""
        name = (name or self.pull_name.value).strip()
        if self._pull is not None and self._pull.is_alive():
            self._pull_says("A pull is already running: wait, or Cancel it.", "note")
            return
        if not name:
            hide(self.pull_bar)
            self._pull_says("Write the name of a model to pull, e.g. llama3.2.", "error")
            return
        self.action_message.value = ""
        stopper = self._pull_stopper = Stopper()
        progress = Progress("pull", name, time.monotonic())
        view = _BarView(self.pull_bar, self.pull_status)
        self.pull_bar.value = 0.0
        self.pull_bar.bar_style = "info"
        hide(self.pull_bar, False)
        self.pull_status.value = message_html(f"pulling {name}…")
        self._pulling = True
        self.pull_button.disabled = True
        self.cancel_pull_button.disabled = False

        def work() -> None:
            try:
                with closing(self.connection.client()) as client:
                    done = lifecycle.transfer(
                        stopper.track(client), "/api/pull", {"model": name}, progress, view
                    )
            finally:
                self._pulling = False
                self.pull_button.disabled = self.offline
                self.cancel_pull_button.disabled = True
            if done.ok:
                self.pull_bar.bar_style = "success"
                self._pull_says(progress.summary(time.monotonic()), "ok")
                self.connection.models_changed()  # every open app on this server
            elif stopper.stopped:
                self._pull_says(
                    f"The pull of {name} was cancelled {progress.stopped()}. "
                    "Pull again to continue.",
                    "note",
                )
            else:
                self.pull_bar.bar_style = "danger"
                self._pull_says(_transfer_message(name, done.error), "error")

        def failed(text: str) -> None:
            self.pull_bar.bar_style = "danger"
            self._pull_says(text, "error")

        self._pull = spawn(work, failed, name=f"ollama-pull-{name}")

    def stop(self) -> None:
        """What the pull's Cancel button does: stop the pull (pulling again continues it)."""
        if self._pull_stopper is not None:
            self._pull_stopper.stop()

    # -- lifetime --------------------------------------------------------------------------

    def __repr__(self) -> str:  # the text a notebook saves for the app: no URL, no port
        return "ModelManager()"

    def close(self) -> None:
        """Stop the live refresh and any pull, then close the widgets."""
        self._closed.set()
        watcher = self._watcher
        if watcher.is_alive() and watcher is not threading.current_thread():
            watcher.join(timeout=5)
        super().close()

    def connection_url(self) -> str:
        return resolve_host(self.connection.host)

    # -- internals -------------------------------------------------------------------------

    def _tasks(self) -> list[tuple[str, Task]]:
        """A running load or unload, and a pull."""
        return [(t.name, t) for t in (self._action, self._pull) if t is not None]

    def _outcome(self) -> None:
        return None

    def _guard(self, callback: Callable[..., Any]) -> Callable[..., Any]:
        """As for every app, and a click counts as a use (see ``live_for``)."""

        def touched(*args: Any) -> Any:
            self._touched = time.monotonic()
            return callback(*args)

        return super()._guard(touched)

    def _show_title(self) -> None:
        url = html.escape(self.connection_url(), quote=True)
        self.title.value = f"<b>Ollama models</b> at <code>{url}</code>"

    def _picked(self) -> str:
        name = self.model_picker.value
        if not name:
            raise ValueError("no model picked: pull one first")
        return str(name)

    def _act(self, doing: str, work: Callable[[Any], str]) -> None:
        """Run a load or unload in the background (a big model takes a while to load)."""
        if self._action is not None and self._action.is_alive():
            self._say("Wait for the current action to finish.", "note")
            return
        self._clear_old()
        self._busy(True)
        self._tell(doing, "note")

        def job() -> None:
            try:
                with closing(self.connection.client()) as client:
                    text = work(client)
            finally:
                self._busy(False)
            self._tell(text, "ok")
            with contextlib.suppress(OllamaError):  # the live refresh shows it
                self.refresh_loaded()

        self._action = spawn(job, lambda text: self._tell(text, "error"), name="ollama-action")

    def _tell(self, text: str, kind: str = "note") -> None:
        """What a load, unload or delete did, said beside its buttons."""
        self.action_message.value = message_html(text, kind)

    def _pull_says(self, text: str, kind: str = "note") -> None:
        """What a pull did, said beside its bar."""
        self.pull_status.value = message_html(text, kind)

    def _clear_old(self) -> None:
        """A new action: the last pull's finished bar and line, and old news, go."""
        if not getattr(self, "_pulling", False):
            hide(self.pull_bar)
            self.pull_status.value = ""
        self.action_message.value = ""
        if not self.offline:
            self._say("")

    def _busy(self, busy: bool) -> None:
        self._acting = busy
        self._enable()

    def _enable(self) -> None:
        acting = getattr(self, "_acting", False)
        no_model = not self.model_picker.value
        for button in (self.load_button, self.unload_button, self.delete_button):
            button.disabled = acting or self.offline or no_model
        self.pull_button.disabled = self.offline or getattr(self, "_pulling", False)
        self.refresh_button.disabled = self.offline  # Retry does it


def _table() -> w.HTML:
    """Where a list is shown: styled as the notebook styles ``%ollama models`` (spaced,
    striped, aligned headers)."""
    table = w.HTML(layout=w.Layout(overflow="auto"))
    table.add_class("jp-RenderedHTMLCommon")
    table.add_class("ollama-table")
    return table


def _transfer_message(name: str, error: OllamaError | None) -> str:
    if isinstance(error, (ConnectionFailed, ModelNotFound)):
        return describe(error)
    return transfer_failed("pull", name, error)
