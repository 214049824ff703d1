"""The tutorial notebooks' own rules: excluded cells are rare and explained, the README links
every tutorial in order, the sanitizer masks only what varies, and strict nbval really fails
when a saved output no longer matches (the nbval run itself is ``./dev test``'s second step)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbval.plugin import get_sanitize_patterns

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
sys.path.insert(0, str(NOTEBOOKS))
from _tutorial import notebooks  # noqa: E402  (the reading order the regeneration uses)

TUTORIALS = notebooks()
MARKERS = ("NBVAL_IGNORE_OUTPUT", "NBVAL_SKIP")
TAGS = ("nbval-ignore-output", "nbval-skip")  # raises-exception cells are still compared


def generating(source: str) -> bool:
    """A cell that asks a model for text: the magic, a raw generate/chat request, or an app's
    Generate / Run called from code."""
    return source.lstrip().startswith("%%ollama") or bool(
        re.search(r"/api/(generate|chat)|\.(generate|run)\(\)", source)
    )


def excluded(cell: nbformat.NotebookNode) -> bool:
    tags = cell.get("metadata", {}).get("tags", [])
    return any(t in tags for t in TAGS) or any(m in cell.source for m in MARKERS)


def test_there_are_tutorials() -> None:
    names = [p.name for p in TUTORIALS]
    assert len(names) >= 12, names
    for number in ("01", "02", "03", "04", "05", "06"):
        assert any(p.parent.name == "zh" and p.name.startswith(number) for p in TUTORIALS)


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: str(p.relative_to(NOTEBOOKS)))
def test_few_generating_cells_are_excluded_and_each_says_why(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and generating(c.source)]
    skipped = [c for c in cells if excluded(c)]
    assert cells, "a tutorial with no generating cell"
    assert len(skipped) * 10 <= len(cells), f"{len(skipped)} of {len(cells)} excluded"
    for cell in skipped:
        comments = [
            line
            for line in cell.source.splitlines()
            if line.strip().startswith("#") and not any(m in line for m in MARKERS)
        ]
        assert comments, f"excluded without a comment why:\n{cell.source}"


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: str(p.relative_to(NOTEBOOKS)))
def test_saved_with_outputs_and_runs_in_order(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    assert nb.metadata["kernelspec"]["name"] == "python3"


def test_readme_links_the_tutorials_in_order() -> None:
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\((notebooks/[^)]+\.ipynb)\)", readme)
    expected = [str(p.relative_to(ROOT)) for p in TUTORIALS]
    assert [link for link in links if link in expected] == expected


def sanitize(text: str) -> str:
    patterns = get_sanitize_patterns((NOTEBOOKS / "sanitize.cfg").read_text())
    for regex, replace in patterns:
        text = re.sub(regex, replace, text)
    return text


def test_the_sanitizer_masks_only_what_varies() -> None:
    footer = "135 tokens · 70.5 tokens/s · prompt 41 tokens · load 0.28 s · done: stop"
    assert (
        sanitize(footer)
        == "135 tokens · RATE tokens/s · prompt 41 tokens · load DURATION · done: stop"
    )
    raw = (
        '"created_at": "2026-01-25T13:46:31.2225119Z", "eval_duration": 76000000, "eval_count": 10'
    )
    assert (
        sanitize(raw) == '"created_at": "TIMESTAMP", "eval_duration": NANOSECONDS, "eval_count": 10'
    )
    assert sanitize("1 year ago · in 4 min · just now") == "WHEN · in WHEN · just now"
    assert sanitize("http://127.0.0.1:40123/api") == "http://127.0.0.1:PORT/api"
    answer = "The sky is blue: 3 reasons, 42 colours, done_reason length"
    assert sanitize(answer) == answer


@pytest.mark.real_model
def test_strict_nbval_fails_when_a_saved_answer_changes(tmp_path: Path) -> None:
    """Copy the quickstart with one saved answer altered: strict nbval must catch it."""
    pytest.importorskip("xllamacpp")
    for name in ("conftest.py", "_tutorial.py", "sanitize.cfg"):
        shutil.copy(NOTEBOOKS / name, tmp_path / name)
    source = NOTEBOOKS / "01-quickstart.ipynb"
    nb = nbformat.read(source, as_version=4)
    changed = False
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            markdown = output.get("data", {}).get("text/html")
            if not changed and markdown and "smollm2" in cell.source:
                output["data"]["text/html"] = markdown.replace(" ", "  ", 1)
                changed = True
    assert changed
    nbformat.write(nb, tmp_path / source.name)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval",
            str(tmp_path / source.name),
            "-q",
            "-p",
            "no:cacheprovider",
            "-c",
            str(tmp_path / "pytest.ini"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
        env={k: v for k, v in __import__("os").environ.items() if k != "OLLAMA_HOST"},
    )
    assert run.returncode == 1, run.stdout[-3000:]
    assert "1 failed" in run.stdout and "mismatch 'text/html'" in run.stdout, run.stdout[-3000:]
