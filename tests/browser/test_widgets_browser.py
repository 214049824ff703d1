"""The widget apps in JupyterLab, as a person uses them: type, click, watch, stop.

The cells are those of ``WIDGET_CELLS`` in ``conftest.py`` (cell 0 loads the extension), in a
notebook and kernel of their own. Each test opens an app with a cell, then works it only through
the page (typing into its fields, clicking its buttons) while the kernel stays idle, and saves a
screenshot of the app (``widgets-*.png``; to ``docs/screenshots/`` for the README when
``OLLAMA_MAGIC_SCREENSHOTS`` says so).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from ollama_magic.server import OllamaServer

from .conftest import KERNEL_IDLE, Notebook

expect = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed: pip install playwright"
).expect

pytestmark = pytest.mark.browser


def app(nb: Notebook, index: int, css: str) -> Any:
    """The app that cell ``index`` shows (its root widget carries class ``css``)."""
    root = nb.output_area(index).locator(f".{css}")
    expect(root).to_be_visible()
    return root


def button(root: Any, name: str) -> Any:
    """A widget button by its exact label (its accessible name also holds the icon's glyph)."""
    return root.locator("button.widget-button", has_text=re.compile(rf"^\s*{re.escape(name)}\s*$"))


def test_playground_generates_with_the_reasoning_apart(
    wnb: Notebook, server: OllamaServer, screenshots: Path
) -> None:
    wnb.execute(1)
    pg = app(wnb, 1, "ollama-playground")
    expect(pg.locator("select").first).to_have_value("reasoner")
    pg.get_by_placeholder("Prompt", exact=True).fill("Why is the sky blue?")
    pg.get_by_text("Options", exact=True).click()  # open, for the screenshot
    expect(pg.get_by_text("temperature", exact=True)).to_be_visible()
    server.clear()
    button(pg, "Generate").click()
    # streaming: the reasoning shows open under "Thinking…", the kernel is idle all along
    expect(pg.get_by_text("Thinking…")).to_be_visible()
    assert wnb.page.locator(KERNEL_IDLE).count() == 1, "generation must not block the kernel"
    expect(button(pg, "Stop")).to_be_enabled()

    details = pg.locator("details")
    expect(details.locator("summary")).to_have_text("Thinking (47 words)", timeout=15_000)
    expect(button(pg, "Generate")).to_be_enabled()
    expect(button(pg, "Stop")).to_be_disabled()
    assert details.evaluate("d => d.open") is False
    expect(pg).not_to_contain_text("Thinking…")
    expect(pg.locator(".om-h2")).to_have_text("Why is the sky blue")
    expect(pg.locator(".jp-RenderedHTMLCommon ul > li")).to_have_count(2)
    footer = pg.locator("sub")
    expect(footer).to_contain_text("tokens/s")
    expect(footer).to_contain_text("done: stop")
    for source in ("<sub>", "<details>", "<br>"):
        expect(pg).not_to_contain_text(source)
    details.locator("summary").click()
    expect(details.get_by_text("The user asks about")).to_be_visible()
    wnb.page.mouse.move(1, 1)
    wnb.cell(1).screenshot(path=screenshots / "widgets-playground.png")

    (request,) = [r for r in server.requests if r.path == "/api/generate"]
    assert request.json == {
        "model": "reasoner",
        "prompt": "Why is the sky blue?",
        "options": {"scripted_delay": 0.02},  # from %config OllamaMagics.options
        "stream": True,
    }
    state = wnb.execute(2)
    assert state["text"].strip() == "stop 47"  # pg.result is the magic's GenerationResult


def test_playground_stop_keeps_the_partial_answer(
    wnb: Notebook, server: OllamaServer, screenshots: Path
) -> None:
    wnb.execute(3)
    pg = app(wnb, 3, "ollama-playground")
    server.clear()
    button(pg, "Generate").click()
    expect(pg).to_contain_text("stream into", timeout=10_000)
    button(pg, "Stop").click()
    expect(pg.locator(".om-answer > sub")).to_contain_text(
        "tokens so far · ", timeout=10_000
    )
    expect(pg.locator(".om-answer > sub")).to_contain_text("stopped: the answer above is partial")
    expect(pg.locator(".ollama-app-message")).to_have_text("")  # said once, in the footer
    expect(button(pg, "Generate")).to_be_enabled()
    partial = pg.locator(".ollama-answer").inner_text()
    assert partial.startswith("This is a slow answer about Interrupt me")
    wnb.page.wait_for_timeout(500)  # nothing more arrives: the stream is closed
    assert pg.locator(".ollama-answer").inner_text() == partial
    wnb.cell(3).screenshot(path=screenshots / "widgets-playground-stopped.png")

    state = wnb.execute(4)
    assert state["text"].strip() == "interrupted"
    (request,) = [r for r in server.requests if r.path == "/api/generate"]
    assert request.json["model"] == "slow" and request.json["options"]["num_predict"] == 400
    assert request.finished.wait(10)
    assert request.disconnected_at is not None, "the server should have seen the client go"


def test_model_manager_loads_pulls_and_deletes(
    wnb: Notebook, server: OllamaServer, screenshots: Path
) -> None:
    wnb.execute(5)
    mm = app(wnb, 5, "ollama-models")
    installed = mm.locator("table").first
    expect(installed.locator("tbody tr").first.locator("td").first).to_have_text("echo:latest")
    expect(mm).to_contain_text("completion, insert, vision")

    mm.locator("select").first.select_option("thinker")
    mm.get_by_placeholder("5m; -1 = forever").fill("10m")
    button(mm, "Load").click()
    expect(mm.locator(".ollama-app-message")).to_contain_text("Loaded thinker in ")
    loaded = mm.locator("table").nth(1)
    expect(loaded).to_contain_text("thinker:latest")
    expect(loaded).to_contain_text("in 10 min")

    server.pull_speed = 30_000_000  # about 3 s for haiku's 96 MB: time to see the bar move
    try:
        mm.get_by_placeholder("e.g. llama3.2 or qwen3:8b").fill("haiku")
        button(mm, "Pull").click()
        bar = mm.locator(".widget-hprogress, .progress").first
        expect(bar).to_be_visible()
        expect(mm).to_contain_text("pulling ", timeout=10_000)
        wnb.cell(5).screenshot(path=screenshots / "widgets-models-pulling.png")
        expect(mm.locator(".ollama-app-message")).to_contain_text(
            "Pulled haiku: 96.0 MB in", timeout=30_000
        )
    finally:
        server.pull_speed = 2_000_000_000
    expect(installed).to_contain_text("haiku:latest")
    wnb.page.mouse.move(1, 1)
    wnb.cell(5).screenshot(path=screenshots / "widgets-models.png")

    # delete asks first
    mm.locator("select").first.select_option("haiku")
    button(mm, "Delete…").click()
    expect(mm).to_contain_text("Delete haiku from")
    button(mm, "Delete").click()
    expect(mm.locator(".ollama-app-message")).to_have_text("Deleted haiku.")
    expect(installed).not_to_contain_text("haiku:latest")

    mm.locator("select").first.select_option("thinker")
    button(mm, "Unload").click()
    expect(mm.locator(".ollama-app-message")).to_have_text("Unloaded thinker (9.5 MB freed).")
    expect(loaded).not_to_contain_text("thinker:latest")
    wnb.execute(6)  # mm.close(): the live refresh stops


def test_compare_streams_side_by_side_then_charts(
    wnb: Notebook, server: OllamaServer, screenshots: Path
) -> None:
    wnb.execute(7)
    cmp = app(wnb, 7, "ollama-compare")
    columns = cmp.locator(".ollama-compare-column")
    expect(columns).to_have_count(2)
    cmp.get_by_placeholder("One prompt for every column").fill("Why is the sky blue?")
    server.clear()
    button(cmp, "Run").click()
    chart = cmp.locator("svg.ollama-chart")
    expect(chart).to_be_visible(timeout=20_000)
    expect(chart.locator("rect")).to_have_count(6)
    expect(chart).to_contain_text("Speed (tokens/s, higher is faster)")
    expect(chart).to_contain_text("thinker --think low")
    expect(columns.nth(0).locator(".om-h2")).to_have_text("Why is the sky blue")
    expect(columns.nth(0).locator("details summary")).to_have_text("Thinking (47 words)")
    expect(columns.nth(1).locator("details summary")).to_contain_text("Thinking (")
    expect(columns.nth(1)).to_contain_text("in brief")
    for index in (0, 1):
        expect(columns.nth(index).locator("sub")).to_contain_text("done: stop")
    wnb.page.mouse.move(1, 1)
    cmp.scroll_into_view_if_needed()
    wnb.cell(7).screenshot(path=screenshots / "widgets-compare.png")
    state = wnb.execute(8)
    assert state["text"].strip() == "['stop', 'stop']"
    models = sorted(r.json["model"] for r in server.requests if r.path == "/api/generate")
    assert models == ["reasoner", "thinker"]
