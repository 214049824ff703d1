"""``%%ollama`` in JupyterLab, as a person sees it: streamed live, rendered, safe, interruptible.

The cells are those of ``CELLS`` in ``conftest.py`` (cell 0 loads the extension). Each test runs
its cells through the page (Ctrl+Enter in command mode, the toolbar's stop button), asserts on
the DOM, and saves a screenshot (to ``docs/screenshots/`` for the README when
``OLLAMA_MAGIC_SCREENSHOTS`` says so).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from ollama_magic.server import OllamaServer

from .conftest import Notebook

expect = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed: pip install playwright"
).expect

pytestmark = pytest.mark.browser

# The outputs of a cell, in order, with what a person sees of each (the prompt overlay, which
# is not an output, is left out).
OUTPUTS = """(i) => {
    const cell = document.querySelectorAll('.jp-Notebook .jp-Cell')[i];
    const area = cell.querySelector('.jp-OutputArea');
    return Array.from(area.children)
        .filter((c) => !c.classList.contains('jp-OutputArea-promptOverlay'))
        .map((c) => ({
            top: c.getBoundingClientRect().top - area.getBoundingClientRect().top,
            height: c.getBoundingClientRect().height,
            text: c.innerText,
            html: c.innerHTML,
        }));
}"""

# True once cell i is still running ([*]) and its outputs show every given string.
RUNNING_AND_SHOWS = """([i, wanted]) => {
    const cell = document.querySelectorAll('.jp-Notebook .jp-Cell')[i];
    const prompt = cell.querySelector('.jp-InputPrompt').textContent.trim();
    const area = cell.querySelector('.jp-OutputArea');
    const text = area ? area.innerText : '';
    return prompt === '[*]:' && wanted.every((w) => text.includes(w));
}"""

# The next sample of cell i while it streams: once its outputs' visible text is longer than
# `least`, that length, the number of outputs, and how many of them take room yet show no text
# (there should be none); {done: true} once the cell has finished; false until either.
NEXT_SAMPLE = """([i, least]) => {
    const cell = document.querySelectorAll('.jp-Notebook .jp-Cell')[i];
    const prompt = cell.querySelector('.jp-InputPrompt').textContent.trim();
    if (prompt !== '[*]:') return {done: true};
    const area = cell.querySelector('.jp-OutputArea');
    const length = area ? area.innerText.length : 0;
    if (length <= least) return false;
    const shown = Array.from(area.children)
        .filter((c) => !c.classList.contains('jp-OutputArea-promptOverlay'));
    const blank = shown.filter(
        (c) => c.getBoundingClientRect().height >= 1 && !c.innerText.trim()
            && !c.querySelector('hr')
    ).length;
    return {length, outputs: shown.length, blank};
}"""


def outputs(nb: Notebook, index: int) -> list[dict[str, Any]]:
    return nb.page.evaluate(OUTPUTS, index)


def assert_live_slots_vanish(nb: Notebook, index: int) -> list[dict[str, Any]]:
    """The finished cell shows one output; the emptied live slots before it take no room."""
    shown = outputs(nb, index)
    *slots, final = shown
    assert slots, "a live cell leaves its emptied slots before the final output"
    for slot in slots:
        assert slot["height"] < 1 and slot["text"].strip() == "", slot
    assert final["top"] < 1, "the emptied slots push the answer down"
    assert final["height"] > 20 and final["text"].strip()
    return shown


def test_reasoning_streams_open_then_collapses(nb: Notebook, screenshots: Path) -> None:
    before = nb.run(1)
    # while it streams, the reasoning is shown open under "Thinking…"
    nb.page.wait_for_function(
        RUNNING_AND_SHOWS, arg=[1, ["Thinking…", "The user asks about"]], timeout=10_000
    )
    nb.cell(1).screenshot(path=screenshots / "magic-reasoning-live.png")
    nb.wait_done(1, before)

    area = nb.output_area(1)
    details = area.locator("details")
    expect(details).to_have_count(1)
    expect(details.locator("summary")).to_have_text("Thinking (47 words)")
    assert details.evaluate("d => d.open") is False
    expect(details.get_by_text("The user asks about")).to_be_hidden()
    expect(area).not_to_contain_text("Thinking…")
    # the answer is rendered Markdown
    expect(area.locator(".om-h2")).to_have_text("Why is the sky blue")
    expect(area.locator("p:not(.om-h2) > strong")).to_have_text("Why is the sky blue")
    expect(area.locator("ul > li")).to_have_count(2)
    expect(area.locator("ul > li").first).to_contain_text("What: the core idea")
    # the footer is a rendered <sub>, not HTML source
    footer = area.locator("sub")
    expect(footer).to_contain_text("tokens/s")
    expect(footer).to_contain_text("done: stop")
    for source in ("<sub>", "<details>", "<div", "<br>", "&lt;"):
        expect(area).not_to_contain_text(source)
    assert_live_slots_vanish(nb, 1)
    nb.cell(1).screenshot(path=screenshots / "magic-reasoning.png")

    # a click on the summary opens the reasoning
    details.locator("summary").click()
    expect(details.get_by_text("The user asks about")).to_be_visible()
    nb.cell(1).screenshot(path=screenshots / "magic-reasoning-expanded.png")
    details.locator("summary").click()
    expect(details.get_by_text("The user asks about")).to_be_hidden()


def test_html_in_a_reply_shows_as_text(nb: Notebook, screenshots: Path) -> None:
    nb.execute(2)
    area = nb.output_area(2)
    for tag in ("img", "script", "b"):
        expect(area.locator(tag)).to_have_count(0)
    expect(area).to_contain_text('<img src=x onerror="window.__pwned=1">')
    expect(area).to_contain_text("<script>window.__pwned=2</script>")
    expect(area).to_contain_text("<b>bold?</b>")
    expect(area.locator("sub")).to_contain_text("done: stop")
    assert nb.page.evaluate("() => window.__pwned") is None  # undefined: nothing ran
    assert_live_slots_vanish(nb, 2)
    nb.cell(2).screenshot(path=screenshots / "magic-html-as-text.png")


def test_interrupt_keeps_the_partial_answer(
    nb: Notebook, server: OllamaServer, screenshots: Path
) -> None:
    server.clear()
    before = nb.run(3)
    nb.page.wait_for_function(RUNNING_AND_SHOWS, arg=[3, ["stream into the cell"]], timeout=10_000)
    nb.interrupt()
    nb.wait_done(3, before, timeout=10)  # it would stream for ~20 s if not interrupted
    nb.wait_idle(timeout=10)

    area = nb.output_area(3)
    expect(area).to_contain_text("This is a slow answer about Interrupt me")
    # the footer, with the tokens and rate so far; then one line ends the cell (so Run All
    # stops there), no traceback
    footer = area.locator(".om-answer > sub")
    expect(footer).to_have_text(
        re.compile(r"^\d+ tokens so far · [\d.]+ tokens/s · stopped: the answer above is partial$")
    )
    stderr = area.locator('[data-mime-type="application/vnd.jupyter.stderr"]')
    expect(stderr).to_have_count(1)
    expect(stderr).to_have_text("UsageError: Interrupted: the answer above is partial (kept in r).")
    expect(area).not_to_contain_text("Traceback")
    nb.cell(3).screenshot(path=screenshots / "magic-interrupted.png")

    state = nb.execute(4)
    assert state["text"].strip() == "interrupted"
    (request,) = [r for r in server.requests if r.path == "/api/generate"]
    assert request.json["model"] == "slow"
    assert request.finished.wait(10)
    assert request.disconnected_at is not None, "the server should have seen the client go"


def test_long_answer_updates_incrementally(nb: Notebook, screenshots: Path) -> None:
    before = nb.run(5)
    samples: list[dict[str, int]] = []
    least = 0
    while True:  # a sample each time the visible text has grown by 150 characters
        sample = nb.page.wait_for_function(
            NEXT_SAMPLE, arg=[5, least + 150], timeout=10_000
        ).json_value()
        if sample.get("done"):
            break
        samples.append(sample)
        least = sample["length"]
        if len(samples) == 4:
            nb.cell(5).screenshot(path=screenshots / "magic-streaming.png")
    print(f"\nwhile streaming: {samples}")
    assert len(samples) >= 4, "the text should grow in steps while the cell runs"
    assert all(sample["blank"] == 0 for sample in samples), samples
    assert max(sample["outputs"] for sample in samples) >= 2, "a long answer spans slots"
    nb.wait_done(5, before, timeout=60)

    shown = assert_live_slots_vanish(nb, 5)
    print(f"outputs at the end: {len(shown)} ({len(shown) - 1} emptied live slots)")
    final = nb.output_area(5).locator(".jp-OutputArea-child").last
    expect(final.locator("table").first).to_be_visible()
    expect(final.locator("table").first.locator("tbody tr")).to_have_count(3)
    expect(final.locator("pre").first).to_contain_text("def compare(a: int, b: int) -> int:")
    expect(final.locator(".om-h1").first).to_have_text("Lorem ipsum")
    expect(final.locator("sub")).to_contain_text("raise --num-predict")
    assert len(shown[-1]["text"]) >= samples[-1]["length"] * 0.8
    final.locator("table").first.scroll_into_view_if_needed()
    nb.page.locator(".jp-NotebookPanel").screenshot(path=screenshots / "magic-markdown.png")


def test_models_table_renders(nb: Notebook, screenshots: Path) -> None:
    nb.execute(6)
    table = nb.output_area(6).locator("table")
    expect(table).to_have_count(1)
    expect(table.locator("th").first).to_have_text("NAME")
    expect(table.locator("tbody tr").first.locator("td").first).to_have_text("echo:latest")
    assert table.locator("tbody tr").count() >= 8
    nb.cell(6).screenshot(path=screenshots / "commands-models.png")


def test_pull_shows_live_bars_then_one_line(
    nb: Notebook, server: OllamaServer, screenshots: Path
) -> None:
    server.pull_speed = 30_000_000  # about 3 s for haiku's 96 MB: time to see the bars move
    try:
        before = nb.run(7)
        nb.page.wait_for_function(RUNNING_AND_SHOWS, arg=[7, ["pulling manifest", "%"]])
        bars = nb.output_area(7).locator("progress")
        expect(bars.first).to_be_visible()
        first = float(bars.first.get_attribute("value") or 0)
        nb.cell(7).screenshot(path=screenshots / "commands-pull-live.png")
        nb.page.wait_for_function(
            """(i) => {
                const bar = document.querySelectorAll('.jp-Notebook .jp-Cell')[i]
                    .querySelector('progress');
                return !bar || bar.value > 0;
            }""",
            arg=7,
        )
        nb.wait_done(7, before, timeout=60)
    finally:
        server.pull_speed = 2_000_000_000
    expect(nb.output_area(7).locator("progress")).to_have_count(0)  # the live view is gone
    expect(nb.output_area(7)).to_contain_text("Pulled haiku: 96.0 MB in")
    assert first < 96_000_000
    shown = [o for o in outputs(nb, 7) if o["height"] >= 1]
    assert len(shown) == 1 and shown[0]["text"].startswith("Pulled haiku")
    nb.execute(8)
    expect(nb.output_area(8)).to_contain_text("Deleted haiku.")


def test_chat_remembers_and_history_renders(nb: Notebook, screenshots: Path) -> None:
    nb.execute(9)
    nb.execute(10)
    second = nb.output_area(10)
    expect(second.locator("details summary")).to_contain_text("Thinking")
    expect(second.locator("strong").first).to_have_text("And a wave")
    nb.execute(11)
    history = nb.output_area(11)
    expect(history.locator("b").first).to_contain_text("Conversation 'default': 2 turns")
    expect(history).to_contain_text("What is a tide?")
    expect(history).to_contain_text("And a wave?")
    nb.cell(11).scroll_into_view_if_needed()
    nb.page.locator(".jp-NotebookPanel").screenshot(path=screenshots / "commands-chat.png")


def test_tool_calls_show_folded_above_the_answer(nb: Notebook, screenshots: Path) -> None:
    nb.execute(12)
    expect(nb.output_area(12)).to_contain_text("Pulled agent")
    nb.execute(13)
    nb.execute(14)
    area = nb.output_area(14)
    expect(area).to_contain_text("Here is what the tools said")
    call = area.locator("details").filter(has_text="get_weather(city=")
    expect(call).to_have_count(1)
    expect(call.locator("summary")).to_have_text(
        re.compile(r"✓ get_weather\(city='Paris'\) → Sunny, 18 °C in Paris +\(\d\.\d\d s\)")
    )
    answer = area.locator("li", has_text="Sunny, 18 °C in Paris")
    expect(answer).to_be_visible()
    call_box, answer_box = call.bounding_box(), answer.bounding_box()
    assert call_box and answer_box and call_box["y"] + call_box["height"] <= answer_box["y"]
    # folded: the arguments show only once opened, and fold away again
    arguments = call.locator("pre").first
    expect(arguments).to_be_hidden()
    call.locator("summary").click()
    expect(arguments).to_be_visible()
    expect(arguments).to_contain_text('"city": "Paris"')
    nb.cell(14).screenshot(path=screenshots / "tools-call-open.png")
    call.locator("summary").click()
    expect(arguments).to_be_hidden()
    shown = [o for o in outputs(nb, 14) if o["height"] >= 1]
    assert len(shown) == 1  # the live call and answer outputs were emptied for the final one


def test_confirm_shows_buttons_and_a_click_runs_the_call(nb: Notebook, screenshots: Path) -> None:
    before = nb.run(15)
    area = nb.output_area(15)
    run = area.get_by_role("button", name="Run", exact=True)
    expect(run).to_be_visible()  # while the cell runs: it waits for the click
    expect(area).to_contain_text("Run get_weather(city='Oslo')?")
    expect(area.get_by_role("button", name="Skip")).to_be_visible()
    assert nb.state(15)["prompt"] == "[*]:"
    nb.cell(15).screenshot(path=screenshots / "tools-confirm.png")
    run.click()
    nb.wait_done(15, before)
    expect(area).to_contain_text("Run get_weather(city='Oslo')? → run")
    expect(area.locator("li", has_text="Sunny, 18 °C in Oslo")).to_be_visible()
    expect(area.get_by_role("button")).to_have_count(0)  # the buttons gave way to the decision
    nb.execute(16)
    expect(nb.output_area(16)).to_contain_text("Deleted agent.")
