"""``pytest --nbval notebooks/`` with nothing else running.

Without ``OLLAMA_HOST`` every notebook runs against a fresh local server (SmolLM2 and the
scripted models) and strict nbval compares every output, after ``sanitize.cfg`` masks what
truly varies (durations, rates, timestamps, ports). With ``OLLAMA_HOST`` set the notebooks run
against that Ollama in lax mode (real models are not deterministic): only errors fail a cell,
and the scripted model names are copied from stand-ins for the run (see ``_tutorial.py``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import _tutorial

_REAL_OLLAMA = os.environ.get("OLLAMA_HOST")
_state: dict[str, object] = {"file": None, "stack": None, "copies": []}


def pytest_configure(config: pytest.Config) -> None:
    option = config.option
    if not (getattr(option, "nbval", False) or getattr(option, "nbval_lax", False)):
        return
    if _REAL_OLLAMA:
        option.nbval, option.nbval_lax = False, True
    elif not option.nbval_sanitize_with:
        option.nbval_sanitize_with = str(Path(__file__).parent / "sanitize.cfg")
    _store_history()


def _store_history() -> None:
    """Run cells as Jupyter (and ``_tutorial.py``, which saves the outputs) does: numbered,
    with ``In``/``Out`` kept. nbval sends ``store_history=False``, under which a cell has no
    number and ``{In[2]}`` in a prompt names nothing (``13-notebook-context``)."""
    from nbval.kernel import RunningKernel

    def execute_cell_input(self: RunningKernel, cell_input: str, allow_stdin: bool | None = None):
        return self.kc.execute(
            cell_input, store_history=True, allow_stdin=allow_stdin, stop_on_error=False
        )

    RunningKernel.execute_cell_input = execute_cell_input


def pytest_report_header(config: pytest.Config) -> str | None:
    if _REAL_OLLAMA:
        return f"tutorials: lax run against the Ollama at {_REAL_OLLAMA}"
    return "tutorials: strict run, a fresh local server per notebook"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before a notebook's kernel starts (its first cell), give it a fresh server."""
    if _REAL_OLLAMA or not str(item.path).endswith(".ipynb") or _state["file"] == item.path:
        return
    _close_server()
    stack = contextlib.ExitStack()
    url = stack.enter_context(_tutorial.local_server())
    stack.enter_context(_tutorial.pointed_at(url))
    _state.update(file=item.path, stack=stack)


def pytest_sessionstart(session: pytest.Session) -> None:
    if _REAL_OLLAMA and session.config.option.nbval_lax:
        _state["copies"] = _copy_stand_ins(_REAL_OLLAMA)


def pytest_sessionfinish(session: pytest.Session) -> None:
    _close_server()
    if _REAL_OLLAMA and _state["copies"]:
        from ollama_magic.client import OllamaClient

        client = OllamaClient(_REAL_OLLAMA)
        for name in _state["copies"]:  # type: ignore[attr-defined]
            client.call("DELETE", "/api/delete", {"model": name})
        client.close()


def _close_server() -> None:
    stack = _state["stack"]
    if stack is not None:
        stack.close()  # type: ignore[attr-defined]
    _state.update(file=None, stack=None)


def _copy_stand_ins(url: str) -> list[str]:
    """Copy a stand-in to each tutorial model the real server lacks; the names copied."""
    from ollama_magic.client import OllamaClient
    from ollama_magic.errors import OllamaError

    client = OllamaClient(url)
    have = {m["name"] for m in client.tags()} | {m["model"] for m in client.tags()}
    copied = []
    for name, source in _tutorial.STAND_INS.items():
        full = name if ":" in name else f"{name}:latest"
        if full in have:
            continue
        try:
            client.call("POST", "/api/copy", {"source": source, "destination": name})
        except OllamaError as error:
            print(f"tutorials: cannot stand {source} in for {name}: {error}", file=sys.stderr)
        else:
            copied.append(name)
    client.close()
    return copied
