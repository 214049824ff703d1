"""Behaviour that changed between Ollama 0.12 and 0.32/0.33 (``ollama-api.md`` §2.9–2.12, §4):
chat history dropping, context length defaults, keep_alive left alone, logprobs, embed limits,
the deprecated /api/embeddings and refused pushes."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import requests

from ollama_magic.server import OllamaServer, ScriptedEngine
from ollama_magic.server.context import default_num_ctx, fit_conversation
from ollama_magic.server.scheduler import default_keep_alive

from .helpers import exchange, ndjson, post, seconds_from_now


def chat(server: OllamaServer, messages: list[dict[str, Any]], **body: Any) -> dict[str, Any]:
    body = {"model": "echo", "messages": messages, "stream": False, **body}
    reply = post(server, "/api/chat", body)
    assert reply.status_code == 200, reply.text
    return reply.json()


def ps(server: OllamaServer) -> list[dict[str, Any]]:
    return requests.get(server.url + "/api/ps", timeout=5).json()["models"]


# -- chat history --------------------------------------------------------------------------


def test_fit_conversation_drops_the_oldest_and_brings_system_messages_back() -> None:
    messages = (
        {"role": "system", "content": "S"},
        {"role": "user", "content": "aaaa"},
        {"role": "assistant", "content": "bbbb"},
        {"role": "system", "content": "T"},
        {"role": "user", "content": "cc"},
    )

    def encode(kept: tuple[dict[str, Any], ...]) -> list[int]:
        return [0] * sum(len(m["content"]) for m in kept)

    ids, kept = fit_conversation(messages, encode, 5)
    assert [m["content"] for m in kept] == ["S", "T", "cc"]  # system messages stay in order
    assert len(ids) == 4
    _, kept = fit_conversation(messages, encode, 1)
    assert [m["content"] for m in kept] == ["S", "T", "cc"]  # the last message always stays
    _, kept = fit_conversation(messages, encode, 100)
    assert kept == messages


def test_a_long_chat_loses_its_oldest_turns_but_not_the_system_prompt(srv: OllamaServer) -> None:
    old = " ".join(f"old{i}" for i in range(2500))
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": old},
        {"role": "assistant", "content": "noted"},
        {"role": "user", "content": "newest question"},
    ]
    text = chat(srv, messages, options={"num_ctx": 2048})["message"]["content"]
    # one message at a time from the oldest: the long one goes, the reply after it fits
    assert text == (
        "Echo: <|system|>Be brief.\n<|user|>\n<|assistant|>noted\n<|user|>newest question\n"
        "<|assistant|>"
    )
    refused = post(srv, "/api/chat", {"model": "echo", "messages": messages, "truncate": False})
    assert refused.status_code == 200  # 4096 tokens: it fits without dropping anything


# -- context length ------------------------------------------------------------------------


def test_context_length_defaults_to_4096_and_ps_shows_it(fresh: OllamaServer) -> None:
    assert post(fresh, "/api/generate", {"model": "thinker"}).status_code == 200
    assert ps(fresh)[0]["context_length"] == 4096


def test_context_length_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_CONTEXT_LENGTH", "8192")
    assert default_num_ctx() == 8192
    assert default_num_ctx("junk") == default_num_ctx("0") == 4096
    with OllamaServer() as server:
        post(server, "/api/generate", {"model": "thinker"})
        assert ps(server)[0]["context_length"] == 8192
        # capped at the model's trained length (32768 for the scripted models)
        post(server, "/api/generate", {"model": "thinker", "options": {"num_ctx": 100000}})
        assert ps(server)[0]["context_length"] == 32768
    with OllamaServer(context_length=16384) as server:
        post(server, "/api/generate", {"model": "thinker"})
        assert ps(server)[0]["context_length"] == 16384


# -- keep_alive ----------------------------------------------------------------------------


def test_a_request_without_keep_alive_keeps_the_models_value(fresh: OllamaServer) -> None:
    assert post(fresh, "/api/generate", {"model": "thinker", "keep_alive": -1}).status_code == 200
    assert seconds_from_now(ps(fresh)[0]["expires_at"]) > 200 * 365 * 86400  # forever
    ndjson(post(fresh, "/api/generate", {"model": "thinker", "prompt": "hi"}))
    assert fresh.requests[-1].finished.wait(2)
    assert seconds_from_now(ps(fresh)[0]["expires_at"]) > 200 * 365 * 86400  # still forever
    post(fresh, "/api/generate", {"model": "thinker", "keep_alive": "1m"})
    assert 50 < seconds_from_now(ps(fresh)[0]["expires_at"]) <= 60
    # a reload for another num_ctx is a fresh load: the default (5 minutes) again
    post(fresh, "/api/generate", {"model": "thinker", "options": {"num_ctx": 8192}})
    assert 290 < seconds_from_now(ps(fresh)[0]["expires_at"]) <= 300


def test_ollama_keep_alive_sets_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_keep_alive("30") == 30 * 10**9
    assert default_keep_alive("2m") == 120 * 10**9
    assert default_keep_alive("-1") == default_keep_alive("-1s") == (1 << 63) - 1
    assert default_keep_alive("nonsense") == 300 * 10**9
    monkeypatch.setenv("OLLAMA_KEEP_ALIVE", "10m")
    with OllamaServer() as server:
        post(server, "/api/generate", {"model": "thinker"})
        assert 590 < seconds_from_now(ps(server)[0]["expires_at"]) <= 600


def test_a_different_shift_reloads(fresh: OllamaServer, engine: ScriptedEngine) -> None:
    post(fresh, "/api/generate", {"model": "thinker"})
    post(fresh, "/api/generate", {"model": "thinker", "shift": True})
    assert engine.calls == [("load", "thinker:latest")]
    post(fresh, "/api/generate", {"model": "thinker", "shift": False})
    assert engine.calls[1:] == [("unload", "thinker:latest"), ("load", "thinker:latest")]


# -- logprobs --------------------------------------------------------------------------------


def test_logprobs_per_chunk_after_done(srv: OllamaServer) -> None:
    body = {"model": "echo", "prompt": "hi", "logprobs": True, "top_logprobs": 3}
    reply = exchange(srv, "POST", "/api/generate", body)
    lines = reply.body.split(b"\n")
    assert b'"done":false,"logprobs":[{"token":"Echo","logprob":' in lines[0]
    chunks = [json.loads(line) for line in lines if line]
    for chunk in chunks[:-1]:
        [entry] = chunk["logprobs"]
        assert list(entry) == ["token", "logprob", "bytes", "top_logprobs"]
        assert entry["token"] == chunk["response"]
        assert entry["bytes"] == list(entry["token"].encode())
        assert len(entry["top_logprobs"]) == 3
        assert entry["top_logprobs"][0] == {k: entry[k] for k in ("token", "logprob", "bytes")}
        values = [alt["logprob"] for alt in entry["top_logprobs"]]
        assert values == sorted(values, reverse=True) and all(v < 0 for v in values)
    assert "logprobs" not in chunks[-1]  # the done chunk of a /completion path has none
    again = ndjson(post(srv, "/api/generate", body))
    assert [c.get("logprobs") for c in again] == [c.get("logprobs") for c in chunks]  # stable


def test_logprobs_without_top_and_not_unless_asked(srv: OllamaServer) -> None:
    lines = ndjson(post(srv, "/api/generate", {"model": "echo", "prompt": "hi", "logprobs": True}))
    assert list(lines[0]["logprobs"][0]) == ["token", "logprob", "bytes"]
    only_top = {"model": "echo", "prompt": "hi", "top_logprobs": 5}
    assert all("logprobs" not in line for line in ndjson(post(srv, "/api/generate", only_top)))


def test_non_streamed_logprobs_are_concatenated(srv: OllamaServer) -> None:
    body = {"model": "echo", "prompt": "hi", "logprobs": True, "stream": False}
    reply = post(srv, "/api/generate", body).json()
    assert "".join(entry["token"] for entry in reply["logprobs"]) == reply["response"]
    assert list(reply)[-1] == "logprobs"  # generate: after the metrics
    messages = [{"role": "user", "content": "hi"}]
    answer = chat(srv, messages, model="thinker", logprobs=True, top_logprobs=1)
    keys = list(answer)
    assert keys.index("logprobs") == keys.index("done_reason") + 1  # chat: before the metrics
    tokens = "".join(entry["token"] for entry in answer["logprobs"])
    assert tokens == answer["message"]["thinking"] + answer["message"]["content"]


def test_chat_chunks_carry_logprobs_beside_the_message(srv: OllamaServer) -> None:
    body = {"model": "thinker", "messages": [{"role": "user", "content": "x"}], "logprobs": True}
    reply = exchange(srv, "POST", "/api/chat", body)
    first = reply.body.split(b"\n")[0]
    assert b'"done":false,"logprobs":[' in first and b'"message":{"role":"assistant"' in first


# -- embeddings ----------------------------------------------------------------------------


def test_embed_cuts_an_over_long_input_or_refuses_it(emb: OllamaServer) -> None:
    text = " ".join(f"w{i}" for i in range(40))
    body = {"model": "embedder", "input": text, "options": {"num_ctx": 8}}
    assert post(emb, "/api/embed", body).json()["prompt_eval_count"] == 8
    body = {"model": "embedder", "input": [text], "options": {"num_ctx": 8}, "truncate": False}
    refused = post(emb, "/api/embed", body)
    assert (refused.status_code, refused.json()) == (
        400,
        {"error": "the input length exceeds the context length"},
    )


def test_the_deprecated_embeddings_endpoint(emb: OllamaServer) -> None:
    reply = post(emb, "/api/embeddings", {"model": "embedder", "prompt": "The sky is blue"})
    vector = reply.json()["embedding"]
    assert list(reply.json()) == ["embedding"] and len(vector) == 64
    assert abs(sum(x * x for x in vector) - 1) < 1e-6
    assert post(emb, "/api/embeddings", {"model": "embedder"}).json() == {"embedding": []}
    missing = post(emb, "/api/embeddings", {"prompt": "x"})
    assert (missing.status_code, missing.json()) == (400, {"error": "model is required"})
    unknown = post(emb, "/api/embeddings", {"model": "nope", "prompt": "x"})
    assert (unknown.status_code, unknown.json()) == (
        404,
        {"error": 'model "nope" not found, try pulling it first'},
    )


# -- push ----------------------------------------------------------------------------------


def test_a_push_to_a_namespace_without_credentials_is_refused(fresh: OllamaServer) -> None:
    fresh.pull_speed = 1e12
    post(fresh, "/api/copy", {"source": "echo", "destination": "someone/echo"})
    reply = exchange(fresh, "POST", "/api/push", {"model": "someone/echo"})
    assert reply.status == 200
    assert reply.body == (
        b'{"status":"retrieving manifest"}\n{"error":"unauthorized: access denied"}\n'
    )
    quiet = post(fresh, "/api/push", {"model": "someone/echo", "stream": False})
    assert (quiet.status_code, quiet.json()) == (500, {"error": "unauthorized: access denied"})
    library = exchange(fresh, "POST", "/api/push", {"model": "echo"})
    assert library.lines[-1] == {"error": "unauthorized: access denied"}
    # the user's own namespace, and other registries, take it
    post(fresh, "/api/copy", {"source": "echo", "destination": "me/echo"})
    assert ndjson(post(fresh, "/api/push", {"model": "me/echo"}))[-1] == {"status": "success"}
    post(fresh, "/api/copy", {"source": "echo", "destination": "localhost:5000/team/echo"})
    pushed = ndjson(post(fresh, "/api/push", {"model": "localhost:5000/team/echo"}))
    assert pushed[-1] == {"status": "success"}


def test_no_credentials_at_all() -> None:
    with OllamaServer(registry_namespaces=()) as server:
        server.pull_speed = 1e12
        post(server, "/api/copy", {"source": "echo", "destination": "me/echo"})
        lines = ndjson(post(server, "/api/push", {"model": "me/echo"}))
        assert lines[-1] == {"error": "unauthorized: access denied"}


# -- the neutral module --------------------------------------------------------------------


def test_common_imports_neither_the_server_nor_the_magic() -> None:
    code = (
        "import sys\n"
        "import ollama_magic.common.gotime, ollama_magic.common.names, "
        "ollama_magic.common.thinking, ollama_magic.common.stops, ollama_magic.common.goquote\n"
        "print(sorted(m for m in sys.modules if m.startswith('ollama_magic')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(eval(out.stdout))  # a printed list of module names
    assert loaded == {
        "ollama_magic",
        "ollama_magic.common",
        "ollama_magic.common.gotime",
        "ollama_magic.common.goquote",
        "ollama_magic.common.names",
        "ollama_magic.common.stops",
        "ollama_magic.common.thinking",
    }
