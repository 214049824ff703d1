"""The notebook in the prompt, in a real kernel: ``{In[N]}``/``{Out[N]}``/``{Err}`` references,
``%ollama fix`` after a real exception, and ``--code``'s new cell (the ``set_next_input``
payload front ends turn into a cell below; terminal IPython's pre-filled next prompt)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

import pytest

from ollama_magic.notebook import strip_ansi
from ollama_magic.server import OllamaServer

from .helpers import (
    IPYTHON,
    CellRun,
    Kernel,
    bodies,
    error_line,
    interrupt_after_first_words,
    magic_kernel,
)

FENCED = "Here is the fix:\n\n```sh\npip install x\n```\n\n```python\nprint('hi {there}')\n```"


def count(run: CellRun) -> int:
    """The execution count of a cell that ran."""
    assert run.ok, run.error
    return int(run.reply["content"]["execution_count"])


def next_input(run: CellRun) -> list[dict[str, object]]:
    """The ``set_next_input`` payloads of a cell's reply (what makes a new cell below)."""
    return [p for p in run.reply["content"].get("payload", []) if p["source"] == "set_next_input"]


def test_in_out_and_underscore_references_fill_the_prompt(kernel: Kernel, ollama) -> None:
    first = count(kernel.run("data = {'a': 1}\n%time y = 2\ndata['a'] + 41"))
    run = kernel.run(
        f"%%ollama echo -q\nCell: {{In[{first}]}} gave {{Out[{first}]}}; last {{_}}; "
        "before {In[-2]}; code {unknown} {} {'a': 1}"
    )
    assert run.ok, run.error
    (body,) = bodies(ollama)
    source = "data = {'a': 1}\n%time y = 2\ndata['a'] + 41"  # as typed, not as Python
    assert body["prompt"] == (
        f"Cell: {source} gave 42; last 42; before {source}; code {{unknown}} {{}} {{'a': 1}}"
    )


def test_out_reads_as_the_notebook_showed_it(kernel: Kernel, ollama) -> None:
    kernel.run(
        "import datetime\nclass Money:\n    def __init__(self, cents): self.cents = cents\n"
        "    def _repr_pretty_(self, p, cycle): p.text(f'${self.cents / 100:.2f}')"
    )
    shown = count(kernel.run("Money(1250), 'tea', datetime.date(2026, 1, 2)"))
    assert kernel.run(f"%%ollama echo -q\nIt showed {{Out[{shown}]}}").ok
    assert bodies(ollama)[-1]["prompt"] == (
        "It showed ($12.50, 'tea', datetime.date(2026, 1, 2))"
    )


def test_a_missing_reference_is_one_line_and_no_request(kernel: Kernel, ollama) -> None:
    here = count(kernel.run("'no output below'")) + 1
    message = error_line(kernel.run("%%ollama echo\nExplain {Out[99999]}"))
    assert message.startswith("{Out[99999]}: no cell 99999 in this session")
    assert "--literal" in message
    kernel.run("x = 1")  # a cell with no output
    message = error_line(kernel.run(f"%%ollama echo\nExplain {{Out[{here + 1}]}}"))
    assert message.startswith(f"{{Out[{here + 1}]}}: cell {here + 1} has no output")
    assert bodies(ollama) == []
    run = kernel.run("%%ollama echo --literal -q\nExplain {Out[99999]} and {Err}")
    assert run.ok, run.error
    assert bodies(ollama)[-1]["prompt"] == "Explain {Out[99999]} and {Err}"


def test_err_fills_the_last_traceback_without_colours(kernel: Kernel, ollama) -> None:
    failed = kernel.run("def half(n):\n    return n / 0\n\nhalf(3)")
    assert failed.error is not None and "\x1b[" in "".join(failed.error["traceback"])
    run = kernel.run("%%ollama echo -q\nWhy this? {Err}")
    assert run.ok, run.error
    prompt = bodies(ollama)[-1]["prompt"]
    assert prompt.startswith("Why this? Traceback (most recent call last):")
    assert prompt.endswith("ZeroDivisionError: division by zero")
    assert "return n / 0" in prompt and "Cell In[" in prompt
    assert "\x1b" not in prompt and "ipykernel_" not in prompt


def test_fix_sends_the_error_and_its_cell_and_streams_the_answer(kernel: Kernel, ollama) -> None:
    failed = kernel.run("values = [1, 2, 3]\ntotal = sum(values)\nvalues[total]")
    assert failed.error is not None and failed.error["ename"] == "IndexError"
    cell = count_of_error(failed)
    kernel.run("print('a cell that works does not change what fix sees')")
    run = kernel.run("%ollama fix echo --num-predict 500 -o r")
    assert run.ok, run.error
    (body,) = bodies(ollama)
    prompt = body["prompt"]
    assert prompt.startswith("A cell of my Jupyter notebook raised an error.")
    assert f"The cell (In[{cell}]):\n```python\nvalues = [1, 2, 3]\n" in prompt
    assert f"Cell In[{cell}], line 3" in prompt
    # from the cell on, as IPython shows it: not IPython's own frames that ran the cell
    assert prompt.count('  File "') == 0 and "interactiveshell" not in prompt
    assert prompt.endswith("IndexError: list index out of range\n```")
    assert "\x1b" not in prompt
    assert body["options"] == {"num_predict": 500} and body["stream"] is True
    assert run.of_type("update_display_data")  # streamed live, as any %%ollama cell
    assert "Echo:" in run.final_html()
    assert kernel.value("r.answer.startswith('Echo:')") is True
    # a usage message is not an error to fix: fix still sees the IndexError
    error_line(kernel.run("%%ollama echo --bogus\nhi"))
    run = kernel.run("%%ollama echo --fix -q\nI expected the last value.")
    assert run.ok, run.error
    prompt = bodies(ollama)[-1]["prompt"]
    assert "IndexError" in prompt and prompt.endswith("```\n\nI expected the last value.")
    # a small window: the request takes about half of it (4 characters a token)
    kernel.run(  # 40 chained exceptions: a long traceback
        "cause = None\nfor step in range(40):\n    try:\n"
        "        raise ValueError(f'step {step}') from cause\n"
        "    except ValueError as error:\n        cause = error\nraise cause"
    )
    run = kernel.run("%ollama fix echo --num-ctx 1024 -q")
    assert run.ok, run.error
    prompt = bodies(ollama)[-1]["prompt"]
    assert prompt.endswith("ValueError: step 39\n```") and "earlier lines left out]" in prompt
    assert 600 < len(prompt) < 1024 * 2
    # in a conversation, the fix request is the next user message
    run = kernel.run("%ollama fix --chat echo --conversation fixes -q")
    assert run.ok, run.error
    (chat,) = bodies(ollama, "/api/chat")
    assert chat["messages"][-1]["role"] == "user"
    assert chat["messages"][-1]["content"].startswith("A cell of my Jupyter notebook raised")


def count_of_error(run: CellRun) -> int:
    return int(run.reply["content"]["execution_count"])


def test_fix_of_a_cell_that_does_not_parse(kernel: Kernel, ollama) -> None:
    failed = kernel.run("def f(x:\n    return x")
    assert failed.error is not None and failed.error["ename"] == "SyntaxError"
    cell = count_of_error(failed)
    assert kernel.run("%ollama fix echo -q").ok
    prompt = bodies(ollama)[-1]["prompt"]
    # as IPython shows it: where, the line, the caret; none of IPython's own frames
    assert prompt.endswith(
        f"```text\n  Cell In[{cell}], line 1\n    def f(x:\n         ^\n"
        "SyntaxError: '(' was never closed\n```"
    )


def test_code_puts_the_first_python_block_in_a_new_cell(kernel: Kernel, ollama) -> None:
    run = kernel.run(f"%%ollama echo --code --literal\n{FENCED}")
    assert run.ok, run.error
    assert next_input(run) == [
        {"source": "set_next_input", "text": "print('hi {there}')", "replace": False}
    ]
    assert "new cell below, not run" in run.stdout
    run = kernel.run("%%ollama echo --code\nNo code here.")
    assert run.ok, run.error
    assert next_input(run) == []
    assert run.stdout.strip() == "The answer has no code block, so no cell was added."


def test_code_of_an_answer_cut_short_is_not_put_below(kernel: Kernel, ollama) -> None:
    # lorem's Markdown has a Python block after about 140 tokens
    run = kernel.run("%%ollama lorem --code --num-predict 160\nWrite.")
    assert run.ok, run.error
    assert kernel.run("print(1)").ok
    assert next_input(run) == []
    assert "cut off (num_predict) inside a code block" in run.stdout
    run = kernel.run("%%ollama lorem --code --num-predict 260 -q\nWrite.")
    assert [p["text"] for p in next_input(run)] == [
        'def compare(a: int, b: int) -> int:\n    """Return -1, 0 or 1, like cmp()."""\n'
        "    if a < b:\n        return -1\n    return 1 if a > b else 0"
    ]

    watch, updates = interrupt_after_first_words(kernel)
    run = kernel.run(
        f"%%ollama echo --code --literal -O scripted_delay=0.05\n{FENCED}", on_message=watch
    )
    assert updates.is_set()
    assert error_line(run) == "Interrupted: the answer above is partial."
    assert next_input(run) == []
    assert run.stdout.strip() == "The answer was cut short, so no cell was added."


def test_fix_with_code_puts_the_corrected_cell_below(kernel: Kernel, ollama) -> None:
    kernel.run("import math\nmath.sqrt(-1)")
    run = kernel.run("%ollama fix echo --code -q")
    assert run.ok, run.error
    # the echo model answers with the prompt, whose first Python block is the cell itself
    assert [p["text"] for p in next_input(run)] == ["import math\nmath.sqrt(-1)"]
    assert run.stdout == ""  # -q: the cell is made without a note


@pytest.fixture()
def fresh(server: OllamaServer) -> Iterator[Kernel]:
    """A kernel of its own, the extension not loaded yet."""
    kernel = Kernel(env={"OLLAMA_HOST": server.url})
    try:
        yield kernel
    finally:
        kernel.shutdown()


def test_nothing_to_fix_is_one_line_and_no_request(server: OllamaServer) -> None:
    server.clear()
    with magic_kernel(server.url) as kernel:
        run = kernel.run("%ollama fix echo")
        assert run.ok, run.error
        assert run.stdout == "Nothing to fix: no cell has raised an error in this session.\n"
        error_line(kernel.run("%%ollama echo --bogus\nhi"))  # our own usage message
        stopped = kernel.run("raise KeyboardInterrupt")  # as a Ctrl-C in a loop
        assert stopped.error is not None and stopped.error["ename"] == "KeyboardInterrupt"
        run = kernel.run("%%ollama echo --fix\nplease")
        assert run.stdout.startswith("Nothing to fix")
        message = error_line(kernel.run("%%ollama echo\nWhat is {Err}?"))
        assert message.startswith("{Err}: no error has been raised in this session yet")
    assert bodies(server) == []


def test_fix_finds_an_error_raised_before_loading_and_keeps_others_hooks(
    fresh: Kernel, ollama
) -> None:
    hooks = (
        "import sys\nseen = []\n"
        "def mine(shell, etype, value, tb, tb_offset=None):\n"
        "    seen.append(etype.__name__)\n"
        "get_ipython().set_custom_exc((KeyError,), mine)\n"
        "hook = sys.excepthook"
    )
    assert fresh.run(hooks).ok
    failed = fresh.run("int('seven')")
    assert failed.error is not None and failed.error["ename"] == "ValueError"
    cell = count_of_error(failed)
    assert fresh.run("%load_ext ollama_magic").ok
    run = fresh.run("%ollama fix echo -q")
    assert run.ok, run.error
    prompt = bodies(ollama)[-1]["prompt"]
    assert f"The cell (In[{cell}]):\n```python\nint('seven')\n```" in prompt
    assert "ValueError: invalid literal for int() with base 10: 'seven'" in prompt
    # the other extension's handler still runs, and nothing replaced the excepthook
    fresh.run("{}['missing']")
    assert fresh.value("seen") == ["KeyError"]
    assert fresh.value("sys.excepthook == hook") is True
    # unloading stops the watching; loading again starts it
    assert fresh.run("%reload_ext ollama_magic").ok
    watching = (
        "sum('Cells._after_cell' in repr(c) "
        "for c in get_ipython().events.callbacks['post_run_cell'])"
    )
    assert fresh.value(watching) == 1
    assert fresh.run("%unload_ext ollama_magic").ok
    assert fresh.value(watching) == 0
    # a cell that did not parse while unloaded is found by its file
    failed = fresh.run("def g(:\n    pass")
    assert failed.error is not None and failed.error["ename"] == "SyntaxError"
    cell = count_of_error(failed)
    assert fresh.run("%load_ext ollama_magic").ok
    assert fresh.run("%ollama fix echo -q").ok
    prompt = bodies(ollama)[-1]["prompt"]
    assert f"The cell (In[{cell}]):\n```python\ndef g(:\n    pass\n```" in prompt
    assert f"  Cell In[{cell}], line 1\n" in prompt


def test_terminal_ipython_prefills_the_next_prompt(ollama) -> None:
    """A real terminal IPython on a pty: after a --code cell, the next prompt holds the code."""
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(
        IPYTHON[0],
        [*IPYTHON[1:], "--no-autoindent", "--no-confirm-exit"],
        env=dict(os.environ, OLLAMA_HOST=ollama.url, TERM="xterm"),
        encoding="utf-8",
        timeout=30,
        dimensions=(40, 200),
    )
    try:
        child.expect(r"In \[1\]:")
        for line in ["%%ollama echo --code --literal", *FENCED.splitlines(), "", ""]:
            child.send(line + "\r")
            time.sleep(0.05)
        child.expect(r"The answer's code is in the next prompt, not run")
        child.expect(r"In \[2\]:")
        drawn = child.buffer  # the prompt line as drawn: the code, its brackets highlighted
        deadline = time.monotonic() + 5
        while "print('hi {there}')" not in strip_ansi(drawn) and time.monotonic() < deadline:
            with contextlib.suppress(pexpect.TIMEOUT):
                drawn += child.read_nonblocking(4096, timeout=0.5)
        assert "print('hi {there}')" in strip_ansi(drawn)  # typed in for you, not run
        child.sendcontrol("c")
        child.send("exit\r")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    (body,) = bodies(ollama)
    assert body["prompt"] == FENCED


def test_interrupted_fix_ends_with_one_line_and_adds_no_cell(kernel: Kernel, ollama) -> None:
    kernel.run("1 / 0")

    watch, updates = interrupt_after_first_words(kernel)
    run = kernel.run("%ollama fix slow --code -o r", on_message=watch)
    assert updates.is_set()
    assert error_line(run) == "Interrupted: the answer above is partial (kept in r)."
    assert next_input(run) == []
    assert kernel.value("r.done_reason") == "interrupted"
