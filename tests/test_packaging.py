"""The package as a user gets it: build the wheel and the sdist, install the wheel into a fresh
virtual environment with no extras, and there load the extension and stream one answer.

Everything else runs from the source tree, where a module missing from the wheel, a file left
out of the sdist, or an import of something only the dev environment has would go unnoticed.
The server is the package's own, from the dev environment (``server`` fixture); the fresh
environment only gets what ``pip install ollama-magic`` would give it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ollama_magic.server import OllamaServer

from .helpers import bodies

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ollama_magic"

#: What the wheel must not bring along (an extra's or the dev tools'), by distribution name.
NOT_WITHOUT_EXTRAS = {
    "ipywidgets",
    "xllamacpp",
    "jinja2",
    "jupyterlab",
    "ipykernel",
    "pytest",
    "nbval",
    "pydantic",
    "ollama",
    "openai",
}
#: What it must: the package's own dependencies.
REQUIRED = {"ipython", "requests", "markdown-it-py", "mdit-py-plugins", "nh3"}


def _run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{command[:4]} failed:\n{done.stdout}\n{done.stderr}"
    return done


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without this checkout on the path, so only the installed copy imports."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The wheel and sdist, built as a release would be (``python -m build``, isolated)."""
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], timeout=240)
    yield out


def _modules() -> set[str]:
    """Every file of the package in the source tree, as paths relative to the checkout."""
    return {
        path.relative_to(ROOT).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".typed")
    }


def test_wheel_holds_every_module_and_nothing_else(dist: Path) -> None:
    (wheel,) = dist.glob("ollama_magic-*.whl")
    with zipfile.ZipFile(wheel) as zipped:
        names = set(zipped.namelist())
        metadata = zipped.read(next(n for n in names if n.endswith("METADATA"))).decode()
        scripts = zipped.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    files = {n for n in names if not n.startswith("ollama_magic-")}  # not the .dist-info
    assert "ollama_magic/py.typed" in files
    assert files == _modules()  # every module, and no tests, notebooks or docs
    info = {n.split("/", 1)[1] for n in names if ".dist-info/" in n}
    assert {"METADATA", "entry_points.txt", "licenses/LICENSE"} <= info
    assert "Provides-Extra: widgets" in metadata and "Provides-Extra: llama" in metadata
    assert "ollama-magic-server = ollama_magic.server.__main__:main" in scripts


def test_sdist_can_rebuild_the_package(dist: Path) -> None:
    (sdist,) = dist.glob("ollama_magic-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    for needed in ("pyproject.toml", "README.md", "LICENSE", *_modules()):
        assert needed in names, needed
    assert any(name.startswith("tests/") for name in names)  # a source release carries its tests


def test_wheel_installs_alone_loads_and_streams(
    dist: Path, server: OllamaServer, tmp_path: Path
) -> None:
    (wheel,) = dist.glob("ollama_magic-*.whl")
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], timeout=120)
    python = venv / "bin" / "python"
    _run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-input", str(wheel)],
        env=_clean_env(),
        timeout=300,
    )
    listed = _run([str(python), "-m", "pip", "list", "--format=freeze"], env=_clean_env())
    installed = {line.split("==")[0].lower().replace("_", "-") for line in listed.stdout.split()}
    assert "ollama-magic" in installed
    assert not REQUIRED - installed, REQUIRED - installed
    assert not installed & NOT_WITHOUT_EXTRAS, installed & NOT_WITHOUT_EXTRAS
    assert len(installed) <= 40, sorted(installed)  # 29 with pip itself, in 2026-12

    server.clear()
    code = (
        "%load_ext ollama_magic\n"
        "get_ipython().run_cell('%%ollama echo -o r\\nHello from a wheel')\n"
        "import ollama_magic\n"
        "print('FROM', ollama_magic.__file__)\n"
        "print('DONE', r.done_reason, repr(r.answer))\n"
    )
    done = _run(
        [str(venv / "bin" / "ipython"), "--no-banner", "--colors=NoColor", "--quick", "-c", code],
        env=_clean_env(OLLAMA_HOST=server.url, NO_PROXY="127.0.0.1"),
        cwd=tmp_path,  # not the checkout: its ollama_magic/ must not be importable
        timeout=120,
    )
    assert f"FROM {venv}/lib/" in done.stdout and "site-packages" in done.stdout
    assert "DONE stop 'Echo: <|user|>Hello from a wheel\\n<|assistant|>'" in done.stdout
    assert "done: stop]" in done.stdout  # the terminal's streamed text and its footer
    assert "Traceback" not in done.stdout + done.stderr
    (body,) = bodies(server)
    assert body["model"] == "echo" and body["stream"] is True
