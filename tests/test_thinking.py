"""The reasoning splitter: every split position and any chunking give the one-piece result."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ollama_magic.common.thinking import ReasoningSplitter, SplitText


def split(chunks: list[str], thinking: list[str] | None = None) -> tuple[str, str]:
    s, t = ReasoningSplitter(), SplitText()
    for i, c in enumerate(chunks):
        for e in s.feed(c, thinking[i] if thinking else ""):
            t.apply(e)
    for e in s.flush():
        t.apply(e)
    return t.thinking, t.answer


CASES = {
    "inline": (
        "<think>\nLet me think.\n</think>\n\nThe answer.",
        ("Let me think.\n", "The answer."),
    ),
    "leading space": ("  \n<think>a</think>b", ("a", "b")),
    "no reasoning": (
        "Just an answer with a < and </b>.",
        ("", "Just an answer with a < and </b>."),
    ),
    "cut by num_predict": (
        "<think>\n嗯,用户让我生成一个关于人工智能",
        ("嗯,用户让我生成一个关于人工智能", ""),
    ),
    "cut inside closing tag": ("<think>abc</thi", ("abc</thi", "")),
    "only a closing tag": ("I should greet.\n</think>\n\nHello!", ("I should greet.\n", "Hello!")),
    "closing tag then tags in answer": ("r</think>a </think> b", ("r", "a </think> b")),
    "opening tag later is text": ("Use <think> tags.", ("", "Use <think> tags.")),
    "empty": ("", ("", "")),
    "chinese answer": ("<think>思考</think>你好,世界", ("思考", "你好,世界")),
    "partial open tag at end": ("<thi", ("", "<thi")),
    "only whitespace": ("  \n", ("", "  \n")),
}


@pytest.mark.parametrize("name", CASES)
def test_one_piece(name: str) -> None:
    text, expected = CASES[name]
    assert split([text]) == expected


@pytest.mark.parametrize("name", CASES)
def test_every_split_position(name: str) -> None:
    text, expected = CASES[name]
    for cut in range(len(text) + 1):
        assert split([text[:cut], text[cut:]]) == expected, (name, cut)


@pytest.mark.parametrize("name", CASES)
def test_every_pair_of_split_positions(name: str) -> None:
    text, expected = CASES[name]
    n = len(text)
    for a in range(n + 1):
        for b in range(a, n + 1):
            assert split([text[:a], text[a:b], text[b:]]) == expected, (name, a, b)


@pytest.mark.parametrize("name", CASES)
def test_char_by_char(name: str) -> None:
    text, expected = CASES[name]
    assert split(list(text)) == expected


def test_thinking_field_is_reasoning() -> None:
    chunks = ["", "", "Hello", "!"]
    thinking = ["Greeting", " the user.", "", ""]
    assert split(chunks, thinking) == ("Greeting the user.", "Hello!")


def test_answer_is_not_held_back_without_angle_brackets() -> None:
    s = ReasoningSplitter()
    assert s.feed("Hello") == [("answer", "Hello")]
    assert s.feed(" world") == [("answer", " world")]


def test_possible_closing_tag_is_held_back_then_released() -> None:
    s = ReasoningSplitter()
    assert s.feed("<think>abc</t") == [("thinking", "abc")]
    assert s.feed("ea") == [("thinking", "</tea")]


def test_retract_event_for_a_bare_closing_tag() -> None:
    s = ReasoningSplitter()
    events = s.feed("Hmm") + s.feed(" ok</think>Hi")
    assert events == [("answer", "Hmm"), ("retract", " ok"), ("answer", "Hi")]


PIECES = st.sampled_from(
    ["<think>", "</think>", "<", "th", "ink", ">", "</", "a", " ", "\n", "思", "é", "😀", "x y"]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(PIECES, max_size=12), st.data())
def test_any_chunking_gives_the_one_piece_result(pieces: list[str], data: st.DataObject) -> None:
    text = "".join(pieces)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=6)))
    chunks, start = [], 0
    for c in cuts:
        chunks.append(text[start:c])
        start = c
    chunks.append(text[start:])
    assert split(chunks) == split([text])


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="<>/thinka \n", max_size=30), st.data())
def test_any_chunking_on_tag_alphabet(text: str, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(text)))
    assert split([text[:cut], text[cut:]]) == split([text])
    assert split(list(text)) == split([text])
