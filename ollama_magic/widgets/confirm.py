"""``--confirm`` in a notebook: Run / Skip buttons under the call, answered while the cell runs.

While a cell runs, the kernel reads no messages from the front end, so a button's click would
wait until the cell ends. :func:`ui_pump` returns a function that handles the widget messages
waiting for the kernel now, and leaves every other request (a cell run meanwhile, a completion)
for the kernel to handle, in order, once the cell is done:

* ipykernel 7 receives the front end's requests on a thread of its own and hands the main
  thread's to it through an in-process socket; the pump reads that socket, runs the ``comm``
  messages at once, as ipykernel 7 itself does for async cells, and queues the rest on the
  kernel's loop behind the running cell. Only the header is read for those: a message's
  signature may be checked once only.
* older ipykernels (6 and before) get no pump: ``--confirm`` asks with ``input()`` there. The
  package for them, ``jupyter-ui-poll``, is not used: on ipykernel 7 it silently sees no click,
  and a path no test here can run (only ipykernel 7 is tested) is not one to ship.

Once decided, the buttons are replaced by a line saying what was decided (a saved notebook
shows ``Run add(a=1)? → run`` or ``→ skipped``, not buttons that no longer do anything).
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import ipywidgets as w

from ..render import html_bundle
from ..tools import ToolCall

#: Handles the front end's waiting widget messages for up to ``timeout`` seconds.
Pump = Callable[[float], None]

RUN, SKIP, RUN_ALL = "Run", "Skip", "Run all remaining"
_SAID = {RUN: "run", SKIP: "skipped", RUN_ALL: "run, and the turn's next calls too"}
_COMMS = ("comm_open", "comm_msg", "comm_close")
_KERNEL_NEEDS = (
    "session",
    "io_loop",
    "log",
    "shell_main",
    "shell_handlers",
    "get_parent",
    "set_parent",
    "_get_shell_context_var",
    "_shell_parent_ident",
)


@contextmanager
def ui_pump(kernel: Any) -> Iterator[Pump | None]:
    """A :data:`Pump` for this kernel, or ``None`` when it offers no way to make one (then
    ``--confirm`` asks with ``input()``)."""
    thread = getattr(kernel, "shell_channel_thread", None)
    shell: Pump | None = None
    if thread is not None:  # ipykernel 7, if it is shaped as the pump expects
        try:
            shell = _ShellPump(kernel, thread.manager)
        except (AttributeError, TypeError):
            shell = None
    yield shell


class _ShellPump:
    """ipykernel 7's main-thread shell messages, read while a cell runs (see the module)."""

    def __init__(self, kernel: Any, manager: Any) -> None:
        import zmq

        self._kernel = kernel
        self._socket = manager.get_shell_channel_to_subshell_pair(None).to_socket
        self._stream = manager.get_subshell_to_shell_channel_socket(None)
        self._readable = zmq.POLLIN
        for name in _KERNEL_NEEDS:  # private parts: a kernel without them asks with input()
            if not hasattr(kernel, name):
                raise AttributeError(name)

    def __call__(self, timeout: float) -> None:
        wait = int(timeout * 1000)
        while self._socket.poll(wait, self._readable):
            self._handle(self._socket.recv_multipart(copy=False))
            wait = 0  # take everything waiting, then return

    def _handle(self, frames: list[Any]) -> None:
        kernel = self._kernel
        session = kernel.session
        try:
            idents, rest = session.feed_identities(frames, copy=False)
            kind = session.unpack(rest[1].bytes).get("msg_type")
        except Exception:  # not for us to judge: the kernel reads (and rejects) it later
            kind = None
        if kind not in _COMMS:
            kernel.io_loop.add_callback(kernel.shell_main, None, frames)
            return
        try:
            msg = session.deserialize(rest, content=True, copy=False)
        except Exception:
            kernel.log.error("Invalid Message", exc_info=True)
            return
        parent = kernel.get_parent("shell")
        ident = kernel._get_shell_context_var(kernel._shell_parent_ident)
        kernel.set_parent(idents, msg, channel="shell")
        try:
            kernel.shell_handlers[kind](self._stream, idents, msg)
        except Exception:
            kernel.log.error("Exception in %s", kind, exc_info=True)
        finally:
            kernel.set_parent(ident, parent, channel="shell")  # the cell's output stays its own


class ButtonConfirm:
    """``--confirm`` for one cell: each call waits for Run, Skip or Run all remaining."""

    def __init__(self, pump: Pump, every: float = 0.05) -> None:
        self._pump, self._every = pump, every
        self.run_all = False

    def __call__(self, call: ToolCall) -> bool:
        from IPython.display import display, update_display

        if self.run_all:
            return True
        asked = f"Run {call.signature()}?"
        question = w.HTML(f"<code>{html.escape(asked, quote=False)}</code>")
        buttons = [
            w.Button(description=RUN, button_style="success"),
            w.Button(description=SKIP),
            w.Button(description=RUN_ALL, tooltip="Run this call and the turn's next ones"),
        ]
        chosen: list[str] = []
        for button in buttons:
            button.on_click(lambda b: chosen.append(b.description))
        box = w.HBox([question, *buttons], layout=w.Layout(align_items="center"))
        display_id = uuid.uuid4().hex
        display(box, display_id=display_id)
        said = "stopped (Ctrl-C)"
        try:
            while not chosen:
                self._pump(self._every)
            said = _SAID[chosen[0]]
        finally:
            line = f"{asked} → {said}"
            shown = html_bundle(f"<code>{html.escape(line, quote=False)}</code>")
            update_display({**shown, "text/plain": line}, raw=True, display_id=display_id)
            for widget in (box, question, *buttons):  # and their comms, layouts and styles
                for part in (widget, getattr(widget, "style", None), widget.layout):
                    if part is not None:
                        part.close()
        self.run_all = chosen[0] == RUN_ALL
        return chosen[0] != SKIP
