"""Hostile answers in a real JupyterLab: nothing from model text runs, loads or links out.

Each answer of ``tests/hostile.py`` goes through every view of an answer (``%%ollama`` while it
streams and when done, ``--chat``, ``%ollama history``, the Playground and Compare). A
MutationObserver, installed before any of it runs, checks every element that appears in an
output, live pieces included, so a bad element that shows for a moment is caught too; the
page's requests are recorded, so a fetch of a URL the model named is caught even when it fails.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.hostile import PROBE

from .conftest import Notebook

expect = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed: pip install playwright"
).expect

pytestmark = pytest.mark.browser

# Records, in window.__violations, every element added to an output (or changed in one) that
# model text must never produce. MathJax's own output (mjx-*) is the one thing allowed to add
# elements of its own choosing, and only inside the math we marked for it.
OBSERVE = """() => {
    window.__violations = [];
    window.__seen = 0;
    const banned = new Set(['IMG', 'SVG', 'SCRIPT', 'IFRAME', 'OBJECT', 'EMBED', 'LINK', 'META',
        'FORM', 'INPUT', 'VIDEO', 'AUDIO', 'SOURCE', 'BASE', 'FRAME', 'IMAGE', 'USE']);
    const safeHref = /^(https?:|mailto:)/i;
    const check = (el) => {
        if (!(el instanceof Element)) return;
        const answer = el.closest('.mathjax_ignore');
        if (!answer) return;  // not model text: Lab's and the widgets' own elements
        window.__seen += 1;
        const where = el.tagName + ' in ' + (answer.textContent || '').slice(0, 60);
        const inMath = el.closest('mjx-container');
        if (banned.has(el.tagName.toUpperCase()) && !inMath) window.__violations.push(where);
        if (el.tagName === 'STYLE' && !el.textContent.startsWith('.om-')) {
            window.__violations.push('foreign style: ' + where);
        }
        for (const attr of el.attributes) {
            const name = attr.name.toLowerCase();
            if (name.startsWith('on')) window.__violations.push(name + ' on ' + where);
            if (['src', 'srcset', 'data', 'action', 'formaction', 'background', 'poster']
                    .includes(name)) window.__violations.push(name + ' on ' + where);
            if (name === 'href' && !safeHref.test(attr.value.trim()) && !inMath) {
                window.__violations.push('href=' + attr.value + ' on ' + where);
            }
            if (name === 'style' && /url\\(|expression/i.test(attr.value)) {
                window.__violations.push('style url on ' + where);
            }
        }
    };
    const checkTree = (node) => {
        if (!(node instanceof Element)) return;
        check(node);
        node.querySelectorAll('*').forEach(check);
    };
    new MutationObserver((records) => {
        for (const r of records) {
            if (r.type === 'attributes') check(r.target);
            r.addedNodes.forEach(checkTree);
        }
    }).observe(document.body, {childList: true, subtree: true, attributes: true});
}"""


@pytest.fixture(scope="module")
def hostile(hostile_notebook: Notebook) -> Any:
    """The hostile notebook with the observer and a request log installed; yields the log."""
    nb = hostile_notebook
    requests: list[str] = []
    nb.page.on("request", lambda request: requests.append(request.url))
    nb.page.evaluate(OBSERVE)
    state = nb.execute(1)
    assert "Error" not in state["text"], state
    return requests


# Each view, and how many answers it still shows at the end (an app shows its last one).
VIEWS = [(2, "%%ollama", 30), (3, "--chat", 30), (4, "history", 30), (5, "Playground", 1),
         (6, "Compare", 2)]  # fmt: skip


@pytest.mark.parametrize(("cell", "view", "answers"), VIEWS)
def test_no_view_of_an_answer_runs_or_loads_model_text(
    hostile_notebook: Notebook,
    hostile: list[str],
    cell: int,
    view: str,
    answers: int,
    screenshots: Path,
) -> None:
    nb = hostile_notebook
    seen_before = nb.page.evaluate("() => window.__seen")
    state = nb.execute(cell, timeout=120)
    assert "Traceback" not in state["text"] and "Error" not in state["text"], state
    assert state["text"].count("Answer:") >= answers, state["text"][:500]
    nb.page.wait_for_timeout(500)  # late renders (MathJax) before the checks
    assert nb.page.evaluate("() => window.__seen") > seen_before, "the observer saw nothing"
    assert nb.page.evaluate("() => window.__violations") == [], view
    assert nb.page.evaluate("() => window.__pwned") is None  # no script of the model's ran
    assert [url for url in hostile if "probe.invalid" in url or PROBE in url] == []
    area = nb.output_area(cell)
    if answers > 2:  # links to the probe are there (images shown as links), none loaded
        assert area.locator(f'a[href^="{PROBE}"]').count() > 0
    expect(area.locator(".mathjax_ignore img")).to_have_count(0)
    nb.cell(cell).screenshot(path=screenshots / f"hostile-{cell}.png")


def test_answers_still_render_as_answers(
    hostile_notebook: Notebook, hostile: list[str], screenshots: Path
) -> None:
    nb = hostile_notebook
    nb.execute(7)
    area = nb.output_area(7)
    answer = area.locator(".mathjax_ignore").last
    expect(answer.locator(".om-h1")).to_contain_text("Heading")
    expect(answer.locator("table td")).to_have_count(2)
    expect(answer.locator("ol > li")).to_have_count(2)
    expect(answer.locator("a[href='https://example.org']")).to_have_text("link")
    # Math is typeset by Lab's MathJax, inline and display; prices are not math.
    expect(answer.locator(".mathjax_process mjx-container")).to_have_count(2, timeout=15_000)
    expect(answer).to_contain_text("prices of $5 and $6.")
    # Code keeps its language and is coloured with the editor's theme colours.
    keyword = answer.locator("pre code.language-python .om-k").first
    expect(keyword).to_have_text("def")
    colours = keyword.evaluate(
        "k => [getComputedStyle(k).color, getComputedStyle(k.closest('pre')).color]"
    )
    assert colours[0] != colours[1], colours
    assert nb.page.evaluate("() => window.__violations") == []
    nb.cell(7).screenshot(path=screenshots / "magic-markdown-safe.png")
