"""/api/embed: Ollama's wire format and order of checks, with the scripted engine's vectors (from
``embedder``: since Ollama 0.30 the chat models refuse, tested at the end)."""

from __future__ import annotations

import math
import struct
from decimal import Decimal
from typing import Any

import pytest
import requests

from ollama_magic.server import OllamaServer, ScriptedEngine, tokenizer
from ollama_magic.server.engine import NO_EMBEDDINGS, ModelCard

from .helpers import ProtocolEngine, exchange, post, pull_embedder

EMBED_KEYS = ["model", "embeddings", "total_duration", "load_duration", "prompt_eval_count"]


def embed(server: OllamaServer, **body: Any) -> dict[str, Any]:
    reply = post(server, "/api/embed", body)
    assert reply.status_code == 200, reply.text
    assert reply.headers["Content-Type"] == "application/json; charset=utf-8"
    return reply.json()  # type: ignore[no-any-return]


def error(server: OllamaServer, body: Any) -> tuple[int, str]:
    reply = post(server, "/api/embed", body)
    return reply.status_code, reply.json()["error"]


def norm(vector: list[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


def test_one_string_gives_one_unit_vector_and_the_metrics(emb: OllamaServer) -> None:
    body = embed(emb, model="embedder", input="The sky is blue")
    assert list(body) == EMBED_KEYS
    assert body["model"] == "embedder"  # as sent, not embedder:latest
    (vector,) = body["embeddings"]
    assert len(vector) == 64
    assert norm(vector) == pytest.approx(1, abs=1e-6)
    assert body["prompt_eval_count"] == len(tokenizer.split("The sky is blue"))
    assert body["total_duration"] >= body["load_duration"] > 0


def test_an_array_gives_vectors_in_order_and_equal_texts_equal_vectors(emb: OllamaServer) -> None:
    texts = ["a cat", "stock markets", "a cat"]
    body = embed(emb, model="embedder", input=texts)
    first, second, again = body["embeddings"]
    assert first == again and first != second
    exact = ScriptedEngine().embed("embedder:latest", texts, {})
    assert body["embeddings"] == [pytest.approx(vector, rel=1e-6) for vector in exact]
    assert body["prompt_eval_count"] == sum(len(tokenizer.split(text)) for text in texts)


def single(value: float) -> bytes:
    return struct.pack("f", value)


def significant_digits(value: float) -> int:
    return len(Decimal(repr(value)).normalize().as_tuple().digits)


def test_values_are_written_as_float32(emb: OllamaServer) -> None:
    engine_values = ScriptedEngine().embed("embedder:latest", ["one two three"], {})[0]
    assert max(map(significant_digits, engine_values)) > 9  # float64 from the engine...
    values = embed(emb, model="embedder", input="one two three")["embeddings"][0]
    for value, exact in zip(values, engine_values, strict=True):
        assert significant_digits(value) <= 9  # ...written as Go writes a float32
        assert single(value) == single(exact)


def test_dimensions_cut_and_renormalise(emb: OllamaServer) -> None:
    (full,) = embed(emb, model="embedder", input="cut me short please")["embeddings"]
    (short,) = embed(emb, model="embedder", input="cut me short please", dimensions=8)["embeddings"]
    assert len(short) == 8 and norm(short) == pytest.approx(1, abs=1e-6)
    scale = norm(full[:8])
    assert short == pytest.approx([x / scale for x in full[:8]], abs=1e-6)
    (same,) = embed(emb, model="embedder", input="cut me short please", dimensions=100)[
        "embeddings"
    ]
    assert same == full


@pytest.mark.parametrize("empty", [{"input": ""}, {"input": []}, {}, {"input": None}])
def test_empty_input_only_loads(fresh: OllamaServer, engine: ScriptedEngine, empty: dict) -> None:
    reply = exchange(fresh, "POST", "/api/embed", {"model": "echo", **empty})
    assert reply.status == 200
    assert reply.body == b'{"model":"echo","embeddings":[]}'
    assert engine.calls == [("load", "echo:latest")]
    (loaded,) = requests.get(fresh.url + "/api/ps", timeout=10).json()["models"]
    assert loaded["name"] == "echo:latest"


def test_keep_alive_zero_unloads_after_embedding(fresh: OllamaServer, engine: ScriptedEngine):
    pull_embedder(fresh)
    embed(fresh, model="embedder", input="x", keep_alive=0)
    assert fresh.requests[-1].finished.wait(5)  # the unload follows the reply
    assert engine.calls == [("load", "embedder:latest"), ("unload", "embedder:latest")]


@pytest.mark.parametrize("bad", [5, 1.5, True, {"text": "x"}, ["a", 1], ["a", None], [["a"]]])
def test_other_input_types_are_a_400_checked_before_the_model(srv: OllamaServer, bad: Any):
    assert error(srv, {"model": "echo", "input": bad}) == (400, "invalid input type")
    assert error(srv, {"model": "nope", "input": bad}) == (400, "invalid input type")


def test_model_errors_follow_ollama(srv: OllamaServer) -> None:
    assert error(srv, {"model": "nope", "input": "x"}) == (
        404,
        'model "nope" not found, try pulling it first',
    )
    assert error(srv, {"input": "x"}) == (404, "model '' not found")
    assert error(srv, b"") == (400, "missing request body")
    assert error(srv, {"model": 7}) == (
        400,
        "json: cannot unmarshal number into Go struct field EmbedRequest.model of type string",
    )
    assert error(srv, {"model": "echo", "input": "x", "options": {"num_ctx": "big"}}) == (
        500,
        'option "num_ctx" must be of type integer',
    )


def test_only_post_is_routed(srv: OllamaServer) -> None:
    reply = exchange(srv, "GET", "/api/embed")
    assert (reply.status, reply.body) == (405, b"405 method not allowed")


class _EmbeddingModels(ProtocolEngine):
    """The protocol engine with ``embedder`` installed too (no ``library`` to pull it from)."""

    def models(self) -> list[ModelCard]:
        return self.inner.models() + [
            c for c in self.inner.library() if c.name == "embedder:latest"
        ]


class _FailingEmbeddings(_EmbeddingModels):
    def embed(self, name: str, inputs: list[str], options: dict[str, Any]) -> list[list[float]]:
        raise RuntimeError("this engine has no embeddings")


def test_an_engine_failure_is_a_500() -> None:
    with OllamaServer([_FailingEmbeddings()]) as server:
        assert error(server, {"model": "embedder", "input": "x"}) == (
            500,
            "this engine has no embeddings",
        )


def test_an_engine_that_does_not_count_tokens_leaves_the_count_out() -> None:
    with OllamaServer([_EmbeddingModels()]) as server:  # embed, but no embed_with_count
        body = embed(server, model="embedder", input="x y")
    assert list(body) == ["model", "embeddings", "total_duration", "load_duration"]
    (exact,) = ScriptedEngine().embed("embedder:latest", ["x y"], {})
    assert body["embeddings"] == [pytest.approx(exact, rel=1e-6)]


# -- chat models on Ollama 0.30+ (llama-server without --embeddings) ---------------------------

LLAMA_501 = "This server does not support embeddings. Start it with `--embeddings`"


def test_the_text_is_llama_servers() -> None:
    assert NO_EMBEDDINGS == LLAMA_501  # llama.cpp's tools/server, as Ollama passes it on


def as_llama_server(version: str = "0.32.15") -> OllamaServer:
    """A server of its own playing Ollama ``version`` (its chat models run, since 0.30, in a
    llama-server without ``--embeddings``)."""
    return OllamaServer([ScriptedEngine()], version=version, pull_speed=1e12)


def test_a_chat_model_is_loaded_then_refused_with_llama_servers_501() -> None:
    with as_llama_server() as server:
        reply = exchange(server, "POST", "/api/embed", {"model": "echo", "input": ["a", "b"]})
        assert reply.status == 501
        assert reply.headers["content-type"] == "application/json; charset=utf-8"
        assert reply.body == b'{"error":"' + LLAMA_501.encode() + b'"}'  # no newline
        engine = server.engines[0]
        assert isinstance(engine, ScriptedEngine)
        assert engine.calls == [("load", "echo:latest")]  # Ollama loads it before asking
        (loaded,) = requests.get(server.url + "/api/ps", timeout=10).json()["models"]
        assert loaded["name"] == "echo:latest"
        # empty input only loads, as before: no runner is asked for vectors
        assert embed(server, model="echo", input=[]) == {"model": "echo", "embeddings": []}


def test_the_deprecated_endpoint_gives_the_same_text_as_a_500() -> None:
    with as_llama_server() as server:
        reply = post(server, "/api/embeddings", {"model": "echo", "prompt": "The sky is blue"})
        assert (reply.status_code, reply.json()) == (500, {"error": LLAMA_501})
        assert post(server, "/api/embeddings", {"model": "echo"}).json() == {"embedding": []}


def test_the_openai_route_passes_the_501_on() -> None:
    with as_llama_server() as server:
        reply = post(server, "/v1/embeddings", {"model": "echo", "input": "hi"})
    assert reply.status_code == 501
    assert reply.json()["error"]["message"] == LLAMA_501


def test_an_embedding_model_still_gives_vectors() -> None:
    with as_llama_server() as server:
        pulled = post(server, "/api/pull", {"model": "embedder", "stream": False})
        assert pulled.json() == {"status": "success"}
        (vector,) = embed(server, model="embedder", input="The sky is blue")["embeddings"]
        assert len(vector) == 64 and norm(vector) == pytest.approx(1.0, abs=1e-6)
        legacy_reply = post(server, "/api/embeddings", {"model": "embedder", "prompt": "x"})
        assert len(legacy_reply.json()["embedding"]) == 64


@pytest.mark.parametrize(
    ("version", "refused"),
    [("0.12.6", False), ("0.29.9", False), ("0.30.0", True), ("0.33.0-rc2", True)],
)
def test_before_ollama_0_30_chat_models_gave_vectors(version: str, refused: bool) -> None:
    with as_llama_server(version) as server:
        reply = post(server, "/api/embed", {"model": "echo", "input": "The sky is blue"})
        legacy_reply = post(server, "/api/embeddings", {"model": "echo", "prompt": "x"})
    if refused:
        assert (reply.status_code, legacy_reply.status_code) == (501, 500)
    else:
        assert reply.status_code == 200 and len(reply.json()["embeddings"][0]) == 64
        assert legacy_reply.status_code == 200 and len(legacy_reply.json()["embedding"]) == 64


def test_the_default_server_refuses_chat_models_and_the_legacy_one_embeds_them(
    srv: OllamaServer, legacy: OllamaServer
) -> None:
    """``OllamaServer()`` plays Ollama 0.32 without a flag to set: ``echo`` refuses as a chat
    model does there; ``OllamaServer(version="0.12.6")`` gives its vectors as Ollama 0.12 did."""
    assert srv.completion_models_embed is False and legacy.completion_models_embed is True
    current = [
        post(srv, "/api/embed", {"model": "echo", "input": "The sky is blue"}),
        post(srv, "/api/embeddings", {"model": "echo", "prompt": "The sky is blue"}),
        post(srv, "/v1/embeddings", {"model": "echo", "input": "The sky is blue"}),
    ]
    assert [(reply.status_code, reply.text) for reply in current[:2]] == [
        (501, '{"error":"' + LLAMA_501 + '"}'),
        (500, '{"error":"' + LLAMA_501 + '"}'),
    ]
    assert current[2].status_code == 501
    assert current[2].json()["error"]["message"] == LLAMA_501
    old = [
        post(legacy, "/api/embed", {"model": "echo", "input": "The sky is blue"}).json(),
        post(legacy, "/api/embeddings", {"model": "echo", "prompt": "The sky is blue"}).json(),
        post(legacy, "/v1/embeddings", {"model": "echo", "input": "The sky is blue"}).json(),
    ]
    (exact,) = ScriptedEngine().embed("echo:latest", ["The sky is blue"], {})
    assert old[0]["embeddings"] == [pytest.approx(exact, rel=1e-6)]
    assert old[1]["embedding"] == pytest.approx(exact, rel=1e-6)
    assert old[2]["data"][0]["embedding"] == pytest.approx(exact, rel=1e-6)
