"""The live notebook view: slots, throttling, display bytes, nbval equivalence, safety."""

from __future__ import annotations

import html
import json
import re

import pytest

from ollama_magic.live import LiveDisplay
from ollama_magic.render import result_bundle
from ollama_magic.result import GenerationResult

from .helpers import flatten


class Recorder:
    """A publisher that keeps every message, and can replay them as a notebook or as nbval."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str | None, dict]] = []

    def show(self, bundle: dict, display_id: str) -> None:
        self.messages.append(("show", display_id, dict(bundle)))

    def update(self, bundle: dict, display_id: str) -> None:
        self.messages.append(("update", display_id, dict(bundle)))

    def final(self, bundle: dict) -> None:
        self.messages.append(("final", None, dict(bundle)))

    def notebook(self) -> list[dict]:
        """What a front end (or nbclient) ends with: outputs with updates applied."""
        outputs: list[dict] = []
        where: dict[str, int] = {}
        for kind, did, bundle in self.messages:
            if kind == "update":
                outputs[where[did]] = bundle
            else:
                if did:
                    where[did] = len(outputs)
                outputs.append(bundle)
        return outputs

    def nbval(self) -> list[dict]:
        """What nbval sees: the first version of each output; updates are dropped."""
        return [bundle for kind, _, bundle in self.messages if kind != "update"]

    def bytes(self) -> int:
        return sum(len(json.dumps(b)) for _, _, b in self.messages)

    def updates(self) -> int:
        return sum(1 for kind, *_ in self.messages if kind == "update")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


MARKDOWN = (
    "## Section {n}\n\nA paragraph about item {n} with `inline <code>` and some **bold** words "
    "that go on for a while, as answers do.\n\n- point one\n- point two <b>not html</b>\n\n"
    "```python\nfor i in range({n}):\n    print(i < {n})\n```\n\n"
)


def long_answer(size: int = 12_000) -> str:
    text, n = "", 0
    while len(text) < size:
        text += MARKDOWN.format(n=n)
        n += 1
    return text


def tokens(text: str, size: int = 4) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def stream(answer: str, per_second: float, thinking: str = "") -> tuple[Recorder, LiveDisplay]:
    rec, clock = Recorder(), Clock()
    live = LiveDisplay(rec, clock=clock)
    for piece in tokens(thinking):
        clock.now += 1 / per_second
        live.thinking(piece)
    for piece in tokens(answer):
        clock.now += 1 / per_second
        live.answer(piece)
    result = GenerationResult(model="m", answer=answer, thinking=thinking, done_reason="stop")
    live.finish(result)
    return rec, live


def test_first_words_show_at_once() -> None:
    rec, clock = Recorder(), Clock()
    live = LiveDisplay(rec, clock=clock)
    live.answer("Hello")
    # the token count's line (empty until a second has passed), then the answer's slot
    assert [m[0] for m in rec.messages] == ["show", "show", "update"]
    assert rec.messages[0][2] == {} and rec.messages[1][2] == {}
    wrapper = '<div class="mathjax_ignore om-answer">'
    assert rec.messages[2][2] == {"text/html": f"{wrapper}<p>Hello</p>\n</div>"}


def test_a_live_line_counts_tokens_once_a_second_and_goes_at_the_end() -> None:
    rec, clock = Recorder(), Clock()
    live = LiveDisplay(rec, clock=clock)
    for _ in range(20):
        clock.now += 0.125  # 8 tokens a second
        live.answer("word ")
    status = rec.messages[0][1]
    counts = [b["text/html"] for k, d, b in rec.messages if d == status and k == "update"]
    assert counts == ["<sub>9 tokens so far · 8.0 tokens/s</sub>",
                      "<sub>17 tokens so far · 8.0 tokens/s</sub>"]  # fmt: skip
    live.finish(GenerationResult(model="m", answer="word " * 20, done_reason="stop"))
    assert [b for k, d, b in rec.messages if d == status][-1] == {}


@pytest.mark.parametrize("rate", [50, 400, 5000])
def test_updates_are_throttled_to_20_a_second_at_any_rate(rate: int) -> None:
    rec, _ = stream(long_answer(), per_second=rate)
    seconds = len(tokens(long_answer())) / rate
    assert rec.updates() <= 20 * seconds + 40, rate  # + the slot closings and the end


@pytest.mark.parametrize("rate", [20, 60, 400, 5000])
def test_no_second_carries_more_than_20_messages_while_streaming(rate: int) -> None:
    rec, clock = Recorder(), Clock()
    live = LiveDisplay(rec, clock=clock)
    stamps: list[float] = []
    for piece in tokens("Let me think. " * 60):
        clock.now += 1 / rate
        live.thinking(piece)
        stamps += [clock.now] * (len(rec.messages) - len(stamps))
    for piece in tokens(long_answer(8000)):
        clock.now += 1 / rate
        live.answer(piece)
        stamps += [clock.now] * (len(rec.messages) - len(stamps))
    busiest = max(sum(1 for t in stamps if s <= t < s + 1.0) for s in stamps)
    assert busiest <= 20, (rate, busiest)


# This answer is dense in code and escaped tags; at 20 tokens/s and below, each update re-sends a
# short slot, so its markup weighs more (README, Benchmarks).
@pytest.mark.parametrize(("rate", "bound"), [(20, 13), (60, 10), (400, 10)])
def test_display_bytes_stay_a_small_multiple_of_the_answer(rate: int, bound: int) -> None:
    answer = long_answer(12_000)
    rec, _ = stream(answer, per_second=rate)
    assert rec.bytes() <= bound * len(answer), (rate, rec.bytes() / len(answer))


def test_display_bytes_grow_linearly() -> None:
    answer = long_answer(12_000)
    big = long_answer(48_000)
    rec_big, _ = stream(big, per_second=400)
    rec_small, _ = stream(answer, per_second=400)
    assert rec_big.bytes() / len(big) < 1.5 * rec_small.bytes() / len(answer)


def test_nbval_sees_what_the_saved_notebook_holds() -> None:
    rec, _ = stream(long_answer(5000), per_second=60, thinking="Let me think about it. " * 40)
    assert flatten(rec.nbval()) == flatten(rec.notebook())
    final = rec.messages[-1]
    assert final[0] == "final"
    result = GenerationResult(
        model="m", answer=long_answer(5000), thinking="Let me think about it. " * 40,
        done_reason="stop",
    )
    assert flatten(rec.notebook()) == flatten([result_bundle(result)])


def test_every_slot_starts_and_ends_empty() -> None:
    rec, _ = stream(long_answer(), per_second=100)
    shown = [did for kind, did, _ in rec.messages if kind == "show"]
    assert len(shown) > 1  # a long answer uses several slots
    for did in shown:
        versions = [b for kind, d, b in rec.messages if d == did]
        assert versions[0] == {} and versions[-1] == {}


def test_a_slot_that_continues_a_code_block_shows_code() -> None:
    answer = "Intro.\n\n```python\n" + "".join(f"print({i} < 2)\n" for i in range(300)) + "```\n"
    rec, _ = stream(answer, per_second=100)
    pieces = [b["text/html"] for k, _, b in rec.messages if k == "update" and b]
    inside = [p for p in pieces if "print(" in p and "Intro" not in p]
    assert len(inside) > 3  # the code block spans several slots
    for piece in inside:
        assert '<pre><code class="language-python">' in piece, piece
        assert "<p>print" not in piece


def test_live_view_shows_the_whole_answer_in_order() -> None:
    answer = long_answer(6000)
    rec, clock = Recorder(), Clock()
    live = LiveDisplay(rec, clock=clock)
    for piece in tokens(answer):
        clock.now += 1 / 60
        live.answer(piece)
    clock.now += 1
    live.answer(" END")
    shown = [b.get("text/html", "") for b in rec.notebook()]
    joined = html.unescape(re.sub(r"<[^>]+>", "", "".join(shown)))
    assert joined.rstrip().endswith("END")
    sections = re.findall(r"Section (\d+)", joined)
    assert sections == [str(n) for n in range(len(sections))] and len(sections) > 20


def test_reasoning_stays_open_while_the_answer_streams_then_collapses() -> None:
    rec, clock = Recorder(), Clock()
    live = LiveDisplay(rec, clock=clock)
    live.thinking("Considering <x> ")
    first = rec.messages[-1][2]["text/html"]
    assert "Thinking…" in first and "&lt;x&gt;" in first
    clock.now += 1
    live.answer("Done.")
    shown = [b.get("text/html", "") for b in rec.notebook()]
    assert any("Considering &lt;x&gt;" in b for b in shown)  # still there to be read
    assert not any("<details>" in b for b in shown)
    live.finish(GenerationResult(model="m", thinking="Considering <x>", answer="Done."))
    (final,) = [b for b in rec.notebook() if b]
    assert "<summary>Thinking (2 words)</summary>" in final["text/html"]


def test_retract_moves_the_answer_into_reasoning() -> None:
    rec, clock = Recorder(), Clock()
    live = LiveDisplay(rec, clock=clock)
    live.answer("I should greet")
    clock.now += 1
    live.retract("I should greet.")
    clock.now += 1
    live.answer("Hello!")
    live.finish(GenerationResult(model="m", thinking="I should greet.", answer="Hello!"))
    notebook = [b for b in rec.notebook() if b]
    assert len(notebook) == 1 and "Hello!" in notebook[0]["text/html"]
    assert flatten(rec.nbval()) == flatten(rec.notebook())


def test_hidden_reasoning_is_not_shown() -> None:
    rec, clock = Recorder(), Clock()
    live = LiveDisplay(rec, clock=clock, show_thinking=False)
    live.thinking("secret plan")
    live.answer("Hi")
    live.finish(GenerationResult(model="m", thinking="secret plan", answer="Hi"))
    assert "secret" not in json.dumps(rec.messages)
