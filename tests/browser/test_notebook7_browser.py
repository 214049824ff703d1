"""``--code`` in Jupyter Notebook 7: the answer's code block arrives as a new cell below, not run.

Notebook 7 is built from JupyterLab's own notebook components, so it should honour the kernel's
``set_next_input`` payload as Lab does (``test_code_cell_browser.py``); this checks that it
does, in ``jupyter notebook`` itself, started here with its own folder and pointed at the same
local server. The ``echo`` model answers with the prompt it was given, so a prompt holding a
fenced block is a model answering with code.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ollama_magic.server import OllamaServer

from .conftest import Lab, Notebook, _write_notebook, serve
from .test_code_cell_browser import CELL_STATES, CODE, cells

pytest.importorskip(
    "notebook", minversion="7", reason="Notebook 7 is not installed: pip install notebook"
)

pytestmark = pytest.mark.browser

CELLS = [
    "%load_ext ollama_magic",
    f"%%ollama echo --code --literal\nHere you are:\n\n```python\n{CODE}\n```",
    "print('the cell after')",
]


@pytest.fixture(scope="module")
def notebook7(server: OllamaServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """``jupyter notebook`` (7) serving a folder holding ``code.ipynb``."""
    home = tmp_path_factory.mktemp("notebook7")
    root = home / "root"
    root.mkdir()
    _write_notebook(root / "code.ipynb", CELLS)
    with serve("notebook", server, home, root, []) as running:
        yield running


@pytest.fixture(scope="module")
def page(chromium: Any, notebook7: Lab) -> Iterator[Notebook]:
    """``code.ipynb`` open in Notebook 7's own notebook page, its kernel idle."""
    page = chromium.new_page(viewport={"width": 1200, "height": 1200})
    page.set_default_timeout(30_000)
    page.goto(notebook7.url("/notebooks/code.ipynb"))
    nb = Notebook(page, notebook7)
    nb.wait_idle(timeout=60)  # Notebook 7's page has Lab's toolbar, kernel indicator included
    nb.cell(len(CELLS) - 1).wait_for()
    try:
        yield nb
    finally:
        page.close()


def test_notebook7_puts_the_code_in_a_new_cell_below_not_run(page: Notebook) -> None:
    nb = page
    assert nb.execute(0)["text"].strip() == ""  # %load_ext printed nothing
    state = nb.execute(1)
    assert "new cell below, not run" in state["text"], state
    nb.page.wait_for_function(f"() => ({CELL_STATES})().length > {len(CELLS)}", timeout=10_000)
    now = cells(nb)
    assert len(now) == len(CELLS) + 1
    new = now[2]
    assert new["source"] == CODE
    assert new["prompt"] == "[ ]:" and new["outputs"] == 0  # there, and never run
    assert now[3]["source"] == CELLS[2] and now[3]["prompt"] == "[ ]:"  # moved down, not run
