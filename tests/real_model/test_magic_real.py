"""``%%ollama`` in a real kernel against SmolLM2 served by the package's server: what only a real
model shows. No model text is hard-coded; tests compare runs or check properties."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from ollama_magic.server import OllamaServer
from ollama_magic.server.llama import DEFAULT_MODEL, THINK_MODEL, LlamaEngine

from ..helpers import Kernel, magic_kernel

pytestmark = pytest.mark.real_model

M = f"{DEFAULT_MODEL} --temperature 0"


@pytest.fixture(scope="module")
def real(engine: LlamaEngine) -> Iterator[tuple[OllamaServer, Kernel]]:
    with OllamaServer(engines=[engine]) as server, magic_kernel(server.url) as kernel:
        yield server, kernel


def cell(kernel: Kernel, line: str, prompt: str = "Write a long story about the sea.") -> None:
    run = kernel.run(f"%%ollama {line}\n{prompt}", timeout=180)
    assert run.ok, (run.reply["content"], run.stdout)


def test_num_predict_stops_at_exactly_that_many_tokens(real) -> None:
    _, kernel = real
    for n in (1, 7, 19):
        cell(kernel, f"{M} --num-predict {n} -o r -q")
        assert kernel.value("(r.eval_count, r.done_reason)") == (n, "length")


def test_seed_repeats_and_another_seed_differs(real) -> None:
    _, kernel = real
    line = f"{DEFAULT_MODEL} --temperature 1.0 --num-predict 24 -q"
    cell(kernel, f"{line} --seed 42 -o a")
    cell(kernel, f"{line} --seed 42 -o b")
    cell(kernel, f"{line} --seed 7 -o c")
    assert kernel.value("a.answer == b.answer") is True
    assert kernel.value("a.answer != c.answer") is True


def test_stop_sequence_cuts_the_answer(real) -> None:
    _, kernel = real
    cell(kernel, f"{M} --num-predict 40 -o full -q")
    full = kernel.value("full.answer")
    words = full.split()
    stop = words[len(words) // 2]
    cell(kernel, f"{M} --num-predict 40 --stop {json.dumps(stop)} -o cut -q")
    cut = kernel.value("cut.answer")
    assert stop not in cut
    assert full.startswith(cut.rstrip()) and len(cut) < len(full)
    assert kernel.value("cut.done_reason") == "stop"


def test_json_format_gives_valid_json_and_schema_data(real) -> None:
    _, kernel = real
    cell(kernel, f"{M} --format json --num-predict 60 -o r -q", "Describe a cat as JSON.")
    answer = kernel.value("r.answer")
    if kernel.value("r.done_reason") == "stop":
        assert isinstance(json.loads(answer), dict)
    kernel.run(
        "from pydantic import BaseModel\n"
        "class Cat(BaseModel):\n    name: str\n    age: int\n"
    )
    cell(kernel, f"{M} --format Cat --num-predict 60 -o r -q", "A cat named Tom, age 3.")
    assert kernel.value("type(r.data).__name__") == "Cat"
    assert kernel.value("isinstance(r.data.age, int)") is True


def test_context_round_trip(real) -> None:
    server, kernel = real
    cell(kernel, f"{M} --num-predict 8 -o first -q", "My name is Ada.")
    context = kernel.value("first.context")
    assert len(context) > 8 and all(isinstance(t, int) for t in context)
    server.clear()
    cell(kernel, f"{M} --num-predict 8 -c -o second -q", "What is my name?")
    (body,) = [r.json for r in server.requests if r.path == "/api/generate"]
    assert body["context"] == context
    # the server really used it: the prompt now counts the earlier tokens too
    assert kernel.value("second.prompt_eval_count") > len(context)


def test_keep_alive_zero_unloads(real) -> None:
    server, kernel = real
    cell(kernel, f"{M} --num-predict 2 -k 10m -q")
    import requests

    names = [m["name"] for m in requests.get(server.url + "/api/ps", timeout=10).json()["models"]]
    assert DEFAULT_MODEL in names
    server.clear()
    cell(kernel, f"{M} --num-predict 2 -k 0 -q")
    (request,) = [r for r in server.requests if r.path == "/api/generate"]
    assert request.finished.wait(5)  # the server unloads right after the reply
    names = [m["name"] for m in requests.get(server.url + "/api/ps", timeout=10).json()["models"]]
    assert DEFAULT_MODEL not in names


def test_template_flag_changes_what_the_model_sees(real) -> None:
    _, kernel = real
    template = "<|im_start|>user\\n{{ .Prompt }}<|im_end|>\\n<|im_start|>assistant\\n"
    cell(kernel, f"{M} --num-predict 12 -o plain -q", "Say hello.")
    cell(kernel, f"{M} --num-predict 12 -o templ -q --template \"{template}\"", "Say hello.")
    # the default template adds a system prompt, the custom one does not: fewer prompt tokens
    assert kernel.value("templ.prompt_eval_count < plain.prompt_eval_count") is True


def test_reasoning_demo_model_streams_reasoning_then_answer(real) -> None:
    _, kernel = real
    run = kernel.run(f"%%ollama {THINK_MODEL} --temperature 0 --num-predict 120 -o r\nHi!",
                     timeout=180)
    assert run.ok, run.reply["content"]
    assert kernel.value("'<think>' not in r.response") is True  # it came in the thinking field
    assert kernel.value("len(r.thinking) > 0 and '<think>' not in r.answer") is True
    live = [m["content"]["data"].get("text/html", "")
            for m in run.of_type("update_display_data")]
    assert any("Thinking…" in text for text in live)
    assert "<details><summary>Thinking (" in run.final_html()


def test_chat_memory_with_a_real_model(real) -> None:
    """The second turn's request carries the first answer, and the model reads it: the prompt
    grows by at least the first turn's tokens, and the same question without memory differs."""
    server, kernel = real
    kernel.run("%ollama reset --all")
    server.clear()
    line = f"--chat {M} --num-predict 24 -q"
    cell(kernel, f"{line} -s 'You are terse.' -o first", "My name is Ana. Say hello.")
    cell(kernel, f"{line} -o second", "What is my name?")
    cell(kernel, f"{line} --conversation alone -s 'You are terse.' -o alone", "What is my name?")
    first = kernel.value("first.answer")
    bodies = [r.json for r in server.requests if r.path == "/api/chat"]
    assert bodies[1]["messages"][2] == {"role": "assistant", "content": first}
    assert kernel.value("second.prompt_eval_count") >= (
        kernel.value("first.prompt_eval_count") + kernel.value("first.eval_count")
    )
    assert kernel.value("second.answer != alone.answer") is True  # memory changed the answer


def test_created_model_carries_its_system_prompt(real) -> None:
    _, kernel = real
    run = kernel.run(
        f"%ollama create terse --from {DEFAULT_MODEL} -s 'Answer with one word.' "
        "-p temperature=0 -p num_predict=16"
    )
    assert run.ok, run.error
    try:
        cell(kernel, "terse -q -o made", "Name a colour.")
        same = f"{M} --num-predict 16 -s 'Answer with one word.' -q -o flag"
        cell(kernel, same, "Name a colour.")
        assert kernel.value("made.answer == flag.answer") is True
        assert kernel.value("made.eval_count <= 16") is True
    finally:
        kernel.run("%ollama rm terse")
