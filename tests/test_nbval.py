"""Strict nbval on a notebook of ``%%ollama`` cells: the live display must not break it.

nbval drops ``update_display_data`` messages, so it sees each output's first version while the
saved notebook holds the last. This runs the real thing: nbclient executes and saves a
notebook, then ``pytest --nbval`` (strict, not lax) re-runs it and compares every output.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

CELLS = [
    "%load_ext ollama_magic",
    "%%ollama echo --num-predict 40\nWhat does the template do with this prompt?",
    "%%ollama reasoner -O scripted_delay=0.002\nWhy is the sky blue?",
    "%%ollama thinker --think low\n计划一次野餐。",
    "%%ollama lorem --num-predict 1500\nA long Markdown answer, please.",
    "%%ollama chinese -o r\n介绍一下人工智能\n",
    "print(r.done_reason, len(r.answer) > 0)",
]

SANITIZE = r"""
[tokens per second]
regex: \d+(\.\d+)? tokens/s
replace: RATE tokens/s

[load time]
regex: load \d+\.\d+ s
replace: load TIME s
"""


def executed(cells: list[str], url: str) -> nbformat.NotebookNode:
    """A notebook of ``cells`` run by nbclient (as a front end would) against ``url``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    old = os.environ.get("OLLAMA_HOST")
    os.environ["OLLAMA_HOST"] = url  # nbclient's kernel inherits this process's env
    try:
        NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    finally:
        if old is None:
            os.environ.pop("OLLAMA_HOST", None)
        else:
            os.environ["OLLAMA_HOST"] = old
    return nb


def nbval(path: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """Strict ``pytest --nbval`` on ``path`` in a clean pytest (no project config)."""
    (path.parent / "pytest.ini").write_text("[pytest]\n")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval",
            str(path),
            "-p",
            "no:cacheprovider",
            "-c",
            str(path.parent / "pytest.ini"),
            "-q",
            *extra,
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, OLLAMA_HOST=url),
        cwd=path.parent,
        timeout=300,
    )


def test_strict_nbval_passes_on_a_saved_notebook_of_streamed_answers(
    ollama, tmp_path: Path
) -> None:
    nb = executed(CELLS, ollama.url)
    path = tmp_path / "streamed.ipynb"
    nbformat.write(nb, path)

    # The saved notebook holds each answer once, rendered as Markdown.
    answers = [o for o in nb.cells[4].outputs if o.get("data")]
    heading = '<p class="om-h1"><strong>Lorem ipsum</strong></p>'
    assert len(answers) == 1 and heading in answers[0]["data"]["text/html"]
    assert nb.cells[6].outputs[0]["text"] == "stop True\n"

    (tmp_path / "sanitize.cfg").write_text(SANITIZE)
    done = nbval(path, ollama.url, "--nbval-sanitize-with", str(tmp_path / "sanitize.cfg"))
    assert done.returncode == 0, done.stdout[-3000:]
    assert f"{len(CELLS)} passed" in done.stdout


def test_strict_nbval_catches_a_changed_answer(ollama, tmp_path: Path) -> None:
    """The comparison is real: a saved answer that differs from a re-run fails."""
    nb = executed(CELLS[:2], ollama.url)
    final = [o for o in nb.cells[1].outputs if o.get("data")][-1]
    final["data"]["text/html"] = final["data"]["text/html"].replace("Echo", "Ekko")
    path = tmp_path / "changed.ipynb"
    nbformat.write(nb, path)
    done = nbval(path, ollama.url)
    assert done.returncode == 1 and "1 failed" in done.stdout, done.stdout[-2000:]
