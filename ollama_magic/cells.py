"""The notebook's cells as the magic needs them: their history for ``{In[N]}``/``{Out[N]}``,
the last error for ``fix``, and a new cell below for ``--code``.

The last error is watched through IPython's ``post_run_cell`` event, which any number of
extensions can listen to: no exception hook is installed, so nobody else's is replaced. An
error raised before the extension was loaded is still found through ``sys.last_value``, which
IPython sets whenever it shows a traceback. Usage messages (``UsageError``, ours included) and
interrupts (Ctrl-C) are not errors to fix and are skipped.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

from .notebook import (
    CellError,
    History,
    describe_error,
    first_code,
    fit_to_window,
    fix_prompt,
)
from .render import open_fence
from .result import INTERRUPTED, GenerationResult


class Cells:
    """Reads the shell's history and errors; :meth:`close` stops listening."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self._last: tuple[BaseException, int | None, str] | None = None
        self._listening = False
        events = getattr(shell, "events", None)
        if events is not None:
            events.register("post_run_cell", self._after_cell)
            self._listening = True

    def close(self) -> None:
        if self._listening:
            self.shell.events.unregister("post_run_cell", self._after_cell)
            self._listening = False

    def _after_cell(self, result: Any) -> None:
        error = result.error_in_exec or result.error_before_exec
        if error is None or _not_a_bug(error):
            return
        info = getattr(result, "info", None)
        source = getattr(info, "raw_cell", "") or ""
        self._last = (error, getattr(result, "execution_count", None), source)

    def history(self, *, with_error: bool = True) -> History:
        """The cells as typed (``%%ollama`` lines, not the Python they become), their outputs
        and (``with_error``) the last error's text."""
        inputs = self._inputs() or list(self.shell.user_ns.get("In", []))
        outputs = self.shell.user_ns.get("Out", {})
        error = self.last_error() if with_error else None
        return History(
            inputs=inputs,
            outputs=outputs if isinstance(outputs, dict) else {},
            error=error.traceback if error else None,
            shown=self._plain_text,
        )

    def _plain_text(self, value: Any) -> str:
        """``value`` as its ``Out[N]`` showed it; its ``repr`` if that formatter fails."""
        formatter = getattr(self.shell, "display_formatter", None)
        plain = getattr(formatter, "formatters", {}).get("text/plain")
        try:
            text = plain(value) if plain is not None else None
        except Exception:  # a broken _repr_pretty_ of the user's: fall back, do not fail
            text = None
        return text if isinstance(text, str) else repr(value)

    def last_error(self) -> CellError | None:
        """The latest exception a cell raised, with that cell's number and source; ``None``
        when there is none."""
        if self._last is not None:
            exc, count, source = self._last
        else:  # raised before %load_ext: IPython kept it when it showed the traceback
            kept = getattr(sys, "last_value", None)
            if not isinstance(kept, BaseException) or _not_a_bug(kept):
                return None
            exc = kept
            count, source = self._cell_of(exc)
        summary, text = describe_error(exc, self._cell_name)
        return CellError(summary=summary, traceback=text, cell=count, source=source)

    def _cell_name(self, filename: str) -> str | None:
        """``Cell In[3]`` for the file IPython compiled cell 3 into, as its tracebacks say."""
        named = getattr(getattr(self.shell, "compile", None), "format_code_name", None)
        found = named(filename) if callable(named) else None
        return f"{found[0]} {found[1]}" if found else None

    def _cell_of(self, exc: BaseException) -> tuple[int | None, str]:
        """The cell whose code is the outermost frame of ``exc``'s traceback: the one run."""
        mapping = getattr(getattr(self.shell, "compile", None), "_filename_map", {})
        files = [frame.f_code.co_filename for frame, _ in traceback.walk_tb(exc.__traceback__)]
        if isinstance(exc, SyntaxError):  # the cell did not parse: no frame of its own
            files.append(exc.filename or "")
        for name in files:
            count = mapping.get(name)
            if isinstance(count, int):
                inputs = self._inputs()
                return count, inputs[count] if 0 < count < len(inputs) else ""
        return None, ""

    def _inputs(self) -> list[str]:
        """The cells as typed; IPython's ``In`` holds the Python they were turned into."""
        manager = getattr(self.shell, "history_manager", None)
        return list(getattr(manager, "input_hist_raw", None) or [])

    def ask_fix(self, body: dict[str, Any]) -> bool:
        """Turn a ``--fix`` request's prompt (the user's words, maybe none) into the fix
        request for the last error; ``False``, after one line saying so, when there is none."""
        error = self.last_error()
        if error is None:
            print("Nothing to fix: no cell has raised an error in this session.")
            return False
        options = body.get("options") or {}
        num_ctx = options.get("num_ctx") if isinstance(options, dict) else None
        error = fit_to_window(error, num_ctx if isinstance(num_ctx, int) else None)
        body["prompt"] = fix_prompt(error, str(body.get("prompt", "")))
        return True

    def code_below(self, result: GenerationResult, *, quiet: bool = False) -> None:
        """``--code``: the answer's code block into a new cell below, with one line saying
        where it went, or why there is none."""
        if result.done_reason == INTERRUPTED:
            print("The answer was cut short, so no cell was added.")
            return
        code = first_code(result.answer)
        if code is None:
            print("The answer has no code block, so no cell was added.")
            return
        if result.done_reason == "length" and open_fence(result.answer) is not None:
            print(
                "The answer was cut off (num_predict) inside a code block, so no cell was "
                "added; raise --num-predict."
            )
            return
        self.put_below(code)
        if not quiet:
            where = "a new cell below" if self._in_kernel() else "the next prompt"
            print(f"The answer's code is in {where}, not run: it is model output, read it first.")

    def _in_kernel(self) -> bool:
        return getattr(self.shell, "kernel", None) is not None

    def put_below(self, code: str) -> None:
        """A new cell below this one holding ``code``, not run (Lab, Notebook 7 and VS Code make
        the cell from the kernel's ``set_next_input`` payload; terminal IPython pre-fills the
        next prompt with it)."""
        self.shell.set_next_input(code, replace=False)


def _not_a_bug(exc: BaseException) -> bool:
    """A usage message or the user's own stop: nothing in the cell to fix."""
    from IPython.core.error import UsageError

    return isinstance(exc, (UsageError, KeyboardInterrupt))
