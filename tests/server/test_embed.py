"""/api/embed: Ollama's wire format and order of checks, with the scripted engine's vectors."""

from __future__ import annotations

import math
import struct
from decimal import Decimal
from typing import Any

import pytest
import requests

from ollama_magic.server import OllamaServer, ScriptedEngine, tokenizer
from ollama_magic.server.engine import Engine

from .helpers import ProtocolEngine, exchange, post

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


def test_one_string_gives_one_unit_vector_and_the_metrics(srv: OllamaServer) -> None:
    body = embed(srv, model="echo", input="The sky is blue")
    assert list(body) == EMBED_KEYS
    assert body["model"] == "echo"  # as sent, not echo:latest
    (vector,) = body["embeddings"]
    assert len(vector) == 64
    assert norm(vector) == pytest.approx(1, abs=1e-6)
    assert body["prompt_eval_count"] == len(tokenizer.split("The sky is blue"))
    assert body["total_duration"] >= body["load_duration"] > 0


def test_an_array_gives_vectors_in_order_and_equal_texts_equal_vectors(srv: OllamaServer) -> None:
    texts = ["a cat", "stock markets", "a cat"]
    body = embed(srv, model="echo", input=texts)
    first, second, again = body["embeddings"]
    assert first == again and first != second
    exact = ScriptedEngine().embed("echo:latest", texts, {})
    assert body["embeddings"] == [pytest.approx(vector, rel=1e-6) for vector in exact]
    assert body["prompt_eval_count"] == sum(len(tokenizer.split(text)) for text in texts)


def single(value: float) -> bytes:
    return struct.pack("f", value)


def significant_digits(value: float) -> int:
    return len(Decimal(repr(value)).normalize().as_tuple().digits)


def test_values_are_written_as_float32(srv: OllamaServer) -> None:
    engine_values = ScriptedEngine().embed("echo:latest", ["one two three"], {})[0]
    assert max(map(significant_digits, engine_values)) > 9  # float64 from the engine...
    values = embed(srv, model="echo", input="one two three")["embeddings"][0]
    for value, exact in zip(values, engine_values, strict=True):
        assert significant_digits(value) <= 9  # ...written as Go writes a float32
        assert single(value) == single(exact)


def test_dimensions_cut_and_renormalise(srv: OllamaServer) -> None:
    (full,) = embed(srv, model="echo", input="cut me short please")["embeddings"]
    (short,) = embed(srv, model="echo", input="cut me short please", dimensions=8)["embeddings"]
    assert len(short) == 8 and norm(short) == pytest.approx(1, abs=1e-6)
    scale = norm(full[:8])
    assert short == pytest.approx([x / scale for x in full[:8]], abs=1e-6)
    (same,) = embed(srv, model="echo", input="cut me short please", dimensions=100)["embeddings"]
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
    embed(fresh, model="echo", input="x", keep_alive=0)
    assert fresh.requests[-1].finished.wait(5)  # the unload follows the reply
    assert engine.calls == [("load", "echo:latest"), ("unload", "echo:latest")]


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


class _FailingEmbeddings(ProtocolEngine):
    def embed(self, name: str, inputs: list[str], options: dict[str, Any]) -> list[list[float]]:
        raise RuntimeError("this engine has no embeddings")


def test_an_engine_failure_is_a_500() -> None:
    with OllamaServer([_FailingEmbeddings()]) as server:
        assert error(server, {"model": "echo", "input": "x"}) == (
            500,
            "this engine has no embeddings",
        )


def test_an_engine_that_does_not_count_tokens_leaves_the_count_out() -> None:
    with OllamaServer([ProtocolEngine()]) as server:  # embed, but no embed_with_count
        body = embed(server, model="echo", input="x y")
    assert list(body) == ["model", "embeddings", "total_duration", "load_duration"]
    (exact,) = ScriptedEngine().embed("echo:latest", ["x y"], {})
    assert body["embeddings"] == [pytest.approx(exact, rel=1e-6)]


# -- chat models on Ollama 0.30+ (llama-server without --embeddings) ---------------------------

NO_EMBEDDINGS = "This server does not support embeddings. Start it with `--embeddings`"


def as_llama_server(version: str = "0.32.15") -> OllamaServer:
    """A server whose chat models refuse vectors as llama.cpp's do (``completion_models_embed``
    False), playing Ollama ``version``."""
    engines: list[Engine] = [ScriptedEngine(completion_models_embed=False)]
    return OllamaServer(engines, version=version, pull_speed=1e12)


def test_a_chat_model_is_loaded_then_refused_with_llama_servers_501() -> None:
    with as_llama_server() as server:
        reply = exchange(server, "POST", "/api/embed", {"model": "echo", "input": ["a", "b"]})
        assert reply.status == 501
        assert reply.headers["content-type"] == "application/json; charset=utf-8"
        assert reply.body == b'{"error":"' + NO_EMBEDDINGS.encode() + b'"}'  # no newline
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
        assert (reply.status_code, reply.json()) == (500, {"error": NO_EMBEDDINGS})
        assert post(server, "/api/embeddings", {"model": "echo"}).json() == {"embedding": []}


def test_the_openai_route_passes_the_501_on() -> None:
    with as_llama_server() as server:
        reply = post(server, "/v1/embeddings", {"model": "echo", "input": "hi"})
    assert reply.status_code == 501
    assert reply.json()["error"]["message"] == NO_EMBEDDINGS


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


def test_the_default_scripted_models_embed_on_any_version(srv: OllamaServer) -> None:
    """The scripted chat models keep their cheap vectors (documented), unlike llama.cpp's."""
    assert srv.completion_models_embed is False  # the server plays Ollama 0.30+
    assert len(embed(srv, model="echo", input="x")["embeddings"]) == 1
