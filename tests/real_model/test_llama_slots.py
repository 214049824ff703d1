"""Parallel slots, loading and bad GGUF files, through the package's HTTP server on SmolLM2."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from ollama_magic.server import OllamaServer
from ollama_magic.server.llama import DEFAULT_MODEL, LlamaEngine

pytestmark = pytest.mark.real_model

PROMPT = "Write a long paragraph about the sea."
OTHER = "Tell me a story about a dragon and a knight in a castle."


@pytest.fixture(scope="module")
def two_slots(gguf_path: Path) -> Iterator[tuple[str, LlamaEngine]]:
    engine = LlamaEngine({DEFAULT_MODEL: gguf_path}, think_demo=None, parallel=2)
    with OllamaServer(engines=[engine]) as server:
        yield server.url, engine


def generate(url: str, prompt: str, **options: Any) -> dict[str, Any]:
    body = {
        "model": DEFAULT_MODEL,
        "prompt": prompt,
        "stream": False,
        "options": {"temperature": 0, "num_predict": 24, "num_ctx": 1024} | options,
    }
    reply = requests.post(f"{url}/api/generate", json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    return reply.json()


def streamed_times(url: str, prompt: str, times: list[float], **options: Any) -> str:
    """The streamed answer; appends the arrival time of each chunk to ``times``."""
    body = {
        "model": DEFAULT_MODEL,
        "prompt": prompt,
        "options": {"temperature": 0, "num_predict": 40, "num_ctx": 1024} | options,
    }
    pieces = []
    with requests.post(f"{url}/api/generate", json=body, stream=True, timeout=120) as reply:
        for line in reply.iter_lines():
            times.append(time.monotonic())
            pieces.append(json.loads(line).get("response", ""))
    return "".join(pieces)


def test_two_requests_run_at_once_and_ps_shows_one_model(two_slots):
    url, engine = two_slots
    first: list[float] = []
    second: list[float] = []
    other = threading.Thread(target=streamed_times, args=(url, OTHER, second))
    other.start()
    streamed_times(url, PROMPT, first)
    other.join(timeout=60)
    assert first and second
    assert first[0] < second[-1] and second[0] < first[-1]  # the streams overlapped
    (model,) = requests.get(f"{url}/api/ps", timeout=5).json()["models"]
    assert model["name"] == DEFAULT_MODEL
    assert model["context_length"] == 1024  # per slot, as Ollama shows it
    runner = next(iter(engine._runners.values()))
    assert [slot["n_ctx"] for slot in runner.call("GET", "/slots")] == [1024, 1024]


def test_an_answer_is_the_same_alone_again_and_beside_another(two_slots):
    url, _ = two_slots
    greedy = generate(url, PROMPT)["response"]
    sampled_options = {"temperature": 1.0, "seed": 1234, "top_k": 100, "top_p": 1.0}
    sampled = generate(url, PROMPT, **sampled_options)["response"]
    assert generate(url, PROMPT)["response"] == greedy  # from the prompt cache this time
    assert generate(url, PROMPT, **sampled_options)["response"] == sampled
    for delay in (0.05, 0.3):  # the other slot busy with its prompt, then decoding
        busy = threading.Thread(target=generate, args=(url, OTHER), kwargs={"num_predict": 120})
        busy.start()
        time.sleep(delay)
        assert generate(url, PROMPT)["response"] == greedy
        assert generate(url, PROMPT, **sampled_options)["response"] == sampled
        busy.join(timeout=60)


def test_a_request_during_the_load_waits_for_it(gguf_path: Path):
    engine = LlamaEngine({DEFAULT_MODEL: gguf_path}, think_demo=None)
    with OllamaServer(engines=[engine]) as server:
        answers: list[dict[str, Any]] = []
        threads = [
            threading.Thread(target=lambda: answers.append(generate(server.url, PROMPT)))
            for _ in range(2)
        ]
        for thread in threads:
            thread.start()
            time.sleep(0.05)  # the second arrives while the first loads the model
        for thread in threads:
            thread.join(timeout=60)
        assert len(answers) == 2
        assert answers[0]["response"] == answers[1]["response"]
        assert engine.loaded() == [DEFAULT_MODEL]


def test_a_gguf_that_cannot_load_is_one_line(
    gguf_path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    broken = tmp_path / "half.gguf"
    with gguf_path.open("rb") as source:
        broken.write_bytes(source.read(gguf_path.stat().st_size // 2))  # the header reads fine
    engine = LlamaEngine({"half:latest": broken}, think_demo=None)
    with OllamaServer(engines=[engine]) as server, caplog.at_level(logging.ERROR):
        body = {"model": "half", "prompt": "Hi", "stream": False}
        reply = requests.post(f"{server.url}/api/generate", json=body, timeout=60)
        streamed = requests.post(f"{server.url}/api/generate", json=body | {"stream": True})
    assert reply.status_code == 500 and streamed.status_code == 500
    message = reply.json()["error"]
    assert "\n" not in message and str(broken) in message
    assert "not within the file bounds" in message, message
    assert streamed.json()["error"] == message
    assert not [record for record in caplog.records if record.exc_info]  # no traceback
    assert engine.loaded() == []
