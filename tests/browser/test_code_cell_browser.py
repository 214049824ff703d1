"""``--code`` in JupyterLab: the answer's code block arrives as a new cell below, not run.

The notebook (``context.ipynb``) is this module's own, written into Lab's folder here, in a page
and a kernel of its own. The ``echo`` model answers with the prompt it was given, so a prompt
holding a fenced block is a model answering with code; a ``fix`` after a real error answers
with the failing cell (the first Python block of the fix request).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import Lab, Notebook, _idle, _open, _write_notebook

expect = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed: pip install playwright"
).expect

pytestmark = pytest.mark.browser

CODE = "answer = 6 * 7\nprint({'answer': answer})"
CELLS = [
    "%load_ext ollama_magic",
    f"%%ollama echo --code --literal\nHere you are:\n\n```python\n{CODE}\n```",
    "values = [1, 2, 3]\nvalues[len(values)]",
    "%ollama fix echo --code",
]

# Each cell of the notebook: its prompt ([ ]:, [3]:), its source as the editor shows it, and
# how many outputs it has.
CELL_STATES = """() => Array.from(document.querySelectorAll('.jp-Notebook .jp-Cell')).map((c) => ({
    prompt: c.querySelector('.jp-InputPrompt').textContent.trim(),
    source: Array.from(c.querySelectorAll('.cm-content .cm-line'))
        .map((l) => l.textContent).join('\\n'),
    outputs: c.querySelectorAll('.jp-OutputArea-output').length,
}))"""


@pytest.fixture(scope="module")
def context_notebook(browser: Any, lab: Lab) -> Iterator[Notebook]:
    _write_notebook(lab.root / "context.ipynb", CELLS)
    nb = _open(browser, lab, "context.ipynb", CELLS, workspace="context", height=1600)
    try:
        yield nb
    finally:
        nb.page.close()


def cells(nb: Notebook) -> list[dict[str, Any]]:
    return nb.page.evaluate(CELL_STATES)


def shoot(nb: Notebook, first: int, last: int, path: Path) -> None:
    """A picture of cells ``first`` to ``last``: the cell that ran and the one it made."""
    nb.cell(first).scroll_into_view_if_needed()
    top, bottom = nb.cell(first).bounding_box(), nb.cell(last).bounding_box()
    height = bottom["y"] + bottom["height"] - top["y"]
    nb.page.screenshot(
        path=path, clip={"x": top["x"], "y": top["y"], "width": top["width"], "height": height}
    )


def test_code_arrives_in_a_new_cell_below_not_run(
    context_notebook: Notebook, screenshots: Path
) -> None:
    nb = _idle(context_notebook)
    state = nb.execute(1)
    assert "new cell below, not run" in state["text"]
    nb.page.wait_for_function("() => document.querySelectorAll('.jp-Notebook .jp-Cell').length > 4")
    now = cells(nb)
    assert len(now) == len(CELLS) + 1
    new = now[2]
    assert new["source"] == CODE
    assert new["prompt"] == "[ ]:" and new["outputs"] == 0  # there, and never run
    assert [c["source"] for c in now[3:]] == CELLS[2:]  # the cells after it moved down
    shoot(nb, 1, 2, screenshots / "code-cell-below.png")

    # a fix after a real error: the corrected cell (here, echo's copy of it) lands below
    failed = nb.execute(3)
    assert "IndexError" in failed["text"]
    state = nb.execute(4)
    assert "Echo:" in state["text"] and "The cell (In[" in state["text"]
    nb.page.wait_for_function("() => document.querySelectorAll('.jp-Notebook .jp-Cell').length > 5")
    now = cells(nb)
    assert now[5]["source"] == CELLS[2]
    assert now[5]["prompt"] == "[ ]:" and now[5]["outputs"] == 0
    shoot(nb, 3, 5, screenshots / "fix-code-below.png")
