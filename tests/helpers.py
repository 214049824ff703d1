"""What several test modules use (they import it from here, never from each other): a real
IPython kernel that runs cells and collects every iopub message, a terminal IPython, and small
checks on what a cell or a server saw."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from jupyter_client.manager import KernelManager
from jupyter_core.utils import ensure_event_loop

from ollama_magic.server import OllamaServer

#: Terminal IPython with the extension loaded and no colours.
IPYTHON = [
    sys.executable,
    "-m",
    "IPython",
    "--no-banner",
    "--colors=NoColor",
    "--quick",
    "--ext",
    "ollama_magic",
]


def run_ipython(code: str, host: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a terminal IPython with ``OLLAMA_HOST=host``."""
    env = dict(os.environ, OLLAMA_HOST=host)
    return subprocess.run(
        [*IPYTHON, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )


def until(check: Callable[[], Any], timeout: float = 10.0, every: float = 0.02) -> Any:
    """Poll ``check`` until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {check}")
        time.sleep(every)


def bodies(server: OllamaServer, path: str = "/api/generate") -> list[dict[str, Any]]:
    """The JSON bodies the server received for ``path``, in order."""
    return [r.json for r in server.requests if r.path == path]


def flatten(outputs: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """nbval's comparison: values grouped by mime type (empty bundles contribute nothing)."""
    flat: dict[str, list[Any]] = {}
    for bundle in outputs:
        for mime, value in bundle.items():
            flat.setdefault(mime, []).append(value)
    return flat


def error_line(run: CellRun) -> str:
    """A UsageError: the reply fails the cell, and the user sees one line on stderr."""
    reply = run.reply["content"]
    assert reply["status"] == "error", "the cell should have failed"
    assert reply["ename"] == "UsageError", reply
    assert reply["traceback"] == []  # a message, not a traceback
    assert not run.of_type("error")
    stderr = "".join(
        m["content"]["text"] for m in run.of_type("stream") if m["content"]["name"] == "stderr"
    )
    assert stderr.strip() == f"UsageError: {reply['evalue']}"
    return str(reply["evalue"])


@dataclass
class CellRun:
    """The messages one cell produced, in order."""

    reply: dict[str, Any]
    messages: list[dict[str, Any]] = field(default_factory=list)
    started: Any = None  # the kernel's timestamp of execute_input: when the cell began

    def of_type(self, *types: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["msg_type"] in types]

    @property
    def ok(self) -> bool:
        return self.reply["content"]["status"] == "ok"

    @property
    def error(self) -> dict[str, Any] | None:
        errors = self.of_type("error")
        return errors[0]["content"] if errors else None

    @property
    def stdout(self) -> str:
        return "".join(
            m["content"]["text"] for m in self.of_type("stream") if m["content"]["name"] == "stdout"
        )

    def notebook_outputs(self) -> list[dict[str, Any]]:
        """The outputs a front end ends with (updates applied), as mime bundles."""
        outputs: list[dict[str, Any]] = []
        where: dict[str, int] = {}
        for m in self.messages:
            content = m["content"]
            did = content.get("transient", {}).get("display_id")
            if m["msg_type"] == "update_display_data":
                if did in where:
                    outputs[where[did]] = content["data"]
            elif m["msg_type"] in ("display_data", "execute_result"):
                if did:
                    where[did] = len(outputs)
                outputs.append(content["data"])
        return outputs

    def nbval_outputs(self) -> list[dict[str, Any]]:
        """What nbval compares: first versions only, updates dropped."""
        return [
            m["content"]["data"]
            for m in self.messages
            if m["msg_type"] in ("display_data", "execute_result")
        ]

    def final_html(self) -> str:
        shown = [o for o in self.notebook_outputs() if o]
        return shown[-1].get("text/html", "") if shown else ""


class Kernel:
    """One ipykernel process with ``OLLAMA_HOST`` pointed at a test server."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.km = KernelManager(kernel_name="python3")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.km.start_kernel(env=full_env)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def run(self, code: str, timeout: float = 60, on_message: Any = None) -> CellRun:
        """Execute ``code`` and return its messages; ``on_message(msg)`` sees each as it comes."""
        msg_id = self.kc.execute(code, store_history=True)
        run = CellRun(reply={})
        deadline = time.monotonic() + timeout
        idle = False
        while not idle:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"cell did not finish in {timeout} s: {code[:80]!r}")
            try:
                msg = self.kc.get_iopub_msg(timeout=remaining)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status":
                idle = msg["content"]["execution_state"] == "idle"
                continue
            if msg["msg_type"] == "execute_input":
                run.started = msg["header"]["date"]
                continue
            run.messages.append(msg)
            if on_message is not None:
                on_message(msg)
        run.reply = self.kc.get_shell_msg(timeout=timeout)
        while run.reply["parent_header"].get("msg_id") != msg_id:
            run.reply = self.kc.get_shell_msg(timeout=timeout)
        return run

    def value(self, expression: str) -> Any:
        """Evaluate ``expression`` in the kernel and return its ``repr`` parsed back."""
        import ast

        run = self.run(f"print(repr({expression}))")
        assert run.ok, run.error
        return ast.literal_eval(run.stdout.strip())

    def interrupt(self) -> None:
        """Ctrl-C in the kernel, from any thread. jupyter_client's sync API runs on an event
        loop it makes for each thread and never closes: off the main thread, close it here."""
        self.km.interrupt_kernel()
        if threading.current_thread() is not threading.main_thread():
            ensure_event_loop().close()

    def shutdown(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def interrupt_after_first_words(
    kernel: Kernel, pause: float = 0.3
) -> tuple[Callable[[dict[str, Any]], None], threading.Event]:
    """Interrupt ``kernel`` ``pause`` s after a cell's first live update, as a user pressing Stop
    mid-answer: returns the ``on_message`` watcher to run the cell with, and the event it sets."""
    updates = threading.Event()

    def watch(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "update_display_data" and msg["content"]["data"]:
            updates.set()

    def interrupt() -> None:
        updates.wait(20)
        time.sleep(pause)
        kernel.interrupt()

    threading.Thread(target=interrupt, daemon=True).start()
    return watch, updates


@contextmanager
def magic_kernel(host: str) -> Iterator[Kernel]:
    """A kernel with ``OLLAMA_HOST=host`` and the extension loaded; shut down afterwards."""
    kernel = Kernel(env={"OLLAMA_HOST": host})
    try:
        run = kernel.run("%load_ext ollama_magic")
        assert run.ok, run.error
        yield kernel
    finally:
        kernel.shutdown()
