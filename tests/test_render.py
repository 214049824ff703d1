"""Bundles for results: escaping of model text, reasoning blocks, the stats footer and hints."""

from __future__ import annotations

import re

from ollama_magic.render import escape_markdown, open_fence, result_bundle
from ollama_magic.result import GenerationResult

XSS = 'Look: <img src=x onerror="alert(1)"> and <script>alert(2)</script>'


def live_html(markdown: str) -> list[str]:
    """Tags that a Markdown renderer would turn into live HTML: '<' outside code, not escaped."""
    outside_code = re.sub(r"```.*?```|`[^`]*`", "", markdown, flags=re.S)
    return re.findall(r"<(?:img|script)\b", outside_code)


def test_model_html_never_becomes_live_html() -> None:
    result = GenerationResult(model="m", answer=XSS, thinking=XSS, done_reason="stop")
    bundle = result_bundle(result)
    assert live_html(bundle["text/markdown"]) == []
    assert "&lt;img" in bundle["text/markdown"]
    assert XSS in bundle["text/plain"]


def test_code_is_left_as_written() -> None:
    text = "Use `a<b` here:\n\n```html\n<b>bold</b>\n```\n"
    assert escape_markdown(text) == text


def test_tilde_fences_and_longer_closers() -> None:
    assert escape_markdown("~~~~\n<a>\n~~~~~\n<b>") == "~~~~\n<a>\n~~~~~\n&lt;b>"
    assert open_fence("````\n```\n") == "````"


def test_unclosed_fence_is_closed_before_the_footer() -> None:
    result = GenerationResult(model="m", answer="```python\nprint(1)", done_reason="length")
    markdown = result_bundle(result)["text/markdown"]
    assert markdown.count("```") == 2
    assert markdown.endswith("</sub>")


def test_reasoning_is_collapsed_and_escaped() -> None:
    result = GenerationResult(model="m", thinking="a\n\nb <i>", answer="ok", done_reason="stop")
    markdown = result_bundle(result)["text/markdown"]
    assert markdown.startswith("<details><summary>Thinking (3 words)</summary>")
    block = markdown.split("</details>")[0]
    assert "\n\n" not in block  # a blank line would end the HTML block early
    assert "&lt;i&gt;" in block
    assert result_bundle(result, show_thinking=False)["text/markdown"].startswith("ok")


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


def test_truncated_prompt_hint() -> None:
    result = GenerationResult(
        model="m",
        answer="x",
        done_reason="stop",
        prompt_eval_count=64,
        request={"options": {"num_ctx": 64}},
    )
    assert "the prompt filled num_ctx=64" in result_bundle(result)["text/plain"]


def test_partial_marks() -> None:
    for reason, mark in (("interrupted", "interrupted"), ("error", "failed")):
        result = GenerationResult(model="m", answer="half", done_reason=reason)
        assert f"{mark}: the answer above is partial" in result_bundle(result)["text/plain"]


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
    markdown = result_bundle(result)["text/markdown"]
    assert markdown.startswith(f"```json\n{answer}\n```\n\n<sub>")
    schema = {"type": "array"}
    plain = GenerationResult.from_final("m", {}, answer="[1]", request={"format": schema})
    assert result_bundle(plain)["text/markdown"].startswith("```json\n[1]\n```")
