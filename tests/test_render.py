"""Bundles for results: model text rendered to safe HTML, reasoning blocks, the stats footer."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ollama_magic.render import ANSWER_STYLE, markdown_html, open_fence, result_bundle
from ollama_magic.result import GenerationResult
from tests.hostile import BENIGN, CORPUS, PROBE

XSS = 'Look: <img src=x onerror="alert(1)"> and <script>alert(2)</script>'
ALLOWED = {
    *("p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "code"),
    *("em", "strong", "del", "s", "sub", "sup", "a", "ul", "ol", "li", "span", "div"),
    *("table", "thead", "tbody", "tr", "th", "td", "details", "summary", "b", "i"),
}
SAFE_HREF = re.compile(r"^(https?:|mailto:)", re.I)


class Elements(HTMLParser):
    """Every element and attribute of an HTML fragment, as a browser's tokenizer sees them."""

    def __init__(self, fragment: str) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.feed(fragment)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, attrs))


def unsafe_parts(fragment: str) -> list[str]:
    """What in ``fragment`` could run script, load something or leave the allow-list.

    The one ``<style>`` allowed is the renderer's own code colours, which no model text touches.
    """
    problems = []
    fragment = fragment.replace(ANSWER_STYLE, "")
    for tag, attrs in Elements(fragment).found:
        if tag not in ALLOWED:
            problems.append(f"<{tag}>")
        for name, value in attrs:
            value = value or ""
            if name.startswith("on") or name in ("src", "srcset", "data", "action", "formaction"):
                problems.append(f"{tag}[{name}]")
            if name == "href" and not SAFE_HREF.match(value.strip()):
                problems.append(f"{tag}[href={value}]")
            if name == "style" and ("url(" in value or "expression" in value):
                problems.append(f"{tag}[style={value}]")
            if name == "class" and tag not in ("code", "span", "div", "p"):
                problems.append(f"{tag}[class]")
    return problems


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_hostile_answers_never_become_live_markup(name: str) -> None:
    text = CORPUS[name]
    result = GenerationResult(model="m", answer=text, thinking=text, done_reason="stop")
    bundle = result_bundle(result)
    assert unsafe_parts(bundle["text/html"]) == []
    assert "text/markdown" not in bundle  # no front-end parser gets a say
    assert text.strip() in bundle["text/plain"]
    for tag, attrs in Elements(bundle["text/html"]).found:
        for _, value in attrs:
            # A probe URL may appear as a link target, never as something loaded.
            assert tag == "a" or PROBE not in (value or ""), (tag, attrs)


def test_what_answers_should_look_like_still_renders() -> None:
    html = markdown_html(BENIGN)
    for element in ("<em>", "<strong>", "<code>", "<ul>", "<ol>", "<table>"):
        assert element in html
    assert '<p class="om-h1"><strong>Heading</strong></p>' in html and "<h1>" not in html
    assert '<th style="text-align:left">' in html and '<td style="text-align:right">' in html
    assert '<code class="language-python">' in html and '<span class="om-k">return</span>' in html
    assert re.sub(r"<[^>]+>", "", html).count("return x &lt; 2") == 1  # code escaped, kept
    assert '<span class="mathjax_process">$x^2$</span>' in html
    assert '<div class="mathjax_process">$$\\int_0^1 x\\,dx$$</div>' in html
    assert "prices of $5 and $6." in html  # not math
    assert '<a href="https://example.org" rel="noopener noreferrer nofollow">link</a>' in html


def test_raw_html_shows_as_text_and_images_as_links() -> None:
    html = markdown_html(XSS + f" ![alt]({PROBE}/x.png) [j](javascript:alert(1))")
    assert "&lt;img src=x onerror=" in html and "&lt;script&gt;" in html
    assert f'<a href="{PROBE}/x.png" title="image, not loaded"' in html
    assert "[image: alt]</a>" in html
    assert "[j](javascript:alert(1))" in html  # shown as the text it was


@pytest.mark.parametrize("text", ["![]()", "[x]()", "![a](<>)", "[b](<javascript:x>)"])
def test_refused_targets_leave_text_not_empty_links(text: str) -> None:
    assert "href" not in markdown_html(text)


def test_risky_math_is_shown_as_code() -> None:
    html = markdown_html("$\\href{javascript:x}{y}$ $\\require{action}$ $a+b$")
    assert html.count("<code>") == 2 and html.count("mathjax_process") == 1


def test_the_whole_output_skips_mathjax_but_for_marked_math() -> None:
    result = GenerationResult(model="m", answer="$5 and $a$", thinking="$x$", done_reason="stop")
    html = result_bundle(result)["text/html"]
    assert html.startswith('<div class="mathjax_ignore om-answer">')
    assert html.count("mathjax_process") == 1


_PIECES = st.sampled_from(
    [
        "<img src=x onerror=alert(1)>", "<script>", "</script>", "<svg onload=x>", "<a href=",
        "javascript:", "`", "``", "```", "~~~", "\\`", "\\", "$", "$$", "\\href{", "![", "](",
        ")", "[", "]", ":", "<", ">", "&", "&lt;", "&#60;", '"', "'", "\n", "\n\n", "    ",
        "- ", "> ", "# ", "| ", "|---|", "*", "_", "<!--", "-->", "<![CDATA[", "onerror=",
        "data:", "http://x.test/", "<iframe src=x>", "<b>", "</b>", "<details open ontoggle=x>",
        "text", " ", "1. ",
    ]
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_PIECES, max_size=40).map("".join))
def test_markdown_with_tags_anywhere_never_yields_unsafe_html(text: str) -> None:
    assert unsafe_parts(markdown_html(text)) == []


def test_open_fence_follows_the_parser() -> None:
    assert open_fence("x\n```py\ncode") == "```py"
    assert open_fence("~~~~\n```\n") == "~~~~"
    assert open_fence("````\n```\n") == "````"
    assert open_fence("```\na\n```\n") is None
    assert open_fence("> ```\n> code") is None  # inside a quote: not a top-level fence


def test_unclosed_fence_does_not_swallow_the_footer() -> None:
    result = GenerationResult(model="m", answer="```python\nprint(1)", done_reason="length")
    html = result_bundle(result)["text/html"]
    assert html.endswith("<sub>done: length · stopped at the token limit: "
                         f"raise --num-predict for a longer answer</sub></div>{ANSWER_STYLE}")


def test_reasoning_is_collapsed_and_escaped() -> None:
    result = GenerationResult(model="m", thinking="a\n\nb <i>", answer="ok", done_reason="stop")
    html = result_bundle(result)["text/html"]
    assert html.startswith('<div class="mathjax_ignore om-answer"><details><summary>')
    assert "<summary>Thinking (3 words)</summary>" in html
    assert "&lt;i&gt;" in html.split("</details>")[0]
    assert "<details>" not in result_bundle(result, show_thinking=False)["text/html"]


def test_footer_stats_and_length_hint() -> None:
    result = GenerationResult(
        model="m",
        answer="x",
        done_reason="length",
        eval_count=10,
        eval_duration=500_000_000,
        prompt_eval_count=7,
        load_duration=1_500_000_000,
        request={"options": {"num_predict": 10}},
    )
    plain = result_bundle(result)["text/plain"]
    assert "[10 tokens · 20.0 tokens/s · prompt 7 tokens · load 1.50 s · done: length" in plain
    assert "stopped at num_predict=10: raise --num-predict" in plain


@pytest.mark.parametrize(
    ("num_ctx", "count", "cut"),
    [
        (4096, 2051, True),  # Ollama 0.33: first num_keep (+BOS) and last tokens, about half
        (4096, 2050, True),  # the same without a BOS token
        (4096, 4095, True),  # 0.30.0-0.30.8
        (64, 64, True),  # before 0.30: exactly num_ctx
        (4096, 2052, False),
        (4096, 1200, False),
        (None, 2051, False),  # window unknown: no guess
    ],
)
def test_a_cut_prompt_is_never_silent(num_ctx: int | None, count: int, cut: bool) -> None:
    result = GenerationResult(
        model="m", answer="x", done_reason="stop", prompt_eval_count=count, num_ctx=num_ctx
    )
    plain = result_bundle(result)["text/plain"]
    assert result.prompt_cut is cut
    assert (f"the prompt was longer than num_ctx={num_ctx}, so the server cut it" in plain) is cut
    if cut:
        assert f"to {count} tokens" in plain and "raise --num-ctx" in plain


def test_a_full_window_is_not_blamed_on_num_predict() -> None:
    """``done_reason: length`` also comes when the context fills with ``shift`` off."""
    result = GenerationResult(
        model="m", answer="x", done_reason="length", eval_count=89, num_ctx=128,
        request={"options": {"num_predict": 500}, "shift": False},
    )
    footer = result_bundle(result)["text/plain"]
    assert "the answer filled num_ctx=128: raise --num-ctx" in footer
    assert "num-predict" not in footer


def test_num_keep_moves_the_cut() -> None:
    result = GenerationResult(
        model="m", prompt_eval_count=4096 - (4096 - 101) // 2, num_ctx=4096,
        request={"options": {"num_keep": 100}},
    )
    assert result.prompt_cut


@pytest.mark.parametrize(
    ("reason", "request_", "said"),
    [
        ("interrupted", {}, "stopped: the answer above is partial"),
        ("interrupted", {"messages": []}, "partial; this turn is not added to the conversation"),
        ("error", {}, "cut short by an error"),
    ],
)
def test_a_cut_stream_says_so_once_with_the_count_so_far(
    reason: str, request_: dict, said: str
) -> None:
    result = GenerationResult(
        model="m", answer="half", done_reason=reason, request=request_,
        streamed_tokens=11, streamed_seconds=0.5,
    )
    footer = result_bundle(result)["text/plain"].splitlines()[-1]
    assert footer.startswith("[11 tokens so far · 20.0 tokens/s · ") and said in footer
    assert "done:" not in footer and footer.count("partial") <= 1


def test_result_repr_and_rate() -> None:
    result = GenerationResult(
        model="m",
        answer="a" * 100,
        thinking="t",
        done_reason="stop",
        eval_count=4,
        eval_duration=2_000_000_000,
    )
    assert result.tokens_per_second == 2.0
    text = repr(result)
    assert text.startswith("GenerationResult(model='m', done_reason='stop', eval_count=4")
    assert "tokens_per_second=2.0" in text and "thinking=<1 chars>" in text
    assert len(text) < 200
    assert str(result) == "a" * 100


def test_a_format_answer_is_shown_as_a_json_code_block() -> None:
    from ollama_magic.render import result_bundle
    from ollama_magic.result import GenerationResult

    answer = '{\n  "name": "Ana",\n  "note": "``x``"\n}'
    result = GenerationResult.from_final(
        "m", {"done": True, "done_reason": "stop"}, answer=answer, request={"format": "json"}
    )
    html = result_bundle(result)["text/html"]
    assert '<pre><code class="language-json">' in html and "``x``" in html
    schema = {"type": "array"}
    plain = GenerationResult.from_final("m", {}, answer="[1]", request={"format": schema})
    assert '<code class="language-json">' in result_bundle(plain)["text/html"]


def test_a_huge_answer_renders_a_piece_at_a_time_with_code_kept_whole() -> None:
    from ollama_magic.render import LONG_ANSWER

    code = "```python\n" + "\n\n".join(f"x{i} = {i} < 2" for i in range(5000)) + "\n```\n\n"
    text = "Intro.\n\n" + ("Some *prose* here.\n\n" * 3000) + code + "The end.\n"
    assert len(text) > LONG_ANSWER
    html = markdown_html(text)
    assert "```" not in html and "x4999 = 4999 &lt; 2" in re.sub(r"<[^>]+>", "", html)
    assert "<p>x" not in html  # every line of the code stayed code, across the pieces
    assert html.count("<em>prose</em>") == 3000 and html.endswith("<p>The end.</p>\n")
