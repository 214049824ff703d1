"""SmolLM2 through the package's HTTP server: ``OllamaServer(engines=[LlamaEngine()])``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from ollama_magic.server import OllamaServer
from ollama_magic.server.engine import GenerateJob, ModelCard, Token
from ollama_magic.server.llama import DEFAULT_MODEL, EMBED_MODEL, THINK_MODEL, LlamaEngine

from .test_llama_engine import slots_idle_soon

pytestmark = pytest.mark.real_model

PROMPT = "Write a long paragraph about the sea."


@pytest.fixture(scope="module")
def url(engine: LlamaEngine) -> Iterator[str]:
    with OllamaServer(engines=[engine]) as server:
        yield server.url


def post(url: str, path: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{url}{path}", json=body, timeout=120)


def stream(url: str, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    with requests.post(f"{url}{path}", json=body, stream=True, timeout=120) as response:
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"] == "application/x-ndjson"
        return [json.loads(line) for line in response.iter_lines() if line]


def ps(url: str) -> dict[str, dict[str, Any]]:
    models = requests.get(f"{url}/api/ps", timeout=10).json()["models"]
    return {model["name"]: model for model in models}


def body(**fields: Any) -> dict[str, Any]:
    options = {"temperature": 0, "num_predict": 12} | fields.pop("options", {})
    return {"model": DEFAULT_MODEL, "prompt": PROMPT, "options": options} | fields


def test_tags_show_real_metadata(url: str, card: ModelCard, gguf_path: Path):
    models = {m["name"]: m for m in requests.get(f"{url}/api/tags", timeout=10).json()["models"]}
    assert set(models) == {DEFAULT_MODEL, THINK_MODEL, EMBED_MODEL}
    assert models[EMBED_MODEL]["capabilities"] == ["embedding"]
    tag = models[DEFAULT_MODEL]
    assert tag["size"] == gguf_path.stat().st_size
    assert tag["digest"] == card.digest
    assert tag["details"]["family"] == "llama"
    assert tag["details"]["format"] == "gguf"
    assert tag["details"]["parameter_size"] == "134.52M"
    assert tag["details"]["quantization_level"] == "Q4_1"
    assert (tag["details"]["context_length"], tag["details"]["embedding_length"]) == (8192, 576)
    assert tag["capabilities"] == ["completion"]


def test_show_lists_the_gguf_tensors(url: str):
    shown = post(url, "/api/show", {"model": DEFAULT_MODEL}).json()
    assert len(shown["tensors"]) == 272
    first = {"name": "token_embd.weight", "type": "Q8_0", "shape": [576, 49152]}
    assert shown["tensors"][0] == first
    assert "general.name" not in shown["model_info"]  # Ollama leaves it (and the template) out
    assert "tokenizer.chat_template" not in shown["model_info"]
    assert shown["model_info"]["llama.embedding_length"] == 576
    assert "<|im_start|>" in shown["template"]  # the GGUF's Jinja template (native path)


def test_logprobs_over_http(url: str):
    lines = stream(url, "/api/generate", body(logprobs=True, top_logprobs=3))
    entries = [entry for line in lines for entry in line.get("logprobs", [])]
    assert "logprobs" not in lines[-1]
    assert "".join(entry["token"] for entry in entries) == "".join(
        line["response"] for line in lines
    )
    for entry in entries:
        assert entry["logprob"] <= 0 and len(entry["top_logprobs"]) == 3
        assert entry["top_logprobs"][0]["logprob"] >= entry["top_logprobs"][-1]["logprob"]
    whole = post(
        url,
        "/api/chat",
        {
            "model": DEFAULT_MODEL,
            "messages": [{"role": "user", "content": "Hi"}],
            "options": {"temperature": 0, "num_predict": 5},
            "logprobs": True,
            "stream": False,
        },
    ).json()
    assert "".join(entry["token"] for entry in whole["logprobs"]) == whole["message"]["content"]


def test_an_over_long_prompt_is_cut_to_about_half_over_http(url: str):
    options = {"num_ctx": 512, "num_predict": 2}
    final = stream(url, "/api/generate", body(prompt="word " * 800, options=options))[-1]
    assert final["prompt_eval_count"] == 258  # 512 − (512 − 4) / 2, and nothing else says so
    long = body(prompt="word " * 800, options=options, truncate=False)
    refused = post(url, "/api/generate", long)
    assert refused.status_code == 400
    assert "exceed_context_size_error" in refused.json()["error"]


def test_show_gives_model_info_and_template(url: str, card: ModelCard):
    shown = post(url, "/api/show", {"model": DEFAULT_MODEL}).json()
    info = shown["model_info"]
    assert info["general.architecture"] == "llama"
    assert info["general.parameter_count"] == 134_515_008
    assert info["llama.context_length"] == 8192
    assert info["tokenizer.ggml.tokens"] == []
    assert shown["template"] == card.template and "<|im_start|>" in shown["template"]
    assert shown["capabilities"] == ["completion"]
    assert shown["license"] == "apache-2.0"
    think = post(url, "/api/show", {"model": THINK_MODEL}).json()
    assert "NOT a reasoning model" in think["model_info"]["ollama_magic.note"]
    assert "thinking" in think["capabilities"]


def test_generate_matches_the_engine(url: str, engine: LlamaEngine, card: ModelCard):
    job = GenerateJob(
        model=DEFAULT_MODEL, card=card, prompt=PROMPT, options={"temperature": 0, "num_predict": 12}
    )
    direct = "".join(e.response for e in engine.generate(job) if isinstance(e, Token))
    answer = post(url, "/api/generate", body(stream=False)).json()
    assert answer["response"] == direct
    assert answer["done"] is True and answer["done_reason"] == "length"
    assert answer["eval_count"] == 12
    assert len(answer["context"]) == answer["prompt_eval_count"] + 12
    assert answer["total_duration"] >= answer["eval_duration"] > 0


def test_streamed_generate_equals_the_whole_answer(url: str):
    whole = post(url, "/api/generate", body(stream=False)).json()
    chunks = stream(url, "/api/generate", body())
    *pieces, final = chunks
    assert len(pieces) >= 5
    assert all(chunk["done"] is False for chunk in pieces)
    assert "".join(chunk["response"] for chunk in pieces) == whole["response"]
    assert final["done"] is True and final["context"] == whole["context"]
    assert final["eval_count"] == whole["eval_count"] == 12


def test_context_round_trip_over_http(url: str):
    first = post(url, "/api/generate", body(prompt="My name is Ada.", stream=False)).json()
    again = post(
        url,
        "/api/generate",
        body(prompt="What is my name?", context=first["context"], stream=False),
    ).json()
    assert again["context"][: len(first["context"])] == first["context"]
    assert again["prompt_eval_count"] > len(first["context"])


def test_chat_streams_message_content(url: str):
    messages = [{"role": "user", "content": PROMPT}]
    chunks = stream(url, "/api/chat", body(messages=messages, prompt=None))
    *pieces, final = chunks
    content = "".join(chunk["message"]["content"] for chunk in pieces)
    generated = post(url, "/api/generate", body(stream=False)).json()["response"]
    assert content == generated  # one user message: the same prompt as generate
    assert final["done"] is True and "context" not in final


def test_think_over_http(url: str):
    chunks = stream(
        url,
        "/api/chat",
        {
            "model": THINK_MODEL,
            "messages": [{"role": "user", "content": "What is 2 + 2?"}],
            "think": True,
            "options": {"temperature": 0, "num_predict": 120},
        },
    )
    thinking = "".join(c["message"].get("thinking", "") for c in chunks)
    content = "".join(c["message"]["content"] for c in chunks)
    assert thinking and content
    assert "<think>" not in content
    first_content = next(i for i, c in enumerate(chunks) if c["message"]["content"])
    assert all(not c["message"].get("thinking") for c in chunks[first_content:])
    refused = post(url, "/api/generate", body(think=True))
    assert refused.status_code == 400
    assert "does not support thinking" in refused.json()["error"]


def test_format_schema_over_http(url: str):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
    }
    answer = post(
        url,
        "/api/generate",
        body(prompt="A big city.", format=schema, stream=False, options={"num_predict": 32}),
    ).json()
    value = json.loads(answer["response"])
    assert isinstance(value["city"], str) and type(value["population"]) is int


def test_keep_alive_zero_unloads(url: str, engine: LlamaEngine):
    post(url, "/api/generate", body(keep_alive="5m", options={"num_predict": 1, "num_ctx": 1024}))
    loaded = ps(url)
    assert loaded[DEFAULT_MODEL]["context_length"] == 1024
    assert loaded[DEFAULT_MODEL]["size"] > 90_000_000
    assert DEFAULT_MODEL in engine.loaded()
    unloaded = post(url, "/api/generate", {"model": DEFAULT_MODEL, "keep_alive": 0}).json()
    assert unloaded["done_reason"] == "unload"
    assert DEFAULT_MODEL not in ps(url)
    assert DEFAULT_MODEL not in engine.loaded()
    post(url, "/api/chat", {"model": THINK_MODEL, "keep_alive": 0})  # shares the GGUF
    assert ps(url) == {} and engine.loaded() == []
    assert engine._runners == {}  # llama-server is stopped
    post(url, "/api/generate", body(keep_alive=0, options={"num_predict": 1}))
    deadline = time.monotonic() + 5  # the unload follows the reply
    while DEFAULT_MODEL in ps(url) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert DEFAULT_MODEL not in ps(url) and engine.loaded() == []


def test_client_disconnect_stops_the_model(url: str, engine: LlamaEngine):
    post(url, "/api/generate", body(options={"num_predict": 1}))  # loaded
    runner = next(iter(engine._runners.values()))
    response = requests.post(
        f"{url}/api/generate", json=body(options={"num_predict": 2000}), stream=True, timeout=60
    )
    lines = response.iter_lines()
    for _ in range(3):
        assert json.loads(next(lines))["done"] is False
    assert runner.active == 1
    response.close()
    deadline = time.monotonic() + 3  # 2000 tokens would take ~30 s
    while runner.active and time.monotonic() < deadline:
        time.sleep(0.02)
    assert runner.active == 0
    assert slots_idle_soon(runner)
    quick = post(url, "/api/generate", body(stream=False, options={"num_predict": 2})).json()
    assert quick["eval_count"] == 2


def test_embed_over_http(url: str, engine: LlamaEngine):
    texts = ["a cat", "stock markets are volatile"]
    reply = post(url, "/api/embed", {"model": EMBED_MODEL, "input": texts})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert list(body) == [
        "model",
        "embeddings",
        "total_duration",
        "load_duration",
        "prompt_eval_count",
    ]
    vectors, count = engine.embed_with_count(DEFAULT_MODEL, texts, {})
    assert body["embeddings"] == [pytest.approx(vector, abs=1e-6) for vector in vectors]
    assert len(body["embeddings"][0]) == 576
    assert body["prompt_eval_count"] == count
    assert engine.embed_with_count(DEFAULT_MODEL, texts[:1], {})[1] < count
    cut = {"model": EMBED_MODEL, "input": "a cat", "dimensions": 64}
    (short,) = post(url, "/api/embed", cut).json()["embeddings"]
    assert len(short) == 64 and sum(x * x for x in short) == pytest.approx(1, abs=1e-5)
    empty = post(url, "/api/embed", {"model": THINK_MODEL, "input": []}).json()
    assert empty == {"model": THINK_MODEL, "embeddings": []}


def test_smollm2_cannot_call_tools(url: str, card: ModelCard) -> None:
    """Its Jinja template never mentions tools, so, as Ollama derives it, no ``tools``
    capability, and a chat with tools is refused before loading, with Ollama's full name."""
    assert "tools" not in (card.template or "") and "tool_call" not in (card.template or "")
    assert "tools" not in post(url, "/api/show", {"model": DEFAULT_MODEL}).json()["capabilities"]
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    messages = [{"role": "user", "content": "Call f."}]
    reply = post(url, "/api/chat", {"model": DEFAULT_MODEL, "messages": messages, "tools": [tool]})
    assert reply.status_code == 400
    full = f"registry.ollama.ai/library/{DEFAULT_MODEL}"
    assert reply.json() == {"error": f"{full} does not support tools"}


NO_EMBEDDINGS = "This server does not support embeddings. Start it with `--embeddings`"


def test_a_chat_model_gives_no_vectors_as_in_ollama_0_30(url: str):
    """llama-server without --embeddings: 501 on /api/embed, its text as a 500 on /api/embeddings
    (ollama-api.md §1.1); the model is loaded all the same."""
    for model in (DEFAULT_MODEL, THINK_MODEL):
        reply = post(url, "/api/embed", {"model": model, "input": "a cat"})
        assert (reply.status_code, reply.json()) == (501, {"error": NO_EMBEDDINGS})
        legacy = post(url, "/api/embeddings", {"model": model, "prompt": "a cat"})
        assert (legacy.status_code, legacy.json()) == (500, {"error": NO_EMBEDDINGS})
        assert model in ps(url)
    openai = post(url, "/v1/embeddings", {"model": DEFAULT_MODEL, "input": "a cat"})
    assert openai.status_code == 501 and openai.json()["error"]["message"] == NO_EMBEDDINGS


def test_before_ollama_0_30_the_chat_model_gave_vectors(engine: LlamaEngine):
    with OllamaServer(engines=[engine], version="0.12.6") as old:
        reply = post(old.url, "/api/embed", {"model": DEFAULT_MODEL, "input": "a cat"})
        legacy = post(old.url, "/api/embeddings", {"model": DEFAULT_MODEL, "prompt": "a cat"})
    (vector,) = reply.json()["embeddings"]
    (same,) = engine.embed(EMBED_MODEL, ["a cat"], {})  # the same weights and pooling
    assert vector == pytest.approx(same, abs=1e-6)
    assert legacy.json()["embedding"] == pytest.approx(same, abs=1e-6)


def test_the_embedding_model_embeds_and_refuses_to_generate(url: str):
    shown = post(url, "/api/show", {"model": EMBED_MODEL}).json()
    assert shown["capabilities"] == ["embedding"]
    assert shown["model_info"]["llama.pooling_type"] == 1
    assert "SmolLM2" in shown["model_info"]["ollama_magic.note"]
    generated = post(url, "/api/generate", {"model": EMBED_MODEL, "prompt": "Hi"})
    assert (generated.status_code, generated.json()) == (
        400,
        {"error": f'"{EMBED_MODEL}" does not support generate'},
    )
    chat = {"model": EMBED_MODEL, "messages": [{"role": "user", "content": "Hi"}]}
    chatted = post(url, "/api/chat", chat)
    assert (chatted.status_code, chatted.json()) == (
        400,
        {"error": f'"{EMBED_MODEL}" does not support chat'},
    )
    legacy = post(url, "/api/embeddings", {"model": EMBED_MODEL, "prompt": "a cat"}).json()
    assert len(legacy["embedding"]) == 576
    openai = post(url, "/v1/embeddings", {"model": EMBED_MODEL, "input": ["a", "b"]}).json()
    assert [len(item["embedding"]) for item in openai["data"]] == [576, 576]
    assert ps(url)[EMBED_MODEL]["details"]["family"] == "llama"
