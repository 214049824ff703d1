"""Copies and created models of a real GGUF model: LlamaEngine runs the base, with the new
model's system prompt, messages, template and parameters. Skips without xllamacpp."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ollama_magic.server import OllamaServer, llama
from ollama_magic.server.llama import DEFAULT_MODEL, LlamaEngine

from .helpers import ndjson


def post(server: OllamaServer, path: str, body: dict) -> requests.Response:
    return requests.post(server.url + path, json=body, timeout=120)


pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def server() -> Iterator[OllamaServer]:
    if not llama.llama_available():
        pytest.skip("xllamacpp is not installed: pip install 'ollama-magic[llama]'")
    try:
        path: Path = llama.default_gguf_path()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    engine = LlamaEngine({DEFAULT_MODEL: path}, think_demo=None)
    with OllamaServer([engine], pull_speed=1e12) as started:
        yield started


def generate(server: OllamaServer, model: str, prompt: str, **body: object) -> dict:
    body = {"model": model, "prompt": prompt, "stream": False, **body}
    reply = post(server, "/api/generate", body)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_a_created_model_runs_on_its_base(server: OllamaServer) -> None:
    body = {
        "model": "smol-terse",
        "from": DEFAULT_MODEL,
        "system": "Answer with one word.",
        "parameters": {"num_predict": 3, "temperature": 0},
    }
    assert ndjson(post(server, "/api/create", body))[-1] == {"status": "success"}
    answer = generate(server, "smol-terse", "What color is the sky?")
    assert (answer["eval_count"], answer["done_reason"]) == (3, "length")
    # The same prompt as the base model given that system prompt in the request.
    options = {"num_predict": 1}
    same = generate(
        server, DEFAULT_MODEL, "What color is the sky?", system=body["system"], options=options
    )
    plain = generate(server, DEFAULT_MODEL, "What color is the sky?", options=options)
    assert answer["prompt_eval_count"] == same["prompt_eval_count"] != plain["prompt_eval_count"]
    ps = requests.get(server.url + "/api/ps", timeout=5).json()["models"]
    assert {m["name"] for m in ps} == {"smol-terse:latest", DEFAULT_MODEL}


def test_a_copy_chats_and_a_go_template_replaces_the_chat_template(server: OllamaServer) -> None:
    assert post(server, "/api/copy", {"source": DEFAULT_MODEL, "destination": "smol"}).ok
    chat = {
        "model": "smol",
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": False,
        "options": {"num_predict": 2},
    }
    reply = post(server, "/api/chat", chat)
    assert reply.status_code == 200 and reply.json()["eval_count"] == 2
    body = {"model": "smol-raw", "from": "smol", "template": "Q: {{ .Prompt }}\nA:"}
    assert ndjson(post(server, "/api/create", body))[-1] == {"status": "success"}
    own = generate(server, "smol-raw", "Hi", options={"num_predict": 1})
    chat_template = generate(server, "smol", "Hi", options={"num_predict": 1})
    assert own["prompt_eval_count"] < chat_template["prompt_eval_count"]
