"""The official ``ollama`` Python client against the local server: what its users see."""

from __future__ import annotations

from collections.abc import Iterator

import ollama
import pytest

from ollama_magic.server import OllamaServer


@pytest.fixture()
def client(srv: OllamaServer) -> Iterator[ollama.Client]:
    client = ollama.Client(host=srv.url)
    yield client
    client._client.close()  # its httpx connections, or they warn when collected


def test_version_is_current(client: ollama.Client, srv: OllamaServer) -> None:
    assert client._request_raw("GET", "/api/version").json() == {"version": "0.32.15"}


def test_generate_and_stream(client: ollama.Client) -> None:
    reply = client.generate(model="echo", prompt="hi")
    assert reply.response == "Echo: <|user|>hi\n<|assistant|>"
    assert reply.done and reply.done_reason == "stop" and reply.context
    pieces = [chunk.response for chunk in client.generate(model="echo", prompt="hi", stream=True)]
    assert "".join(pieces) == reply.response


def test_chat_with_thinking_levels(client: ollama.Client) -> None:
    messages = [{"role": "user", "content": "Why is the sky blue?"}]
    low = client.chat(model="thinker", messages=messages, think="low")
    high = client.chat(model="thinker", messages=messages, think="high")
    assert low.message.content.startswith("**Why is the sky blue**")
    assert len(high.message.thinking or "") > len(low.message.thinking or "") > 0
    off = client.chat(model="thinker", messages=messages, think=False)
    assert off.message.thinking is None
    streamed = list(client.chat(model="thinker", messages=messages, stream=True))
    assert "".join(c.message.content for c in streamed) == low.message.content
    with pytest.raises(ollama.ResponseError) as refused:
        client.chat(model="echo", messages=messages, think=True)
    assert (refused.value.status_code, refused.value.error) == (
        400,
        '"echo" does not support thinking',
    )


def test_logprobs(client: ollama.Client) -> None:
    reply = client.generate(model="echo", prompt="hi", logprobs=True, top_logprobs=2)
    assert reply.logprobs is not None
    assert "".join(entry.token for entry in reply.logprobs) == reply.response
    assert all(len(entry.top_logprobs or []) == 2 for entry in reply.logprobs)
    chat = client.chat(
        model="echo", messages=[{"role": "user", "content": "x"}], logprobs=True, stream=True
    )
    entries = [entry for chunk in chat for entry in (chunk.logprobs or [])]
    assert entries and all(entry.logprob < 0 for entry in entries)


@pytest.fixture()
def embedding_client(emb: OllamaServer) -> Iterator[ollama.Client]:
    """A client of the server that has ``embedder`` pulled."""
    client = ollama.Client(host=emb.url)
    yield client
    client._client.close()


def test_embed_and_embeddings(embedding_client: ollama.Client) -> None:
    vectors = embedding_client.embed(model="embedder", input=["a", "b"]).embeddings
    assert [len(v) for v in vectors] == [64, 64]
    assert len(embedding_client.embeddings(model="embedder", prompt="a").embedding) == 64


def test_a_chat_model_refuses_to_embed_as_on_ollama_0_30(client: ollama.Client) -> None:
    for call, status in (
        (lambda: client.embed(model="echo", input="a"), 501),
        (lambda: client.embeddings(model="echo", prompt="a"), 500),
    ):
        with pytest.raises(ollama.ResponseError) as refused:
            call()
        assert (refused.value.status_code, refused.value.error) == (
            status,
            "This server does not support embeddings. Start it with `--embeddings`",
        )


def test_list_show_ps(client: ollama.Client) -> None:
    models = client.list().models
    assert models[0].model == "echo:latest"
    assert models[0].details is not None and models[0].details.family == "scripted"
    show = client.show("thinker")
    assert show.capabilities == ["completion", "thinking"]
    assert show.modelinfo is not None and show.modelinfo["scripted.context_length"] == 32768
    client.generate(model="thinker", keep_alive="1m")
    loaded = [m for m in client.ps().models if m.model == "thinker:latest"]
    assert loaded and loaded[0].context_length == 4096


def test_over_long_input_is_cut_or_refused(
    client: ollama.Client, embedding_client: ollama.Client
) -> None:
    prompt = " ".join(f"w{i}" for i in range(50))
    cut = client.generate(model="reasoner", prompt=prompt, options={"num_ctx": 8})
    assert cut.prompt_eval_count == 6  # about half the window, and no word about it
    with pytest.raises(ollama.ResponseError) as refused:
        embedding_client.embed(
            model="embedder", input=prompt, options={"num_ctx": 8}, truncate=False
        )
    assert (refused.value.status_code, refused.value.error) == (
        400,
        "the input length exceeds the context length",
    )
