"""Token probabilities: read from untrusted chunks, drawn as escaped, shaded tokens."""

from __future__ import annotations

import math
from html.parser import HTMLParser

from hypothesis import given
from hypothesis import strategies as st

from ollama_magic.logprobs import Candidate, TokenLogprob, read_entries, tokens_html, tokens_text
from ollama_magic.render import result_bundle
from ollama_magic.result import GenerationResult

from .test_render import unsafe_parts

ENTRIES = [
    {"token": "The", "logprob": -0.01, "top_logprobs": [{"token": "The", "logprob": -0.01}]},
    {"token": " sky", "logprob": math.log(0.5), "top_logprobs": [
        {"token": " sky", "logprob": math.log(0.5)}, {"token": " sea", "logprob": math.log(0.3)},
    ]},
    {"token": "<img src=x onerror=alert(1)>", "logprob": math.log(0.05)},
]


def test_entries_become_tokens_and_junk_is_left_out() -> None:
    junk = [None, 5, {"token": 3, "logprob": -1}, {"token": "x", "logprob": "a"},
            {"token": "y", "logprob": float("nan")}, {"token": "z", "logprob": 3.0},
            {"token": "w", "logprob": True}]  # fmt: skip
    tokens = read_entries([*ENTRIES, *junk])
    assert [t.token for t in tokens] == ["The", " sky", "<img src=x onerror=alert(1)>"]
    assert tokens[1].alternatives == (
        Candidate(" sky", math.log(0.5)), Candidate(" sea", math.log(0.3))
    )
    assert read_entries("nope") == [] and read_entries({"token": "x"}) == []


class Spans(HTMLParser):
    def __init__(self, fragment: str) -> None:
        super().__init__()
        self.spans: list[dict[str, str | None]] = []
        self.feed(fragment)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "span":
            self.spans.append(dict(attrs))


def test_tokens_are_shaded_by_probability_with_alternatives_on_hover() -> None:
    shown = tokens_html(read_entries(ENTRIES))
    spans = Spans(shown).spans
    assert len(spans) == 3
    assert "style" not in spans[0]  # a sure token is plain
    assert spans[1]["style"] and spans[2]["style"]
    alpha = [float(s["style"].split(",")[-1].rstrip(")")) for s in spans[1:]]  # type: ignore[union-attr]
    assert alpha[0] < alpha[1]  # less likely, stronger
    assert spans[1]["title"] == "' sky' 50%; alternatives: ' sky' 50%, ' sea' 30%"
    assert "&lt;img src=x onerror=alert(1)&gt;" in shown and unsafe_parts(shown) == []


def test_reasoning_tokens_are_not_drawn_as_the_answer() -> None:
    tokens = read_entries(ENTRIES[:1], thinking=True) + read_entries(ENTRIES[1:2])
    assert tokens_html(tokens).count("<span") == 1
    assert tokens_text(tokens).startswith("token probabilities: 1 token, mean probability 50%")


def test_a_result_with_logprobs_shows_them_in_html_and_text() -> None:
    result = GenerationResult(
        model="m", answer="The sky", done_reason="stop", logprobs=read_entries(ENTRIES[:2])
    )
    bundle = result_bundle(result)
    assert "<summary>Token probabilities</summary>" in bundle["text/html"]
    assert "least likely: ' sky' 50%" in bundle["text/plain"]
    assert "' sky' 50%; alternatives: ' sky' 50%, ' sea' 30%" in bundle["text/plain"]
    plain = GenerationResult(model="m", answer="x", done_reason="stop")
    assert "Token probabilities" not in result_bundle(plain)["text/html"]


_JSON = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                  max_size=4),
    max_leaves=20,
)
_ENTRY = st.fixed_dictionaries(
    {"token": st.text(max_size=20) | _JSON, "logprob": st.floats() | _JSON},
    optional={"top_logprobs": st.lists(
        st.fixed_dictionaries({"token": st.text(max_size=8) | _JSON, "logprob": st.floats()}),
        max_size=5) | _JSON},
)  # fmt: skip


@given(st.lists(_ENTRY | _JSON, max_size=12))
def test_any_server_reply_draws_safely(value: list[object]) -> None:
    tokens = read_entries(value)
    assert all(isinstance(t, TokenLogprob) and t.logprob <= 0 for t in tokens)
    assert unsafe_parts(tokens_html(tokens)) == []
    tokens_text(tokens)


def test_a_terminal_gets_the_summary_and_the_least_likely_tokens() -> None:
    import io

    from ollama_magic.live import TextSink

    out = io.StringIO()
    sink = TextSink(out)
    sink.answer("The sky")
    sink.finish(GenerationResult(model="m", answer="The sky", done_reason="stop",
                                 logprobs=read_entries(ENTRIES[:2])))  # fmt: skip
    text = out.getvalue()
    assert "token probabilities: 2 tokens, mean probability 75%" in text
    assert "  ' sky' 50%; alternatives: ' sky' 50%, ' sea' 30%" in text
    assert text.rstrip().endswith("[done: stop]")
