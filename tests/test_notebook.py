"""The pure part of the notebook in the prompt: references, the fix request, the code block."""

from __future__ import annotations

import pytest

from ollama_magic.args import ArgsError, Defaults, build_call, parse_line
from ollama_magic.commands import parse_command
from ollama_magic.notebook import (
    OUT_CHARS,
    CellError,
    History,
    describe_error,
    fill_references,
    first_code,
    fix_prompt,
    trim_traceback,
)

HISTORY = History(
    inputs=["", "x = 1", "x + 1", "print(x)", "{In[1]} {Out[2]}"],
    outputs={2: 2},
    error="Traceback (most recent call last):\nNameError: name 'y' is not defined",
)


@pytest.mark.parametrize(
    ("prompt", "filled"),
    [
        ("{In[1]}", "x = 1"),
        ("{In[-2]} / {Out[-3]}", "print(x) / 2"),  # counted back from this cell (In[-1])
        ("{In[-1]}", "{In[1]} {Out[2]}"),  # this cell, as Python's In[-1] is
        ("{Err}", HISTORY.error),
        ("{Err} {x}", f"{HISTORY.error} 5"),
        ("def f(): return {'In': 1}[In]", "def f(): return {'In': 1}[In]"),
        ("{In[ 1]} {Out[x]} {In}", "{In[ 1]} {Out[x]} {In}"),  # not references: as written
        ("{x} holds {In[2]}", "5 holds x + 1"),
    ],
)
def test_references_fill_and_other_braces_stay(prompt: str, filled: str) -> None:
    assert fill_references(prompt, {"x": 5}, HISTORY) == filled


def test_filled_text_is_never_filled_again() -> None:
    history = History(inputs=["", "s = '{x} {In[1]}'"], outputs={})
    assert fill_references("{In[1]}", {"x": 5}, history) == "s = '{x} {In[1]}'"


def test_a_variable_named_err_wins_over_the_last_error() -> None:
    assert fill_references("{Err}", {"Err": "mine"}, HISTORY) == "mine"


@pytest.mark.parametrize(
    ("prompt", "start"),
    [
        ("{In[9]}", "{In[9]}: no cell 9 in this session (this cell is 4)"),
        ("{In[0]}", "{In[0]}: no cell 0"),
        ("{In[-9]}", "{In[-9]}: not 9 cells in this session (this cell is 4)"),
        ("{Out[3]}", "{Out[3]}: cell 3 has no output (cells with one: 2)"),
        ("{Out[-1]}", "{Out[-1]}: cell 4 has no output"),
    ],
)
def test_a_missing_reference_says_what_exists(prompt: str, start: str) -> None:
    with pytest.raises(ArgsError) as caught:
        fill_references(prompt, {}, HISTORY)
    assert str(caught.value).startswith(start)
    assert str(caught.value).endswith("use --literal to send the braces as written")


def test_no_error_yet_and_long_outputs() -> None:
    with pytest.raises(ArgsError, match=r"^\{Err\}: no error has been raised"):
        fill_references("{Err}", {}, History(inputs=["", "x"]))
    long = History(inputs=["", "a", "b"], outputs={1: "z" * (OUT_CHARS + 10)})
    text = fill_references("{Out[1]}", {}, long)
    assert text == "'" + "z" * (OUT_CHARS - 1) + "… [12 more characters]"  # its repr, cut
    plain = History(inputs=["", "a", "b"], outputs={1: "z"}, shown=str)
    assert fill_references("{Out[1]}", {}, plain) == "z"


def test_build_call_fills_references_only_when_asked() -> None:
    def prompt(line: str, **defaults: object) -> str:
        call = build_call(parse_line(line), "{In[1]}", {}, Defaults(**defaults), None, HISTORY)
        return str(call.body["prompt"])

    assert prompt("m") == "x = 1"
    assert prompt("m --literal") == "{In[1]}"
    assert prompt("m", interpolate=False) == "{In[1]}"
    no_history = build_call(parse_line("m"), "{In[1]}", {}, Defaults())
    assert no_history.body["prompt"] == "{In[1]}"


def test_fix_and_code_flags_and_the_fix_command() -> None:
    call = build_call(parse_line("m --fix --code"), "", {}, Defaults())
    assert (call.fix, call.code, call.body["prompt"]) == (True, True, "")
    with pytest.raises(ArgsError, match="the cell is empty"):
        build_call(parse_line("m --code"), "", {}, Defaults())
    command = parse_command("fix qwen3 --code -o r --num-predict 9")
    assert command.name == "fix"
    assert command.args.tokens == ("qwen3", "--code", "-o", "r", "--num-predict", "9")
    assert parse_command("fix -h").name == "help"
    assert "--code" in command.unit.flags() and "--fix" not in command.unit.flags()


def _raise_chained() -> None:
    try:
        {}["key"]
    except KeyError as exc:
        raise ValueError("\x1b[31mbad\x1b[0m value") from exc


def test_describe_error_names_cells_strips_colours_and_keeps_causes() -> None:
    try:
        _raise_chained()
    except ValueError as exc:
        error = exc
    summary, text = describe_error(error, lambda f: "Cell In[7]" if f == __file__ else None)
    assert summary == "ValueError: bad value"
    assert "KeyError: 'key'" in text and "direct cause" in text
    assert f'File "{__file__}"' not in text and "Cell In[7], line" in text
    assert "\x1b" not in text and text.endswith("ValueError: bad value")


def test_trim_keeps_the_last_frames_and_the_error() -> None:
    frames = "".join(f'  File "x.py", line {n}, in f\n    f()\n' for n in range(500))
    text = f"Traceback (most recent call last):\n{frames}RecursionError: too deep"
    trimmed = trim_traceback(text, 1000)
    assert len(trimmed) <= 1000
    lines = trimmed.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[1].startswith("  [… ") and lines[1].endswith(" earlier lines left out]")
    assert lines[-3:] == ['  File "x.py", line 499, in f', "    f()", "RecursionError: too deep"]
    huge = trim_traceback("Traceback:\nE: " + "x" * 5000, 100)
    assert huge.splitlines()[-1].endswith("more characters]") and len(huge) < 200


def test_fix_prompt_fences_hold_any_backticks() -> None:
    error = CellError("E: x", "Traceback\nE: ```x```", 2, "s = '````'")
    prompt = fix_prompt(error, "  Keep it short.  ")
    assert "The cell (In[2]):\n`````python\ns = '````'\n`````" in prompt
    assert "The error:\n````text\nTraceback\nE: ```x```\n````" in prompt
    assert prompt.endswith("\n\nKeep it short.")
    unknown = fix_prompt(CellError("E: x", "E: x"))
    assert "The cell" not in unknown


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        ("```js\nx()\n```\n```py\nf()\n```", "f()"),
        ("```\nls -l\n```\n\n```bash\nrm\n```", "ls -l"),
        ("~~~python\na = {'b': 1}\n~~~", "a = {'b': 1}"),
        ("- step\n\n  ```python\n  g()\n  ```", "g()"),  # in a list: the indent is not code
        ("````python\n```\ninner\n```\n````", "```\ninner\n```"),
        ("Use `print(x)` inline.", None),
        ("```python\n\n```\n```text\nok\n```", "ok"),  # an empty block is skipped
        ("```python\nunclosed(", "unclosed("),  # cut off: the code so far
    ],
)
def test_first_code_reads_blocks_as_the_renderer_does(answer: str, code: str | None) -> None:
    assert first_code(answer) == code
