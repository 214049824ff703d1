"""The notebook apps (``ollama_magic.widgets``) driven from Python against the local server.

Each test sets widget values, clicks buttons as a person would, waits for the worker thread,
and checks what the app shows and which requests the server received. A failure on a worker
thread would be a traceback in the kernel's log, so here it fails the test.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("ipywidgets")

from ollama_magic.args import PARSER, Defaults, build_call, parse_line
from ollama_magic.live import LiveDisplay
from ollama_magic.progress import Progress
from ollama_magic.render import result_bundle
from ollama_magic.result import GenerationResult
from ollama_magic.server import OllamaServer, ScriptedEngine
from ollama_magic.widgets import Compare, ModelManager, Playground, logic
from ollama_magic.widgets._base import AnswerView, OutputPublisher, option_values
from ollama_magic.widgets.logic import (
    chart_html,
    column_body,
    compare_metrics,
    request_body,
    think_choice,
    transfer_status,
)

from .helpers import Kernel, bodies, error_line, run_ipython, until

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

UNUSED = "http://127.0.0.1:9"  # the discard port: nothing listens there


def shown(output: Any) -> list[str]:
    """The Markdown an Output widget holds, one string per output."""
    return [o["data"].get("text/html", "") for o in output.outputs]


def names(picker: Any) -> list[str]:
    """A model picker's model names (its options are ``(label, name)`` pairs)."""
    return option_values(picker.options)


def message(app: Any) -> str:
    """The app's message line as text."""
    return said(app.message)


def said(widget: Any) -> str:
    """An HTML widget's text."""
    import html
    import re

    return html.unescape(re.sub(r"<[^>]+>", "", widget.value))


# -- pure parts ------------------------------------------------------------------------------


def test_every_control_maps_to_the_body_the_magic_sends() -> None:
    settings = {
        "system": "Be brief.",
        "temperature": 0.2,
        "top_p": 0.5,
        "top_k": 7,
        "seed": 3,
        "num_predict": 20,
        "num_ctx": 2048,
        "keep_alive": "10m",
        "think": "low",
        "format": "json",
    }
    line = (
        "thinker -s 'Be brief.' --temperature 0.2 --top-p 0.5 --top-k 7 --seed 3 "
        "--num-predict 20 --num-ctx 2048 -k 10m --think low --format json"
    )
    magic = build_call(parse_line(line), "Hi {x}", {"x": 1}, Defaults(interpolate=False)).body
    assert request_body("thinker", "Hi {x}", settings) == magic
    assert magic["options"] == {
        "temperature": 0.2, "top_p": 0.5, "top_k": 7, "seed": 3, "num_predict": 20,
        "num_ctx": 2048,
    }  # fmt: skip
    bare = request_body("echo", "Hi", {"think": "false", "keep_alive": "-1"}, {"min_p": 0.1})
    assert bare == {
        "model": "echo",
        "prompt": "Hi",
        "options": {"min_p": 0.1},
        "stream": True,
        "keep_alive": -1,
        "think": False,
    }
    assert request_body("echo", "Hi", {"think": "true"})["think"] is True
    assert [think_choice(v) for v in (False, "max", "")] == ["false", "max", ""]


def test_column_flags_are_magic_flags() -> None:
    body = column_body("thinker", "--think high -O scripted_delay=0", "Hi")
    assert (
        body
        == build_call(
            parse_line("thinker --think high -O scripted_delay=0"), "Hi", {}, Defaults()
        ).body
    )
    with pytest.raises(ValueError, match="write only flags"):
        column_body("echo", "reasoner", "Hi")
    with pytest.raises(ValueError, match="--temperature"):
        column_body("echo", "--temperature hot", "Hi")
    assert PARSER.parse_args([]).model is None  # the shared parser kept no state


def test_chart_bars_are_relative_and_escaped() -> None:
    fast = GenerationResult("a", answer="one two", eval_count=100, eval_duration=10**9)
    slow = GenerationResult("b", answer="one two three four", eval_count=50, eval_duration=10**9)
    speed, time_, length = compare_metrics(["a", "b<i>"], [fast, slow])
    assert [b.text for b in speed.bars] == ["100.0 tokens/s", "50.0 tokens/s"]
    assert [speed.fraction(b) for b in speed.bars] == [1.0, 0.5]
    assert [length.fraction(b) for b in length.bars] == [0.5, 1.0]
    assert time_.bars[0].text == "1.00 s"
    svg = chart_html([speed, time_, length])
    assert svg.startswith("<svg") and svg.count("<rect") == 6
    assert "b&lt;i&gt;" in svg and "<i>" not in svg


def test_pull_status_line() -> None:
    progress = Progress("pull", "m", 0.0)
    progress.feed({"status": "pulling x", "digest": "sha256:x", "total": 1000}, 0.0)
    progress.feed({"status": "pulling x", "digest": "sha256:x", "total": 1000, "completed": 500}, 1)
    assert transfer_status(progress) == "pulling x · 50% · 500 B of 1.0 KB · 500 B/s"


def test_output_publisher_ends_with_exactly_the_magics_final_output() -> None:

    output = AnswerView()
    publisher = OutputPublisher(output)
    clock = iter(range(1000)).__next__  # each call a second later: every piece is drawn
    live = LiveDisplay(publisher, clock=lambda: float(clock()))
    live.thinking("Let me think.")
    assert shown(output) == [shown_text for shown_text in shown(output) if shown_text]
    assert "Thinking…" in shown(output)[0]
    live.answer("The answer.")
    # the token count, the reasoning (open while the answer streams), the answer
    assert len(output.outputs) == 3 and "tokens so far" in shown(output)[0]
    assert "Thinking…" in shown(output)[1] and "The answer." in shown(output)[2]
    result = GenerationResult("m", answer="The answer.", thinking="Let me think.")
    result.done_reason = "stop"
    live.finish(result)
    assert [o["data"] for o in output.outputs] == [result_bundle(result)]


def test_updates_resend_the_growing_slot_not_the_whole_answer() -> None:
    import json

    view = AnswerView()
    sent: list[int] = []
    known: set[int] = set()

    def count(change: dict[str, Any]) -> None:  # a new slot's first state, then its updates
        for slot in change["new"]:
            if id(slot) not in known:
                known.add(id(slot))
                sent.append(len(json.dumps(slot.outputs)))
                slot.observe(lambda c: sent.append(len(json.dumps(c["new"]))), "outputs")

    view.observe(count, "children")
    now = [0.0]
    live = LiveDisplay(OutputPublisher(view), clock=lambda: now[0])
    piece = "word " * 3 + "\n"
    for _ in range(2000):  # 32 000 characters at 16 characters per 60 ms
        now[0] += 0.06
        live.answer(piece)
    result = GenerationResult("m", answer=piece * 2000, done_reason="stop")
    live.finish(result)
    assert [o["data"] for o in view.outputs] == [result_bundle(result)]
    assert sum(sent) < 10 * len(result.answer), sum(sent) / len(result.answer)


# -- Playground ------------------------------------------------------------------------------


def test_playground_generates_with_reasoning_shown_as_the_magic_shows_it(ollama) -> None:
    pg = Playground("reasoner", ollama.url, prompt="Why is the sky blue?")
    assert "reasoner" in names(pg.model_picker) and "thinker" in names(pg.model_picker)
    assert pg.model_picker.value == "reasoner"
    pg.generate_button.click()
    assert pg.generate_button.disabled and not pg.stop_button.disabled
    result = pg.wait(10)
    assert isinstance(result, GenerationResult) and result is pg.result
    assert result.done_reason == "stop" and result.thinking.startswith("The user asks about")
    assert result.answer.startswith("## Why is the sky blue")
    # the same bundle %%ollama ends with: reasoning collapsed, answer, stats footer
    assert [o["data"] for o in pg.output.outputs] == [result_bundle(result)]
    final = shown(pg.output)[0]
    assert "<summary>Thinking (47 words)</summary>" in final and "tokens/s" in final
    assert not pg.generate_button.disabled and pg.stop_button.disabled
    assert message(pg) == ""
    (body,) = bodies(ollama)
    assert body == {"model": "reasoner", "prompt": "Why is the sky blue?", "stream": True}


def test_playground_controls_reach_the_request(ollama) -> None:
    pg = Playground("thinker", ollama.url, temperature=0.3)
    pg.prompt.value = "What is a tide?"
    pg.system.value = "Answer briefly."
    pg.controls["top_k"].field.value = 12  # moving a control ticks it
    pg.controls["num_ctx"].set(8192)
    pg.controls["seed"].set(7)
    pg.controls["temperature"].check.value = False  # unticked: not sent
    pg.keep_alive.value = "2m"
    pg.think.value = "high"
    pg.format.value = "json"
    pg.generate_button.click()
    result = pg.wait(10)
    (body,) = bodies(ollama)
    assert body == {
        "model": "thinker",
        "prompt": "What is a tide?",
        "options": {"seed": 7, "top_k": 12, "num_ctx": 8192},
        "system": "Answer briefly.",
        "stream": True,
        "keep_alive": "2m",
        "think": "high",
        "format": "json",
    }
    assert body == pg.body()
    assert isinstance(result.data, dict) and set(result.data) == {"answer"}  # json: parsed


def test_stop_keeps_the_partial_answer_and_closes_the_stream(ollama) -> None:
    pg = Playground("slow", ollama.url, prompt="Interrupt me.", num_predict=400)
    pg.generate_button.click()
    until(lambda: any("slow answer about" in text for text in shown(pg.output)))
    pg.generate_button.click()  # a second Generate while running is refused
    assert message(pg) == "Still generating: press Stop first."
    started = time.monotonic()
    pg.stop_button.click()
    result = pg.wait(5)
    assert time.monotonic() - started < 1.0
    assert result.done_reason == "interrupted" and result.error
    assert result.answer.startswith("This is a slow answer about Interr")
    assert len(result.answer) < 300  # cut short: 400 tokens would take 20 s
    final = shown(pg.output)[-1]
    assert "This is a slow answer" in final
    assert "stopped: the answer above is partial" in final  # said once, in the footer
    assert message(pg) == ""
    (request,) = [r for r in ollama.requests if r.path == "/api/generate"]
    assert request.finished.wait(5) and request.disconnected_at is not None
    assert not pg.generate_button.disabled and pg.stop_button.disabled


def test_stop_before_the_first_token_frees_the_app_at_once(ollama) -> None:
    pg = Playground("slow", ollama.url, prompt="Wait.", options={"scripted_delay": 1.5})
    pg.generate_button.click()
    until(lambda: bodies(ollama))  # the request is out, no byte is back
    pg.stop_button.click()
    assert pg.result is not None and pg.result.done_reason == "interrupted"
    assert message(pg) == "Stopped before the model sent anything."
    assert not pg.generate_button.disabled
    assert pg.output.outputs == ()
    (request,) = [r for r in ollama.requests if r.path == "/api/generate"]
    assert request.json["options"] == {"scripted_delay": 1.5}
    assert request.finished.wait(5) and request.disconnected_at is not None  # closed on arrival


def test_errors_show_in_the_app_and_it_stays_usable(ollama) -> None:
    pg = Playground("echo", UNUSED, prompt="Hello")
    assert message(pg).startswith("Cannot reach Ollama at http://127.0.0.1:9")
    # the server is down: nothing to click but Retry
    assert pg.generate_button.disabled and pg.retry_button.layout.display is None
    pg.generate()  # from code it is still one line
    pg.wait(10)
    assert message(pg).startswith("Cannot reach Ollama at http://127.0.0.1:9")
    assert pg.result.done_reason == "error"
    pg.retry_button.click()  # still down: the same one line
    assert message(pg).startswith("Cannot reach Ollama at http://127.0.0.1:9")

    pg.connection.host = ollama.url  # the server is back
    pg.retry_button.click()
    assert message(pg) == "" and "lorem" in names(pg.model_picker)
    assert not pg.generate_button.disabled and pg.retry_button.layout.display == "none"
    pg.set(model="nosuch")
    pg.generate_button.click()
    pg.wait(10)
    assert message(pg).startswith(f"Model 'nosuch' is not installed on {ollama.url}.")
    assert "%ollama pull nosuch" in message(pg) and pg.output.outputs == ()

    pg.set(model="broken")
    pg.generate_button.click()
    pg.wait(10)
    assert message(pg).startswith("The model failed mid-answer: an error was encountered")
    assert "The partial answer is kept above." in message(pg)
    assert "This answer is" in shown(pg.output)[-1]
    assert "cut short by an error" in shown(pg.output)[-1]

    pg.set(model="echo", keep_alive="1d")
    pg.generate_button.click()
    assert message(pg).startswith("--keep-alive 1d: time: unknown unit")
    pg.set(keep_alive=None, prompt="  ")
    pg.generate_button.click()
    assert message(pg) == "Write a prompt first."

    pg.set(prompt="Still here?")
    pg.generate_button.click()
    assert pg.wait(10).answer.startswith("Echo: <|user|>Still here?")
    assert message(pg) == ""
    assert [b["model"] for b in bodies(ollama)] == ["nosuch", "broken", "echo"]


def test_a_bad_host_is_one_line_not_a_traceback() -> None:
    pg = Playground("echo", "http://127.0.0.1:notaport", prompt="Hi")
    said = "Ollama host 'http://127.0.0.1:notaport' is not a server address: the port must be"
    assert message(pg).startswith(said)
    assert pg.generate_button.disabled
    pg.generate()
    pg.wait(5)
    assert message(pg).startswith(said)


def test_settings_are_checked() -> None:
    with pytest.raises(TypeError, match="unknown settings \\['temprature'\\]"):
        Playground("echo", UNUSED, temprature=0.2)


# -- ModelManager ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def own() -> Iterator[OllamaServer]:
    """A server of this module's own: pulls and deletes change what it holds."""
    with OllamaServer([ScriptedEngine()], pull_speed=150_000_000) as server:
        yield server


@pytest.fixture()
def manager(own: OllamaServer) -> Iterator[ModelManager]:
    own.clear()
    app = ModelManager(own.url, interval=0.1)
    yield app
    app.close()
    assert not app._watcher.is_alive()


def test_manager_lists_models_and_loads_and_unloads(own: OllamaServer, manager) -> None:
    assert "echo:latest" in manager.installed.value and "9.5 MB" in manager.installed.value
    assert "completion, thinking" in manager.installed.value  # thinker's capabilities
    assert names(manager.model_picker)[:3] == ["echo", "reasoner", "thinker"]
    assert "No model is loaded" in manager.loaded.value
    manager.model_picker.value = "thinker"
    manager.keep_alive.value = "10m"
    manager.load_button.click()
    manager.wait()
    assert said(manager.action_message).startswith("Loaded thinker in ")
    assert said(manager.action_message).endswith("(9.5 MB in memory); it unloads in 10 min.")
    assert message(manager) == ""
    assert bodies(own) == [{"model": "thinker", "keep_alive": "10m"}]
    assert "thinker:latest" in manager.loaded.value and "in 10 min" in manager.loaded.value

    manager.unload_button.click()
    manager.wait()
    assert said(manager.action_message) == "Unloaded thinker (9.5 MB freed)."
    assert bodies(own)[-1] == {"model": "thinker", "keep_alive": 0}
    assert "No model is loaded" in manager.loaded.value

    manager.keep_alive.value = "soon"
    manager.load_button.click()
    assert message(manager).startswith("--keep-alive soon: ")
    assert said(manager.action_message) == ""  # the last action's news went


def test_manager_shows_what_is_loaded_live(own: OllamaServer, manager) -> None:
    import requests

    requests.post(own.url + "/api/generate", json={"model": "echo", "keep_alive": "1m"}, timeout=5)
    until(lambda: "echo:latest" in manager.loaded.value, timeout=3)  # nobody clicked anything
    assert "in 1 min" in manager.loaded.value
    requests.post(own.url + "/api/generate", json={"model": "echo", "keep_alive": 0}, timeout=5)
    until(lambda: "No model is loaded" in manager.loaded.value, timeout=3)
    assert len([r for r in own.requests if r.path == "/api/ps"]) >= 2


def test_manager_pulls_with_a_bar_and_deletes_after_confirming(own: OllamaServer, manager) -> None:
    own.pull_speed = 150_000_000  # haiku's 96 MB in well under a second
    manager.pull_name.value = "haiku"
    manager.pull_button.click()
    assert manager.pull_button.disabled and manager.pull_bar.layout.display is None
    seen = until(lambda: 0 < manager.pull_bar.value < 1 and manager.pull_bar.value)
    manager.wait()
    assert 0 < seen < 1 and manager.pull_bar.value == 1.0
    assert said(manager.pull_status).startswith("Pulled haiku: 96.0 MB in ")
    assert "haiku" in names(manager.model_picker) and "haiku:latest" in manager.installed.value
    assert not manager.pull_button.disabled

    manager.model_picker.value = "haiku"
    manager.delete_button.click()
    assert manager.confirm.layout.display is None  # asks first
    assert "Delete haiku from" in manager.confirm_text.value
    manager.cancel_button.click()
    assert manager.pull_bar.layout.display == "none"  # a new action: the old bar went
    assert manager.confirm.layout.display == "none"
    assert said(manager.action_message) == "Nothing deleted."
    manager.delete_button.click()
    manager.confirm_button.click()
    assert said(manager.action_message) == "Deleted haiku."
    assert [r.json for r in own.requests if r.path == "/api/delete"] == [{"model": "haiku"}]
    assert "haiku" not in names(manager.model_picker)


def test_manager_pull_errors_and_cancel(own: OllamaServer, manager) -> None:
    manager.pull("nosuch")
    manager.wait()
    assert said(manager.pull_status).startswith("Cannot pull nosuch: ")
    assert "Check the name" in said(manager.pull_status) and message(manager) == ""
    own.pull_speed = 20_000_000  # about 5 s for haiku: time to cancel
    try:
        manager.pull("haiku")
        until(lambda: manager.pull_bar.value > 0.05)
        manager.cancel_pull_button.click()
        manager.wait(5)
    finally:
        own.pull_speed = 150_000_000
    assert said(manager.pull_status).startswith("The pull of haiku was cancelled at ")
    assert "haiku" not in names(manager.model_picker)
    manager.pull_name.value = "  "
    manager.pull_button.click()
    assert said(manager.pull_status) == "Write the name of a model to pull, e.g. llama3.2."


def test_manager_without_a_server_says_so_and_stops_cleanly() -> None:
    app = ModelManager(UNUSED, interval=0.05)
    try:
        assert message(app).startswith("Cannot reach Ollama at http://127.0.0.1:9")
        time.sleep(0.3)  # the live refresh fails too, and says nothing more
        assert message(app).count("Cannot reach Ollama") == 1 and app.loaded.value == ""
        assert app.body.layout.display == "none"  # no empty lists, no actions
        assert app.retry_button.layout.display is None
        assert all(b.disabled for b in (app.load_button, app.unload_button, app.pull_button))
        app.load_button.click()  # (disabled) nothing to pick: one line, no traceback
        assert message(app) == "ValueError: no model picked: pull one first"
    finally:
        app.close()
    assert not app._watcher.is_alive()


def test_manager_live_refresh_pauses_when_left_alone(own: OllamaServer) -> None:
    app = ModelManager(own.url, interval=0.05, live_for=0.3)
    try:
        until(lambda: not app.live.value, timeout=3)
        assert message(app).startswith("The loaded list stopped refreshing after 0.005 min")
        own.clear()
        time.sleep(0.2)
        assert not [r for r in own.requests if r.path == "/api/ps"]  # no more polling
        app.live.value = True  # ticking it again is a use: it resumes
        until(lambda: [r for r in own.requests if r.path == "/api/ps"], timeout=3)
    finally:
        app.close()


# -- Compare ---------------------------------------------------------------------------------


def test_compare_streams_side_by_side_then_charts(ollama) -> None:
    app = Compare(
        ["reasoner", "thinker --think low", "echo --temperature 0"],
        ollama.url,
        prompt="Why is the sky blue?",
    )
    assert [c.label for c in app.columns] == [
        "reasoner",
        "thinker --think low",
        "echo --temperature 0",
    ]
    app.run_button.click()
    results = app.wait(15)
    assert [r.model for r in results] == ["reasoner", "thinker", "echo"]
    assert all(r.done_reason == "stop" for r in results)
    for column, result in zip(app.columns, results, strict=True):
        assert [o["data"] for o in column.output.outputs] == [result_bundle(result)]
    got = sorted(bodies(ollama), key=lambda b: b["model"])
    assert got == [
        {"model": "echo", "prompt": "Why is the sky blue?", "options": {"temperature": 0.0},
         "stream": True},
        {"model": "reasoner", "prompt": "Why is the sky blue?", "stream": True},
        {"model": "thinker", "prompt": "Why is the sky blue?", "stream": True, "think": "low"},
    ]  # fmt: skip
    chart = app.chart.value
    assert chart.startswith("<svg") and chart.count("<rect") == 9
    assert "Speed (tokens/s" in chart and "thinker --think low" in chart
    assert not app.run_button.disabled and app.stop_button.disabled


def test_compare_columns_start_from_the_magics_defaults(ollama) -> None:
    app = Compare(
        ["echo", "echo --temperature 1 -s Mine"],
        ollama.url,
        prompt="Hi",
        system="Be brief.",
        options={"temperature": 0.1, "num_ctx": 1024},
    )
    app.run()
    app.wait(10)
    got = sorted(bodies(ollama), key=lambda b: b["options"]["temperature"])
    assert [(b["options"], b["system"]) for b in got] == [
        ({"temperature": 0.1, "num_ctx": 1024}, "Be brief."),
        ({"temperature": 1.0, "num_ctx": 1024}, "Mine"),
    ]


def test_compare_one_model_at_several_settings_one_at_a_time(ollama) -> None:
    app = Compare(["thinker --think low", "thinker --think max"], ollama.url, prompt="Tides?")
    app.one_at_a_time.value = True
    app.run()
    low, high = app.wait(15)
    assert len(high.thinking) > 2 * len(low.thinking)
    starts = [r.received_at for r in ollama.requests if r.path == "/api/generate"]
    finishes = [r for r in ollama.requests if r.path == "/api/generate"]
    assert finishes[0].finished.is_set() and starts[1] >= starts[0]


def test_compare_column_errors_stay_in_their_column(ollama) -> None:
    app = Compare(["nosuch", "echo"], ollama.url, prompt="Hi")
    app.add_column("broken")
    app.add_column("lorem")
    assert app.add_column("slow") is None and message(app) == "At most 4 columns."
    app.remove_column()
    app.run()
    missing, echo, broken = app.wait(15)
    first = message(app.columns[0])
    assert first.startswith(f"Model 'nosuch' is not installed on {ollama.url}.")
    assert message(app.columns[2]).startswith("The model failed mid-answer")
    assert echo.done_reason == "stop" and message(app.columns[1]) == ""
    assert missing.done_reason == "error" and broken.done_reason == "error"
    assert app.chart.value.count("<rect") >= 3  # echo and broken's partial answer are charted
    app.columns[0].flags.value = "--chat"
    app.run()
    assert message(app) == "Column 1: --chat: a comparison sends single prompts, not conversations"
    # a refused run leaves nothing of the last one under the columns
    assert app.chart.value == "" and app.results == [None, None, None]
    assert all(c.output.outputs == () and c.message.value == "" for c in app.columns)


def test_compare_columns_waiting_their_turn_say_so(ollama) -> None:
    app = Compare(["slow --num-predict 400", "echo", "echo --seed 1"], ollama.url, prompt="Go.")
    app.one_at_a_time.value = True
    app.run()
    assert message(app.columns[0]) == ""
    assert message(app.columns[1]) == "waiting for column 1…"
    assert message(app.columns[2]) == "waiting for column 2…"
    until(lambda: shown(app.columns[0].output))
    app.stop()
    app.wait(5)
    assert message(app.columns[1]) == "Not run: stopped before its turn."


def test_pickers_say_what_models_can_do_and_think_follows(ollama) -> None:
    pg = Playground("thinker", ollama.url, prompt="Hi")
    labels = dict((value, label) for label, value in pg.model_picker.options)
    assert labels["thinker"] == "thinker · thinks" and labels["echo"] == "echo · sees images"
    assert "high" in [v for _, v in pg.think.options] and not pg.think.disabled
    pg.think.value = "high"
    pg.set(model="echo")  # cannot think: only its default
    assert [v for _, v in pg.think.options] == [""] and pg.think.disabled
    assert "think" not in pg.body()
    pg.set(model="thinker")
    assert pg.think.value == "high"  # the choice comes back with a model that takes it
    cmp = Compare(["thinker", "echo"], ollama.url)
    assert ("thinker · thinks", "thinker") in cmp.columns[0].model_picker.options


def test_playground_speaks_of_its_own_controls(ollama) -> None:
    pg = Playground("lorem", ollama.url, prompt="Go on.", num_predict=5)
    pg.generate()
    pg.wait(10)
    footer = shown(pg.output)[-1]
    assert "raise max tokens (num_predict) under Options" in footer and "--num" not in footer
    pg.set(model="nosuch-thinker")  # a model the server does not describe: every choice
    pg.set(model="echo")
    pg.think.options = logic.THINK_CHOICES  # as if the server did not say it cannot think
    pg.think.value = "true"
    pg.generate()
    pg.wait(10)
    assert "Set Think to 'model default'" in message(pg) and "--think" not in message(pg)


def test_unsent_options_are_visibly_off(ollama) -> None:
    pg = Playground("echo", ollama.url, temperature=0.3)
    on, off = pg.controls["temperature"], pg.controls["top_p"]
    assert not on.field.disabled and on.note.layout.display == "none"
    assert off.field.disabled and off.note.layout.display is None
    assert "model default" in off.note.value
    off.check.value = True
    assert not off.field.disabled and off.note.layout.display == "none"
    assert pg.keep_alive.placeholder.startswith("model default")


def test_open_apps_share_the_model_list(own: OllamaServer, manager) -> None:
    pg = Playground(None, own.url)
    cmp = Compare(None, own.url)
    try:
        assert "haiku" not in names(pg.model_picker)
        manager.pull("haiku")
        manager.wait()
        assert "haiku" in names(pg.model_picker)  # no refresh clicked
        assert "haiku" in names(cmp.columns[0].model_picker)
        manager.model_picker.value = "haiku"
        manager.delete()
        manager.confirm_delete()
        assert "haiku" not in names(pg.model_picker)
    finally:
        pg.close()
        cmp.close()


def test_compare_stop_keeps_partial_answers(ollama) -> None:
    app = Compare(["slow --num-predict 400", "slow --num-predict 400 --seed 1"], ollama.url)
    app.prompt.value = "Go."
    app.run()
    until(lambda: all(shown(c.output) for c in app.columns))
    app.stop_button.click()
    results = app.wait(5)
    assert all(r.done_reason == "interrupted" and r.answer for r in results)
    assert message(app) == ""  # a stop is no failure: each footer says it, once
    assert app.chart.value.count("<rect") >= 2


# -- %ollama ui ------------------------------------------------------------------------------


def test_ui_command_opens_the_apps(kernel: Kernel) -> None:
    assert kernel.value("__import__('sys').modules.get('ipywidgets') is None")  # not at load
    run = kernel.run("%ollama ui -m reasoner -o pg")
    assert run.ok, run.error
    (result,) = run.of_type("execute_result")
    assert "application/vnd.jupyter.widget-view+json" in result["content"]["data"]
    assert kernel.value("(type(pg).__name__, pg.model_picker.value)") == ("Playground", "reasoner")
    run = kernel.run("cmp = %ollama ui compare -m echo -m 'thinker --think low'")
    assert run.ok, run.error
    assert kernel.value("[c.label for c in cmp.columns]") == ["echo", "thinker --think low"]
    run = kernel.run("mm = %ollama ui models\nmm.close(); type(mm).__name__")
    assert run.ok, run.error
    text = error_line(kernel.run("%ollama ui nope"))
    assert text.startswith("%ollama ui: argument APP: invalid choice: 'nope'")
    run = kernel.run("%ollama help ui")
    usage = "usage: %ollama ui [-h] [-m NAME] [-o NAME] [--host URL] [--timeout SECONDS]"
    assert usage in run.stdout


def test_ui_without_ipywidgets_is_one_line(kernel: Kernel) -> None:
    code = (
        "import sys\nsaved = sys.modules.get('ipywidgets')\nsys.modules['ipywidgets'] = None\n"
        "try:\n    get_ipython().run_line_magic('ollama', 'ui')\n"
        "finally:\n    sys.modules['ipywidgets'] = saved"
    )
    run = kernel.run(code)
    assert run.ok, run.error
    assert run.stdout == "The apps need ipywidgets: pip install 'ollama-magic[widgets]'\n"


def test_ui_in_a_terminal_says_where_apps_work(ollama) -> None:
    done = run_ipython("%ollama ui", ollama.url)
    assert done.returncode == 0, done.stderr
    assert "The apps are widgets: open them in a notebook" in done.stdout


def test_generating_again_and_closing_leave_no_widget_models_open(ollama) -> None:
    """Each finished answer replaces the live slots, and a closed app takes all its models
    (layouts and styles too) with it: none may pile up in the kernel and the front end."""
    from ipywidgets.widgets.widget import _instances

    at_start = set(_instances)
    pg = Playground("reasoner", ollama.url, prompt="hi", options={"scripted_delay": 0})
    pg.generate()
    pg.wait(10)
    after_one = len(_instances)
    for _ in range(5):
        pg.generate()
        pg.wait(10)
    assert len(_instances) == after_one
    pg.close()
    ModelManager(ollama.url, live=False).close()
    Compare(["reasoner", "thinker"], ollama.url).close()
    assert set(_instances) - at_start == set()


def test_apps_repr_short_and_stable(ollama) -> None:
    """A notebook saves this text for the app: no widget tree, no URL with its port."""
    pg = Playground("reasoner", ollama.url)
    assert repr(pg) == "Playground(model='reasoner')"
    assert repr(Compare(["reasoner", "thinker --think low"], ollama.url)) == (
        "Compare(['reasoner', 'thinker --think low'])"
    )
    mm = ModelManager(ollama.url, live=False)
    assert repr(mm) == "ModelManager()"
    mm.close()


def weather(city: str) -> str:
    """The weather in a city.

    Args:
        city: The city's name.
    """
    return f"Sunny in {city}"


weather.__module__ = "__main__"  # as if defined in a notebook cell


def test_playground_ticks_functions_as_tools() -> None:
    import requests

    with OllamaServer(pull_speed=1e12) as server:
        requests.post(server.url + "/api/pull", json={"model": "agent", "stream": False}).close()
        namespace: dict[str, Any] = {"weather": weather, "requests": requests, "n": 3}
        pg = Playground("agent", server.url, namespace=namespace, prompt="Use weather city=Oslo")
        assert list(pg.tool_boxes) == ["weather"]  # not modules, not imported functions
        pg.generate_button.click()  # nothing ticked: a plain generate
        pg.wait(10)
        assert [r.path for r in server.requests][-1] == "/api/generate"
        pg.tick("weather")
        pg.generate_button.click()
        result = pg.wait(10)
        assert [c.status for c in result.tool_calls] == ["ok"]
        assert result.answer == "Here is what the tools said:\n\n- **weather**: Sunny in Oslo"
        chats = bodies(server, "/api/chat")
        assert [t["function"]["name"] for t in chats[0]["tools"]] == ["weather"]
        assert chats[1]["messages"][-1]["content"] == "Sunny in Oslo"
        final = shown(pg.output)
        assert len(final) == 1 and final[0].index("ollama-tool-call") < final[0].index("Here is")
        namespace["later"] = weather  # defined after the app opened: the ↻ button lists it
        pg.refresh_button.click()
        assert list(pg.tool_boxes) == ["later", "weather"] and pg.tool_boxes["weather"].value
        with pytest.raises(ValueError, match="no function 'nope'"):
            pg.tick("nope")
        pg.model_picker.value = "echo"  # a model without tools: one line, in the app's words
        pg.generate_button.click()
        pg.wait(10)
        assert "Untick the Tools, or use a model that has it: agent:latest." in message(pg)
        pg.close()
