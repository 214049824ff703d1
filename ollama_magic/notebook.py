"""What a prompt can take from the notebook itself: ``{In[3]}``, ``{Out[3]}`` and ``{Err}``
references, the last error as a fix request, and the code block of an answer for a new cell.

Pure: no IPython, no I/O. The magic hands in the history (:class:`History`) and the exception;
:mod:`ollama_magic.cells` is what reads them from the shell.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .args import ArgsError
from .render import code_blocks

#: ``{In[3]}``, ``{Out[-2]}`` or a plain ``{name}``; every other brace is left as written.
_REFERENCE = re.compile(r"\{(?:(In|Out)\[(-?\d+)\]|([A-Za-z_][A-Za-z0-9_]*))\}")

#: An ``{Out[N]}`` longer than this is cut (a DataFrame's text can run to megabytes).
OUT_CHARS = 4000

#: The traceback sent with a fix, or filled in for ``{Err}``: its last frames, within this many
#: characters (about 1,500 tokens), so it fits a small model's context beside the cell.
TRACEBACK_CHARS = 6000

#: Languages whose code block is taken first by ``--code``.
PYTHON_INFOS = ("python", "py", "python3", "py3", "ipython", "ipython3", "pycon")

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")


@dataclass(frozen=True)
class History:
    """The session's cells: ``inputs[n]`` is cell n as typed (``inputs[0]`` is empty, as in
    IPython's ``In``), ``outputs`` maps a cell's number to its result, ``error`` is the last
    error's text or ``None``; ``shown`` writes a result as the notebook showed it (IPython's
    plain-text form, so ``{Out[3]}`` reads as ``Out[3]`` did)."""

    inputs: Sequence[str] = ()
    outputs: Mapping[int, Any] = field(default_factory=dict)
    error: str | None = None
    shown: Callable[[Any], str] = repr


def fill_references(text: str, namespace: Mapping[str, Any], history: History) -> str:
    """Fill ``{name}`` from variables and ``{In[N]}``, ``{Out[N]}``, ``{Err}`` from the session,
    in one pass (what is filled in is never read again). A negative N counts back from this
    cell, as ``In[-1]`` does in Python; a reference to what does not exist is an
    :class:`~ollama_magic.args.ArgsError`, since a silent ``{Out[9]}`` would mislead the model.

    >>> h = History(inputs=["", "x = {1: 2}", "x", "%%ollama"], outputs={2: {1: 2}})
    >>> fill_references("Code {In[1]}, value {Out[2]} of {x}, {y} {}", {"x": 7}, h)
    'Code x = {1: 2}, value {1: 2} of 7, {y} {}'
    >>> fill_references("{In[-2]} -> {Out[-2]}", {}, h)
    'x -> {1: 2}'
    """

    def swap(match: re.Match[str]) -> str:
        kind, number, name = match.groups()
        if name is not None:
            if name in namespace:
                return str(namespace[name])
            if name == "Err":
                if history.error is None:
                    raise ArgsError(
                        "{Err}: no error has been raised in this session yet; "
                        "use --literal to send the braces as written"
                    )
                return history.error
            return match.group(0)
        return _cell_reference(kind, int(number), history)

    return _REFERENCE.sub(swap, text)


def _cell_reference(kind: str, number: int, history: History) -> str:
    """The text of ``In[number]`` or ``Out[number]``, or the one line saying why there is none."""
    current = len(history.inputs) - 1  # the cell being run is the last input
    index = number if number >= 0 else len(history.inputs) + number
    ref = f"{{{kind}[{number}]}}"
    if not 0 < index <= current:
        what = f"no cell {number}" if number >= 0 else f"not {-number} cells"
        raise ArgsError(
            f"{ref}: {what} in this session (this cell is {max(current, 0)}); "
            "use --literal to send the braces as written"
        )
    if kind == "In":
        return history.inputs[index]
    if index not in history.outputs:
        have = sorted(n for n in history.outputs if n > 0)[-5:]
        listed = ", ".join(map(str, have)) if have else "none yet"
        raise ArgsError(
            f"{ref}: cell {index} has no output (cells with one: {listed}); "
            "use --literal to send the braces as written"
        )
    return shorten(history.shown(history.outputs[index]), OUT_CHARS)


def shorten(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters, saying how much was left out.

    >>> shorten("abcdefghij", 4)
    'abcd… [6 more characters]'
    """
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} more characters]"


def strip_ansi(text: str) -> str:
    r"""Text without terminal colour codes.

    >>> strip_ansi("\x1b[0;31mZeroDivisionError\x1b[0m: x")
    'ZeroDivisionError: x'
    """
    return _ANSI.sub("", text)


# -- the last error --------------------------------------------------------------------------


@dataclass(frozen=True)
class CellError:
    """An exception a cell raised, as a prompt needs it: which cell (its number, when known,
    and its source), the one-line summary and the plain, trimmed traceback."""

    summary: str
    traceback: str
    cell: int | None = None
    source: str = ""


def describe_error(
    exc: BaseException,
    cell_name: Callable[[str], str | None] = lambda filename: None,
    budget: int = TRACEBACK_CHARS,
) -> tuple[str, str]:
    """The summary line and the plain traceback of ``exc``: no colour codes, each cell's file
    named as IPython does (``Cell In[3]``, by ``cell_name``), trimmed to ``budget`` characters
    by leaving out the earliest frames (the last ones say where it broke).

    >>> try:
    ...     1 / 0
    ... except ZeroDivisionError as e:
    ...     summary, text = describe_error(e)
    >>> summary, text.splitlines()[0], text.splitlines()[-1]
    ('ZeroDivisionError: division by zero', 'Traceback (most recent call last):', \
'ZeroDivisionError: division by zero')
    """
    lines = traceback.format_exception_only(type(exc), exc)
    summary = strip_ansi(lines[-1] if lines else type(exc).__name__).strip()
    shown = traceback.TracebackException(type(exc), exc, _from_cell(exc, cell_name))
    text = "".join(shown.format())
    for filename in _filenames(exc):
        name = cell_name(filename)
        if name:
            text = text.replace(f'File "{filename}"', name)
    return summary, trim_traceback(strip_ansi(text).rstrip("\n"), budget)


def _from_cell(exc: BaseException, cell_name: Callable[[str], str | None]) -> Any:
    """``exc``'s traceback from its first frame in a cell: the frames before it are IPython
    running the cell, which its own tracebacks leave out too. A cell that does not parse has
    no frame of its own: its ``SyntaxError`` is shown alone, as IPython shows it."""
    tb = exc.__traceback__
    while tb is not None:
        if cell_name(tb.tb_frame.f_code.co_filename):
            return tb
        tb = tb.tb_next
    if isinstance(exc, SyntaxError) and cell_name(exc.filename or ""):
        return None
    return exc.__traceback__


def _filenames(exc: BaseException) -> list[str]:
    """The files of every frame in ``exc``'s traceback and those of its causes."""
    names: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        files = [frame.f_code.co_filename for frame, _ in traceback.walk_tb(current.__traceback__)]
        if isinstance(current, SyntaxError) and current.filename:
            files.append(current.filename)
        for name in files:
            if name not in names:
                names.append(name)
        current = current.__cause__ or current.__context__
    return names


def trim_traceback(text: str, budget: int = TRACEBACK_CHARS) -> str:
    """The last lines of ``text`` that fit in ``budget`` characters, after its first line and a
    note of how many lines were left out; the final line (the error) is always kept.

    >>> frames = "".join(f"  frame {n}\\n" for n in range(1, 9))
    >>> trim_traceback(f"Traceback:\\n{frames}Error: x", 80)
    'Traceback:\\n  [… 6 earlier lines left out]\\n  frame 7\\n  frame 8\\nError: x'
    """
    if len(text) <= budget:
        return text
    lines = text.splitlines()
    head, body = lines[0], lines[1:]
    kept: list[str] = []
    used = len(head) + 32  # the note
    for line in reversed(body):
        if kept and used + len(line) + 1 > budget:
            break
        kept.append(shorten(line, budget) if not kept else line)
        used += len(line) + 1
    kept.reverse()
    dropped = len(body) - len(kept)
    note = [f"  [… {dropped} earlier lines left out]"] if dropped else []
    return "\n".join([head, *note, *kept])


def fence(text: str, info: str = "") -> str:
    """``text`` in a code fence longer than any run of backticks inside it.

    >>> fence("a ``` b", "text")
    '````text\\na ``` b\\n````'
    """
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{info}\n{text.rstrip(chr(10))}\n{ticks}"


#: The context window assumed when a fix request sets none (Ollama's default since 0.6).
DEFAULT_WINDOW = 4096


def fit_to_window(error: CellError, num_ctx: int | None = None) -> CellError:
    """``error`` trimmed so its fix request takes at most about half the model's window (at
    about four characters a token), leaving the rest for the answer: the traceback to its last
    frames (at most a third of that), the cell's source to its first characters.

    >>> long = CellError("E: x", "Traceback\\n" + "  frame\\n" * 400 + "E: x", 1, "x = 1\\n" * 900)
    >>> small = fit_to_window(long, 512)
    >>> len(small.traceback) <= 1024 // 3, small.traceback.endswith("E: x")
    (True, True)
    >>> len(small.traceback + small.source) < 1024 + 30, small.source.endswith("characters]")
    (True, True)
    """
    window = (num_ctx if num_ctx and num_ctx > 0 else DEFAULT_WINDOW) * 2
    tb_budget = min(TRACEBACK_CHARS, window // 3)
    traceback_text = trim_traceback(error.traceback, tb_budget)
    source = shorten(error.source, max(window - len(traceback_text), 200))
    return CellError(error.summary, traceback_text, error.cell, source)


def fix_prompt(error: CellError, words: str = "") -> str:
    """The request of ``%ollama fix``: what broke and where, then the corrected cell in one
    Python block (which ``--code`` puts in a new cell). ``words`` are the user's own.

    >>> error = CellError("NameError: x", "Traceback...\\nNameError: x", 3, "x + 1")
    >>> print(fix_prompt(error))  # doctest: +ELLIPSIS
    A cell of my Jupyter notebook raised an error. Explain ... in one ```python code block.
    <BLANKLINE>
    The cell (In[3]):
    ```python
    x + 1
    ```
    <BLANKLINE>
    The error:
    ```text
    Traceback...
    NameError: x
    ```
    """
    parts = [
        "A cell of my Jupyter notebook raised an error. Explain briefly what went wrong and "
        "why, then give the whole corrected cell in one ```python code block."
    ]
    if error.source.strip():
        where = f" (In[{error.cell}])" if error.cell else ""
        parts.append(f"The cell{where}:\n{fence(error.source, 'python')}")
    parts.append(f"The error:\n{fence(error.traceback, 'text')}")
    if words.strip():
        parts.append(words.strip())
    return "\n\n".join(parts)


# -- code for a new cell ---------------------------------------------------------------------


def first_code(answer: str) -> str | None:
    """The code ``--code`` puts in a new cell: the answer's first Python block, else its first
    block of any kind, else ``None``. Read by the Markdown parser that renders the answer, so
    a fence inside a list or a longer fence counts exactly as it is shown.

    >>> first_code("Run:\\n```sh\\npip x\\n```\\n\\n1. fix\\n\\n   ```python\\n   f()\\n   ```\\n")
    'f()'
    >>> first_code("```\\nls\\n```"), first_code("no code")
    ('ls', None)
    """
    blocks = [(info, code) for info, code in code_blocks(answer) if code.strip()]
    for info, code in blocks:
        if info in PYTHON_INFOS:
            return code.rstrip("\n")
    return blocks[0][1].rstrip("\n") if blocks else None
