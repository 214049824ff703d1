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


def pick(select: Any, name: str) -> None:
    """Pick model ``name`` in a model picker (its labels say more: "thinker · thinks")."""
    labels = select.locator("option").evaluate_all("os => os.map(o => o.label || o.text)")
    found = [x for x in labels if x.split("\xa0")[0].split(" ")[0] == name]
    assert len(found) == 1, f"{name} not in {labels}"
    (label,) = found
    select.select_option(label=label)


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

    pick(mm.locator("select").first, "thinker")
    mm.get_by_placeholder("5m; -1 = forever").fill("10m")
    button(mm, "Load").click()
    expect(mm.locator(".ollama-action-message")).to_contain_text("Loaded thinker in ")
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
        expect(mm).to_contain_text("Pulled haiku: 96.0 MB in", timeout=30_000)
    finally:
        server.pull_speed = 2_000_000_000
    expect(installed).to_contain_text("haiku:latest")
    wnb.page.mouse.move(1, 1)
    wnb.cell(5).screenshot(path=screenshots / "widgets-models.png")

    # delete asks first
    pick(mm.locator("select").first, "haiku")
    button(mm, "Delete…").click()
    expect(mm).to_contain_text("Delete haiku from")
    button(mm, "Delete").click()
    expect(mm.locator(".ollama-action-message")).to_have_text("Deleted haiku.")
    expect(installed).not_to_contain_text("haiku:latest")

    pick(mm.locator("select").first, "thinker")
    button(mm, "Unload").click()
    expect(mm.locator(".ollama-action-message")).to_have_text("Unloaded thinker (9.5 MB freed).")
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


# -- what a user sees: no stale or impossible states (issue 18), in both themes ----------------


@pytest.fixture(params=["light", "dark"])
def theme(request: pytest.FixtureRequest, wnb: Notebook) -> Any:
    """The widgets notebook in JupyterLab's light or dark theme (light again afterwards)."""
    set_theme(wnb, request.param)
    yield request.param
    if request.param != "light":
        set_theme(wnb, "light")


def set_theme(nb: Notebook, name: str) -> None:
    page = nb.page
    light = "true" if name == "light" else "false"
    if page.evaluate("document.body.dataset.jpThemeLight") == light:
        return
    page.locator(".lm-MenuBar-item", has_text="Settings").click()
    page.locator(".lm-Menu-item", has_text=re.compile(r"^\s*Theme")).hover()
    label = "JupyterLab Light" if name == "light" else "JupyterLab Dark"
    page.locator(".lm-Menu-item", has_text=re.compile(rf"^\s*{label}\s*$")).click()
    page.wait_for_function(f"document.body.dataset.jpThemeLight === '{light}'")
    page.wait_for_timeout(300)  # the theme's CSS applied
    page.mouse.move(1, 1)


def shot(nb: Notebook, index: int, folder: Path, name: str, theme: str) -> None:
    nb.page.mouse.move(1, 1)
    nb.cell(index).scroll_into_view_if_needed()
    nb.cell(index).screenshot(path=folder / f"issue18-{name}-{theme}.png")


def test_compare_never_shows_another_runs_results(
    wnb: Notebook, server: OllamaServer, screenshots: Path, theme: str
) -> None:
    """Point 3: a refused run clears the last one; a column waiting its turn says so; a Stop
    is not an error."""
    wnb.execute(9)
    cmp = app(wnb, 9, "ollama-compare")
    columns = cmp.locator(".ollama-compare-column")
    button(cmp, "Run").click()
    expect(cmp.locator("svg.ollama-chart")).to_be_visible(timeout=20_000)
    columns.nth(1).get_by_placeholder(re.compile("^flags")).fill("--chat")
    button(cmp, "Run").click()
    expect(cmp).to_contain_text("Column 2: --chat: a comparison sends single prompts")
    shot(wnb, 9, screenshots, "p3-compare-refused", theme)
    expect(cmp.locator("svg.ollama-chart")).to_have_count(0)
    expect(columns.nth(0).locator(".ollama-answer")).to_have_text("")
    expect(columns.nth(1).locator(".ollama-answer")).to_have_text("")

    columns.nth(1).get_by_placeholder(re.compile("^flags")).fill("")
    cmp.get_by_text("one at a time (fairer timings)").click()
    button(cmp, "Run").click()
    expect(columns.nth(0)).to_contain_text("Echo:", timeout=10_000)
    shot(wnb, 9, screenshots, "p3-compare-waiting", theme)
    expect(columns.nth(1).locator(".ollama-column-message")).to_have_text("waiting for column 1…")
    button(cmp, "Stop").click()
    expect(columns.nth(1)).to_contain_text("Not run: stopped before its turn.")
    expect(columns.nth(0).locator(".om-answer > sub")).to_contain_text("stopped")
    expect(cmp.locator(".ollama-app-message")).to_have_text("")  # the footer says it, once
    expect(button(cmp, "Run")).to_be_enabled()


def test_playground_speaks_of_its_own_controls(
    wnb: Notebook, server: OllamaServer, screenshots: Path, theme: str
) -> None:
    """Points 4 and 7: the pickers say what models can do, think follows the model, the footer
    names the app's controls, and options not sent look off."""
    wnb.execute(10)
    pg = app(wnb, 10, "ollama-playground")
    pg.get_by_text("Options", exact=True).click()
    expect(pg.get_by_text("temperature", exact=True)).to_be_visible()
    models, think = pg.locator("select").nth(0), pg.locator("select").nth(1)
    pick(models, "lorem")
    button(pg, "Generate").click()
    expect(pg.locator(".om-answer > sub")).to_contain_text("num_predict=12", timeout=10_000)
    shot(wnb, 10, screenshots, "p4-p7-playground-options", theme)
    expect(pg.locator(".om-answer > sub")).to_contain_text(
        "raise max tokens (num_predict) under Options"
    )
    expect(pg.locator(".om-answer > sub")).not_to_contain_text("--num-predict")
    expect(models.locator("option", has_text="thinker · thinks")).to_have_count(1)
    expect(models.locator("option", has_text="echo · sees images")).to_have_count(1)
    expect(think).to_be_disabled()  # lorem cannot think: only "model default"
    expect(think.locator("option")).to_have_count(1)
    pick(models, "thinker")
    expect(think).to_be_enabled()
    expect(think.locator("option", has_text="high")).to_have_count(1)
    # options not sent are off: greyed, and "model default" beside them
    top_p = pg.locator(".ollama-option").nth(1)
    expect(top_p.locator("input[type=checkbox]")).not_to_be_checked()
    expect(top_p.locator(".ollama-option-default")).to_have_text("model default")
    expect(top_p.locator(".widget-readout")).to_have_attribute("contenteditable", "false")
    num_predict = pg.locator(".ollama-option").nth(4)
    expect(num_predict.locator("input[type=number]")).to_be_enabled()
    expect(pg.locator(".ollama-option").nth(3).locator("input[type=number]")).to_be_disabled()
    expect(num_predict.locator(".ollama-option-default")).to_be_hidden()
    keep_alive = pg.get_by_placeholder(re.compile("^model default"))
    fits = keep_alive.evaluate(
        """el => {
            const ctx = document.createElement('canvas').getContext('2d');
            const st = getComputedStyle(el);
            ctx.font = st.font;
            const room = el.clientWidth - parseFloat(st.paddingLeft) - parseFloat(st.paddingRight);
            return ctx.measureText(el.placeholder).width <= room;
        }"""
    )
    assert fits, "the keep_alive hint is cut off"
    pick(models, "thinker")
    think.select_option("high")
    shot(wnb, 10, screenshots, "p4-playground-think", theme)


def test_apps_wait_for_a_server_that_does_not_answer(
    wnb: Notebook, server: OllamaServer, screenshots: Path, theme: str
) -> None:
    """Point 5: nothing to click but Retry, one message, and all is back once it answers."""
    wnb.execute(11)
    pg = app(wnb, 11, "ollama-playground")
    mm = app(wnb, 11, "ollama-models")
    expect(mm).to_contain_text("Cannot reach Ollama at http://127.0.0.1:9")
    wnb.page.wait_for_timeout(1500)  # the live refresh has failed too
    shot(wnb, 11, screenshots, "p5-server-down", theme)
    try:
        expect(button(pg, "Generate")).to_be_disabled()
        expect(button(pg, "Retry")).to_be_visible()
        assert mm.inner_text().count("Cannot reach Ollama") == 1
        expect(mm.get_by_text("Installed", exact=True)).to_be_hidden()
        expect(button(mm, "Load")).to_be_hidden()
        expect(button(mm, "Retry")).to_be_visible()

        wnb.execute(12)  # the server is back
        button(pg, "Retry").click()
        expect(button(pg, "Generate")).to_be_enabled()
        expect(button(pg, "Retry")).to_be_hidden()
        expect(pg.locator(".ollama-app-message")).to_have_text("")
        expect(mm.get_by_text("Installed", exact=True)).to_be_visible(timeout=5_000)  # live
        expect(button(mm, "Load")).to_be_enabled()
        expect(mm.locator(".ollama-app-message")).to_have_text("")
        shot(wnb, 11, screenshots, "p5-server-back", theme)
    finally:
        wnb.execute(13)


def test_model_manager_is_tidy_and_shares_its_models(
    wnb: Notebook, server: OllamaServer, screenshots: Path, theme: str
) -> None:
    """Point 6: tables as ``%ollama models`` shows them, news where the action is, the old pull
    bar gone, and an open Playground learns of a pulled model at once."""
    wnb.execute(14)
    mm = app(wnb, 14, "ollama-models")
    pg = app(wnb, 14, "ollama-playground")
    server.pull_speed = 150_000_000
    try:
        mm.get_by_placeholder("e.g. llama3.2 or qwen3:8b").fill("haiku")
        button(mm, "Pull").click()
        expect(mm).to_contain_text("Pulled haiku: 96.0 MB in", timeout=30_000)
        pick(mm.locator("select").first, "haiku")
        button(mm, "Load").click()
        expect(mm).to_contain_text("Loaded haiku in ", timeout=10_000)
        shot(wnb, 14, screenshots, "p6-models", theme)
        message = mm.locator(".ollama-action-message")
        expect(message).to_contain_text("Loaded haiku in ")  # beside Load, not at the bottom
        expect(mm.locator(".widget-hprogress, .progress").first).to_be_hidden()
        haiku = pg.locator("select").first.locator("option", has_text=re.compile(r"^haiku"))
        expect(haiku).to_have_count(1)
        # the tables are the notebook's: spaced, striped, one header per column
        cell = mm.locator("table").first.locator("th").first
        padding = cell.evaluate("el => parseFloat(getComputedStyle(el).paddingLeft)")
        assert padding >= 4, "table headers run together"
        rows = mm.locator("table").first.locator("tbody tr")
        colours = rows.evaluate_all(
            "rows => rows.slice(0, 2).map(r => getComputedStyle(r).backgroundColor)"
        )
        assert colours[0] != colours[1], "the rows are not striped"
    finally:
        button(mm, "Unload").click()
        expect(mm.locator(".ollama-action-message")).to_contain_text("Unloaded haiku")
        button(mm, "Delete…").click()
        button(mm, "Delete").click()
        expect(mm.locator(".ollama-action-message")).to_have_text("Deleted haiku.")
        haiku = pg.locator("select").first.locator("option", has_text=re.compile(r"^haiku"))
        expect(haiku).to_have_count(0)
        wnb.execute(15)
