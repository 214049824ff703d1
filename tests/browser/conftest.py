"""JupyterLab in headless Chromium, for tests of what a person sees in a notebook.

One session: the package's Ollama-compatible server runs in this process (the ``server`` fixture
of ``tests/conftest.py``), JupyterLab runs as a subprocess with ``OLLAMA_HOST`` pointing at it
(its kernels inherit that), and one Chromium page holds ``test.ipynb`` open. Everything is kept
offline and apart from the user's own Jupyter settings. It all skips, with the reason, when
Playwright or ``/usr/bin/chromium`` is missing (Playwright cannot download its own browser here).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ollama_magic.server import OllamaServer
from tests.hostile import CORPUS

CHROMIUM = Path("/usr/bin/chromium")
# Screenshots go to a scratch folder; `OLLAMA_MAGIC_SCREENSHOTS=docs/screenshots ./dev test
# tests/browser` refreshes the README's pictures.
SCREENSHOTS = Path(
    os.environ.get("OLLAMA_MAGIC_SCREENSHOTS")
    or Path(__file__).resolve().parents[2] / "benchmarks" / "out" / "screenshots"
)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# The notebook the tests drive, cell by cell (tests/browser/test_lab.py names them by index).
CELLS = [
    "%load_ext ollama_magic",
    "%%ollama reasoner -O scripted_delay=0.03\nWhy is the sky blue?",
    '%%ollama echo --raw\n<img src=x onerror="window.__pwned=1"> '
    "<script>window.__pwned=2</script> <b>bold?</b>",
    "%%ollama slow --num-predict 400 -o r\nInterrupt me.",
    "print(r.done_reason)",
    "%%ollama lorem --num-predict 600 -O scripted_delay=0.01\nWrite something long.",
    "%ollama models",
    "%ollama pull haiku",
    "%ollama rm haiku",
    "%%ollama --chat thinker -s 'Answer briefly.'\nWhat is a tide?",
    "%%ollama --chat\nAnd a wave?",
    "%ollama history",
    # 12-16: tool calling (tests/browser/test_lab.py), with agent removed again afterwards
    "%ollama pull agent",
    "def get_weather(city: str) -> str:\n    return f'Sunny, 18 °C in {city}'",
    "%%ollama agent --tools get_weather -O scripted_delay=0.02\nUse get_weather with city=Paris.",
    "%%ollama agent --tools get_weather --confirm\nUse get_weather with city=Oslo.",
    "%ollama rm agent\n%ollama reset",
]

# The notebook of the widget apps (tests/browser/test_widgets_browser.py), in its own kernel.
WIDGET_CELLS = [
    "%load_ext ollama_magic",
    "%config OllamaMagics.options = {'scripted_delay': 0.02}\n%ollama ui -m reasoner -o pg",
    "print(pg.result.done_reason, pg.result is not None and len(pg.result.thinking.split()))",
    "from ollama_magic.widgets import Playground\n"
    "pg2 = Playground('slow', num_predict=400, prompt='Interrupt me.')\npg2",
    "print(pg2.result.done_reason)",
    "%ollama ui models -o mm",
    "mm.close()",
    "%ollama ui compare -m 'reasoner -O scripted_delay=0.004' "
    "-m 'thinker --think low -O scripted_delay=0.008' -o cmp",
    "print([r.done_reason for r in cmp.results])",
    # 9-16: what a user sees (issue 18), each app in a state that once looked wrong
    "from ollama_magic.widgets import Compare\n"
    "cmp3 = Compare(['echo -O scripted_delay=0.05', 'lorem --num-predict 20'],\n"
    "               prompt='Why is the sky blue?')\ncmp3",
    "from ollama_magic.widgets import Playground\n"
    "pg3 = Playground('echo', prompt='Tell me about tides.', num_predict=12)\npg3",
    "from ollama_magic.widgets import ModelManager, Playground\n"
    "down = 'http://127.0.0.1:9'  # nothing listens there\n"
    "pg4 = Playground('echo', down, prompt='Hi')\nmm4 = ModelManager(down)\ndisplay(pg4, mm4)",
    "pg4.connection.host = mm4.connection.host = None  # the server is back (OLLAMA_HOST)",
    "mm4.close()",
    "from ollama_magic.widgets import ModelManager, Playground\n"
    "mm5 = ModelManager()\npg5 = Playground()\ndisplay(mm5, pg5)",
    "mm5.close()",
]

# The notebook of hostile answers (tests/browser/test_hostile_browser.py): every answer of
# tests/hostile.py through each view of an answer, then what answers should look like. The
# `echo` model answers "Echo: " and the prompt, so each prompt starts a new block after it.
_VIEW_ALL = (
    "import json\nfrom ollama_magic.widgets import Compare, Playground\n"
    "CORPUS = json.loads({corpus!r})\nPROMPTS = ['Answer:\\n\\n' + t for t in CORPUS.values()]"
)
HOSTILE_CELLS = [
    "%load_ext ollama_magic",
    _VIEW_ALL.format(corpus=json.dumps(CORPUS)),
    "for p in PROMPTS:\n"
    "    get_ipython().run_cell_magic('ollama', 'echo --raw --literal -O scripted_delay=0.002', p)",
    "for p in PROMPTS:\n"
    "    get_ipython().run_cell_magic('ollama', '--chat echo --conversation bad --literal', p)",
    "%ollama history bad",
    "%config OllamaMagics.options = {'scripted_delay': 0.002}\n"
    "pg = Playground('echo')\ndisplay(pg)\nfor p in PROMPTS:\n"
    "    pg.set(prompt=p)\n    pg.generate()\n    pg.wait()",
    "cmp = Compare(['echo', 'echo -O seed=1'])\ndisplay(cmp)\nfor p in PROMPTS:\n"
    "    cmp.prompt.value = p\n    cmp.run()\n    cmp.wait()",
    "from tests.hostile import BENIGN\n"
    "get_ipython().run_cell_magic('ollama', 'echo --literal', 'Answer:\\n\\n' + BENIGN)",
]

# User settings for this Lab only: no news or update checks, and every cell rendered (no
# windowing), so what is measured is what a person scrolling the notebook would see.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    # Every output rendered: past 50 Lab shows "Show more outputs" instead (the hostile cells
    # stream dozens of answers into one cell, and each must be seen).
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
        "windowingMode": "none",
        "maxNumberOutputs": 100000,
    },
}


def _requirements() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed: pip install playwright"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing: apt-get install chromium"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _requirements()
    if reason is None:
        return
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.skip(reason=reason))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Lab:
    """A running JupyterLab (or Notebook 7): its URL, token and root directory."""

    def __init__(
        self, process: subprocess.Popen[bytes], port: int, token: str, root: Path, log: Path
    ) -> None:
        self.process = process
        self.base = f"http://127.0.0.1:{port}"
        self.token = token
        self.root = root
        self.log = log

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base}{path}{sep}token={self.token}"

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(self.url(path), timeout=5) as response:
            return json.loads(response.read())

    def shutdown_kernels(self) -> None:
        """Stop the kernels through the REST API, so none outlives the session."""
        try:
            for kernel in self.api("/api/kernels"):
                request = urllib.request.Request(
                    self.url(f"/api/kernels/{kernel['id']}"), method="DELETE"
                )
                urllib.request.urlopen(request, timeout=10).close()
        except (OSError, ValueError):
            pass  # Lab is gone already; terminating it below is all that is left

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _write_notebook(path: Path, cells: list[str]) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nbformat.write(nb, path)


@contextmanager
def serve(
    app: str, server: OllamaServer, home: Path, root: Path, options: list[str]
) -> Iterator[Lab]:
    """``jupyter <app>`` (``lab`` or ``notebook``) serving ``root``, apart from the user's own
    Jupyter settings (``LAB_SETTINGS`` instead) and with ``OLLAMA_HOST`` pointing at ``server``;
    its kernels are shut down and the server stopped on leaving."""
    settings = home / "settings"
    for name, values in LAB_SETTINGS.items():
        target = settings / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values))
    env = dict(os.environ)
    env.update(
        OLLAMA_HOST=server.url,
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
        IPYTHONDIR=str(home / "ipython"),
        JUPYTER_PLATFORM_DIRS="1",
        NO_PROXY="127.0.0.1,localhost",
        # The kernels import the hostile corpus from this repository's tests package.
        PYTHONPATH=os.pathsep.join(
            [str(Path(__file__).resolve().parents[2]), *filter(None, [env.get("PYTHONPATH")])]
        ),
    )
    port, token = _free_port(), secrets.token_hex(16)
    log = home / f"{app}.log"
    command = [
        sys.executable, "-m", "jupyter", app,
        "--no-browser",
        "--allow-root",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        *options,
    ]  # fmt: skip
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, cwd=root, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    running = Lab(process, port, token, root, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"jupyter {app} exited ({process.returncode}):\n" + running.log_tail()
                )
            try:
                running.api("/api/status")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"jupyter {app} did not answer in 60 s:\n" + running.log_tail()
                    ) from None
                time.sleep(0.2)
        yield running
    finally:
        running.shutdown_kernels()
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        shutil.rmtree(home / "runtime", ignore_errors=True)


@pytest.fixture(scope="session")
def lab(server: OllamaServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    reason = _requirements()
    if reason:
        pytest.skip(reason)
    home = tmp_path_factory.mktemp("lab")
    root = home / "root"
    root.mkdir()
    _write_notebook(root / "test.ipynb", CELLS)
    _write_notebook(root / "widgets.ipynb", WIDGET_CELLS)
    _write_notebook(root / "hostile.ipynb", HOSTILE_CELLS)
    options = [
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]
    with serve("lab", server, home, root, options) as running:
        yield running


# The toolbar's kernel indicator; its data-status is "idle", "busy", "starting", ...
KERNEL_IDLE = '.jp-NotebookPanel-toolbar .jp-Notebook-ExecutionIndicator[data-status="idle"]'
INTERRUPT_BUTTON = '.jp-NotebookPanel-toolbar [data-command="notebook:interrupt-kernel"]'

_CELL_STATE = """(i) => {
    const cell = document.querySelectorAll('.jp-Notebook .jp-Cell')[i];
    const prompt = cell.querySelector('.jp-InputPrompt').textContent.trim();
    const area = cell.querySelector('.jp-OutputArea');
    return {prompt, text: area ? area.innerText : ''};
}"""


class Notebook:
    """``test.ipynb`` open in JupyterLab: run its cells and read what they show."""

    def __init__(self, page: Any, lab: Lab) -> None:
        self.page = page
        self.lab = lab

    def cell(self, index: int) -> Any:
        return self.page.locator(".jp-Notebook .jp-Cell").nth(index)

    def output_area(self, index: int) -> Any:
        return self.cell(index).locator(".jp-OutputArea")

    def state(self, index: int) -> dict[str, str]:
        """The cell's prompt (``[ ]:``, ``[*]:``, ``[3]:``) and its outputs' visible text."""
        return self.page.evaluate(_CELL_STATE, index)

    def run(self, index: int) -> str:
        """Select the cell in command mode and press Ctrl+Enter; return the prompt it had.

        Lab marks a cell ``[*]`` as soon as it is queued. Right after the page loads, a key
        press is sometimes lost (the cell stays ``[ ]``); then it is pressed again.
        """
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        before = self.state(index)["prompt"]
        for _ in range(3):
            self.cell(index).locator(".jp-InputPrompt").click()
            self.page.keyboard.press("Control+Enter")
            self.page.mouse.move(1, 1)  # no hover effects in screenshots
            try:
                self.page.wait_for_function(
                    f"([i, before]) => ({_CELL_STATE})(i).prompt !== before",
                    arg=[index, before],
                    timeout=3_000,
                )
                return before
            except PlaywrightTimeout:
                continue
        raise AssertionError(f"cell {index} did not start: its prompt stayed {before}")

    def wait_done(self, index: int, before: str, timeout: float = 30) -> None:
        """Wait until the cell shows a new execution count (it ran and finished)."""
        self.page.wait_for_function(
            f"""([i, before]) => {{
                const prompt = ({_CELL_STATE})(i).prompt;
                return /^\\[\\d+\\]:$/.test(prompt) && prompt !== before;
            }}""",
            arg=[index, before],
            timeout=timeout * 1000,
        )

    def execute(self, index: int, timeout: float = 30) -> dict[str, str]:
        before = self.run(index)
        self.wait_done(index, before, timeout)
        return self.state(index)

    def wait_idle(self, timeout: float = 30) -> None:
        self.page.locator(KERNEL_IDLE).wait_for(state="attached", timeout=timeout * 1000)

    def interrupt(self) -> None:
        """Click the toolbar's stop button (Interrupt the kernel)."""
        self.page.locator(INTERRUPT_BUTTON).click()


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """Headless Chromium for the session, whichever Jupyter front end it is pointed at."""
    from playwright.sync_api import sync_playwright

    reason = _requirements()
    if reason:
        pytest.skip(reason)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def browser(lab: Lab, chromium: Any) -> Any:
    """Chromium with JupyterLab running; each notebook gets a page of its own."""
    return chromium


def _open(
    browser: Any, lab: Lab, name: str, cells: list[str], *, workspace: str = "", height: int = 900
) -> Notebook:
    """A page with notebook ``name`` open, its kernel idle and the extension loaded (cell 0).

    A second page needs a ``workspace`` of its own: Lab would otherwise restore the first
    page's layout, tabs included."""
    page = browser.new_page(viewport={"width": 1200, "height": height})
    page.set_default_timeout(30_000)
    where = f"/lab/workspaces/{workspace}" if workspace else "/lab"
    page.goto(lab.url(f"{where}/tree/{name}"))
    nb = Notebook(page, lab)
    nb.wait_idle(timeout=60)
    nb.cell(len(cells) - 1).wait_for()
    page.keyboard.press("Control+b")  # hide the file browser: more room for outputs
    page.locator("#jp-left-stack").wait_for(state="hidden")
    state = nb.execute(0)
    assert state["text"].strip() == "", state  # %load_ext printed nothing
    return nb


def _idle(notebook: Notebook) -> Notebook:
    """The notebook with its kernel idle (a failed test may have left a cell running)."""
    if not notebook.page.locator(KERNEL_IDLE).count():
        notebook.interrupt()
    notebook.wait_idle()
    return notebook


@pytest.fixture(scope="session")
def notebook(browser: Any, lab: Lab) -> Iterator[Notebook]:
    """One Chromium page with ``test.ipynb`` open, its kernel idle and the extension loaded."""
    nb = _open(browser, lab, "test.ipynb", CELLS)
    try:
        yield nb
    finally:
        nb.page.close()


@pytest.fixture()
def nb(notebook: Notebook) -> Notebook:
    """The session's notebook, its kernel idle (a failed test may have left a cell running)."""
    return _idle(notebook)


@pytest.fixture(scope="session")
def widgets_notebook(browser: Any, lab: Lab) -> Iterator[Notebook]:
    """``widgets.ipynb`` (the cells of ``WIDGET_CELLS``) in a page and a kernel of its own."""
    nb = _open(browser, lab, "widgets.ipynb", WIDGET_CELLS, workspace="widgets", height=1300)
    try:
        yield nb
    finally:
        nb.page.close()


@pytest.fixture()
def wnb(widgets_notebook: Notebook) -> Notebook:
    return _idle(widgets_notebook)


@pytest.fixture(scope="session")
def hostile_notebook(browser: Any, lab: Lab) -> Iterator[Notebook]:
    """``hostile.ipynb`` (``HOSTILE_CELLS``) in a page and a kernel of its own."""
    nb = _open(browser, lab, "hostile.ipynb", HOSTILE_CELLS, workspace="hostile")
    try:
        yield nb
    finally:
        nb.page.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
