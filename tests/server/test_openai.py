"""The ``/v1`` routes (``ollama-api.md`` §8): exact shapes on the wire, and the official
``openai`` client running against the server."""

from __future__ import annotations

import base64
import json
import re
import struct
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from ollama_magic.server import OllamaServer

from .helpers import exchange, post

JSON_NEWLINE = "application/json"
TOO_SHORT = "[] is too short - 'messages'"
EFFORT = {"effort": "big"}


@pytest.fixture()
def client(srv: OllamaServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=srv.url + "/v1", api_key="ollama", max_retries=0) as client:
        yield client


def events(body: bytes) -> list[Any]:
    """The ``data:`` payloads of a server-sent event stream (``[DONE]`` as a string)."""
    assert body.endswith(b"\n\n")
    out = []
    for event in body.split(b"\n\n")[:-1]:
        assert event.startswith(b"data: "), event
        data = event[len(b"data: ") :]
        out.append("[DONE]" if data == b"[DONE]" else json.loads(data))
    return out


# -- wire ----------------------------------------------------------------------------------


def test_chat_completion_object(srv: OllamaServer) -> None:
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    reply = exchange(srv, "POST", "/v1/chat/completions", body)
    assert (reply.status, reply.headers["content-type"]) == (200, JSON_NEWLINE)
    assert reply.body.endswith(b"}\n")  # Go's json.Encoder
    value = json.loads(reply.body)
    assert re.fullmatch(r"chatcmpl-\d{1,3}", value["id"])
    assert list(value) == [
        "id",
        "object",
        "created",
        "model",
        "system_fingerprint",
        "choices",
        "usage",
    ]
    assert (value["object"], value["model"], value["system_fingerprint"]) == (
        "chat.completion",
        "echo",
        "fp_ollama",
    )
    assert value["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Echo: <"},
            "finish_reason": "length",
        }
    ]
    assert value["usage"] == {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}


def test_chat_defaults_and_translations_reach_the_native_handler(srv: OllamaServer) -> None:
    body = {
        "model": "thinker",
        "messages": [{"role": "user", "content": "x"}],
        "stop": "Okay",
        "reasoning_effort": "minimal",
        "max_tokens": 4,
    }
    reply = post(srv, "/v1/chat/completions", body).json()
    assert reply["choices"][0]["message"]["content"] == ""  # cut at the stop string
    body |= {"stop": ["zzz"], "reasoning": {"effort": "xhigh"}, "temperature": 0.2}
    think = post(srv, "/v1/chat/completions", body).json()["choices"][0]["message"]
    assert think["reasoning"].startswith("Okay, the user")


def test_streamed_chat_is_server_sent_events(srv: OllamaServer) -> None:
    body = {
        "model": "thinker",
        "messages": [{"role": "user", "content": "x"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 3,
        "reasoning_effort": "none",
    }
    reply = exchange(srv, "POST", "/v1/chat/completions", body)
    assert (reply.status, reply.headers["content-type"]) == (200, "text/event-stream")
    data = events(reply.body)
    assert data[-1] == "[DONE]"
    first, finish, usage = data[0], data[-3], data[-2]
    assert first["object"] == "chat.completion.chunk"
    assert first["choices"] == [
        {"index": 0, "delta": {"role": "assistant", "content": "*"}, "finish_reason": None}
    ]
    assert "role" not in data[1]["choices"][0]["delta"]
    assert finish["choices"] == [{"index": 0, "delta": {}, "finish_reason": "length"}]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 3
    assert len({chunk["id"] for chunk in data[:-1]}) == 1
    assert len({chunk["created"] for chunk in data[:-1]}) == 1


def test_reasoning_and_logprobs_in_chunks(srv: OllamaServer) -> None:
    body = {
        "model": "thinker",
        "messages": [{"role": "user", "content": "x"}],
        "stream": True,
        "max_tokens": 2,
        "logprobs": True,
        "top_logprobs": 2,
    }
    data = events(exchange(srv, "POST", "/v1/chat/completions", body).body)
    delta = data[0]["choices"][0]
    assert delta["delta"] == {"role": "assistant", "content": "", "reasoning": "Okay"}
    [entry] = delta["logprobs"]["content"]
    assert entry["token"] == "Okay" and len(entry["top_logprobs"]) == 2


def test_completions(srv: OllamaServer) -> None:
    body = {"model": "echo", "prompt": "hi", "max_tokens": 2, "logprobs": 2}
    value = post(srv, "/v1/completions", body).json()
    assert re.fullmatch(r"cmpl-\d{1,3}", value["id"])
    assert value["object"] == "text_completion"
    assert value["choices"] == [{"text": "Echo:", "index": 0, "finish_reason": "length"}]
    stream = exchange(
        srv,
        "POST",
        "/v1/completions",
        {**body, "stream": True, "stream_options": {"include_usage": True}},
    )
    data = events(stream.body)
    assert list(data[0]) == [
        "id",
        "object",
        "created",
        "choices",
        "model",
        "system_fingerprint",
        "usage",
    ]
    assert data[0]["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert [c["choices"][0]["text"] for c in data[:-2]] == ["Echo", ":", ""]
    assert data[-3]["choices"][0]["finish_reason"] == "length"
    assert data[-2]["usage"]["completion_tokens"] == 2 and data[-1] == "[DONE]"


def test_models_and_one_model(srv: OllamaServer) -> None:
    listing = exchange(srv, "GET", "/v1/models")
    value = json.loads(listing.body)
    assert value["object"] == "list"
    assert value["data"][0] == {
        "id": "echo:latest",
        "object": "model",
        "created": 1736424000,  # 2025-01-09 12:00 UTC, the card's modified_at
        "owned_by": "library",
    }
    one = json.loads(exchange(srv, "GET", "/v1/models/echo").body)
    assert one == {"id": "echo", "object": "model", "created": 1736424000, "owned_by": "library"}
    missing = exchange(srv, "GET", "/v1/models/nope")
    assert (missing.status, json.loads(missing.body)) == (
        404,
        {
            "error": {
                "message": "model 'nope:latest' not found",
                "type": "not_found_error",
                "param": None,
                "code": None,
            }
        },
    )
    assert exchange(srv, "GET", "/v1/models/a/b").status == 404  # one path segment, as gin


def test_embeddings(emb: OllamaServer) -> None:
    value = post(emb, "/v1/embeddings", {"model": "embedder", "input": ["a b", "c"]}).json()
    assert [(d["object"], d["index"]) for d in value["data"]] == [
        ("embedding", 0),
        ("embedding", 1),
    ]
    assert value["model"] == "embedder"
    assert value["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    body = {"model": "embedder", "input": "a b", "encoding_format": "base64"}
    packed = post(emb, "/v1/embeddings", body)
    raw = base64.b64decode(packed.json()["data"][0]["embedding"])
    floats = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert [round(x, 6) for x in floats] == [round(x, 6) for x in value["data"][0]["embedding"]]


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v1/chat/completions", {"model": "echo", "messages": []}, 400, TOO_SHORT),
        ("/v1/chat/completions", {"model": "echo"}, 400, TOO_SHORT),
        (
            "/v1/chat/completions",
            {"model": "x", "messages": [{"role": "user", "content": ""}], "reasoning": EFFORT},
            400,
            'invalid reasoning value: "big" (must be "minimal", "low", "medium", "high", '
            '"xhigh", "ultra", "max", or "none")',
        ),
        (
            "/v1/chat/completions",
            {
                "model": "echo",
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": "http://x/y"}]}
                ],
            },
            400,
            "image URLs are not currently supported, please use base64 encoded data instead",
        ),
        (
            "/v1/chat/completions",
            {"model": "nope", "messages": [{"role": "user", "content": "x"}]},
            404,
            "model 'nope' not found",
        ),
        (
            "/v1/embeddings",
            {"model": "echo", "input": "x", "encoding_format": "int8"},
            400,
            "Invalid value for 'encoding_format' = int8. Supported values: ['float', 'base64'].",
        ),
        ("/v1/embeddings", {"model": "echo", "input": []}, 400, "invalid input"),
        (
            "/v1/completions",
            {"model": "echo", "prompt": "x", "stop": [1]},
            400,
            "invalid type for 'stop' field: float64",
        ),
        (
            "/v1/completions",
            {"model": "echo", "prompt": "x", "options": {}, "max_tokens": "many"},
            500,
            'option "num_predict" must be of type integer',
        ),
        ("/v1/chat/completions", b"", 400, "EOF"),
        ("/v1/chat/completions", b"{", 400, "unexpected EOF"),
        (
            "/v1/chat/completions",
            {"model": "echo", "messages": [{"role": "user"}]},
            400,
            "invalid message content type: <nil>",
        ),
    ],
)
def test_errors_are_openai_shaped(
    srv: OllamaServer, path: str, body: Any, status: int, message: str
) -> None:
    reply = exchange(srv, "POST", path, body)
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    assert (reply.status, reply.headers["content-type"]) == (status, JSON_NEWLINE)
    assert json.loads(reply.body) == {
        "error": {"message": message, "type": kind, "param": None, "code": None}
    }


def test_v1_routes_follow_the_cors_and_host_guards(srv: OllamaServer) -> None:
    evil = {"Origin": "https://evil.example"}
    assert exchange(srv, "GET", "/v1/models", headers=evil).status == 403
    body = {"model": "echo", "messages": [{"role": "user", "content": "x"}]}
    refused = exchange(srv, "POST", "/v1/chat/completions", body, headers=evil)
    assert (refused.status, refused.body) == (403, b"")
    local = exchange(srv, "GET", "/v1/models", headers={"Origin": "http://localhost:3000"})
    assert local.headers["access-control-allow-origin"] == "http://localhost:3000"
    preflight = exchange(
        srv,
        "OPTIONS",
        "/v1/chat/completions",
        headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status == 204
    assert "X-Stainless-Lang" in preflight.headers["access-control-allow-headers"]
    assert exchange(srv, "GET", "/v1/models", headers={"Host": "evil.example"}).status == 403
    assert exchange(srv, "GET", "/v1/chat/completions").status == 405


# -- the official client -------------------------------------------------------------------


def test_openai_client_chat(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "hi"}], max_tokens=4, seed=1
    )
    assert reply.choices[0].message.content == "Echo: <|"
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == 4


def test_openai_client_streams(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="chinese",
        messages=[{"role": "user", "content": "AI"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("关于「AI」") and text.endswith("🤖")
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 0
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_openai_client_logprobs(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=3,
        logprobs=True,
        top_logprobs=4,
    )
    assert reply.choices[0].logprobs is not None
    content = reply.choices[0].logprobs.content or []
    assert [t.token for t in content] == ["Echo", ":", " <"]
    assert all(len(t.top_logprobs) == 4 and t.logprob < 0 for t in content)


def test_openai_client_completions_models_embeddings(client: openai.OpenAI) -> None:
    text = client.completions.create(model="echo", prompt="hello", max_tokens=5)
    assert text.choices[0].text == "Echo: <|user"
    streamed = client.completions.create(model="echo", prompt="hello", max_tokens=5, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == "Echo: <|user"
    assert "thinker:latest" in [m.id for m in client.models.list()]
    model = client.models.retrieve("thinker")
    assert (model.id, model.owned_by) == ("thinker", "library")
    with pytest.raises(openai.APIStatusError) as refused:  # a chat model, as on Ollama 0.30+
        client.embeddings.create(model="echo", input=["a", "b b"])
    assert refused.value.status_code == 501
    assert refused.value.message == (
        "Error code: 501 - This server does not support embeddings. Start it with `--embeddings`"
    )


def test_openai_client_embeddings(emb: OllamaServer) -> None:
    with openai.OpenAI(base_url=emb.url + "/v1", api_key="ollama", max_retries=0) as client:
        vectors = client.embeddings.create(model="embedder", input=["a", "b b"])
        assert [len(d.embedding) for d in vectors.data] == [64, 64]
        packed = client.embeddings.create(model="embedder", input="a", encoding_format="base64")
    assert isinstance(packed.data[0].embedding, str)


def test_openai_client_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert missing.value.body == {
        "message": "model 'nope' not found",
        "type": "not_found_error",
        "param": None,
        "code": None,
    }
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="echo", messages=[])
    with pytest.raises(openai.APIError, match="scripted failure"):
        list(
            client.chat.completions.create(
                model="broken", messages=[{"role": "user", "content": "x"}], stream=True
            )
        )
