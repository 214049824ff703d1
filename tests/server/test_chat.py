"""/api/chat: the same engines and checks as generate, framed as messages, with no context."""

from __future__ import annotations

import json

import pytest

from ollama_magic.server import OllamaServer

from .helpers import CREATED_AT, METRIC_KEYS, exchange, ndjson, post

USER = {"role": "user", "content": "Hi"}


def content(lines: list[dict], key: str = "content") -> str:
    return "".join(line["message"].get(key, "") for line in lines)


def test_streamed_chat_chunks_carry_messages(srv: OllamaServer) -> None:
    reply = exchange(srv, "POST", "/api/chat", {"model": "echo", "messages": [USER]})
    assert reply.headers["content-type"] == "application/x-ndjson" and reply.terminated
    *tokens, final = reply.lines
    assert all(list(t) == ["model", "created_at", "message", "done"] for t in tokens)
    assert all(t["message"]["role"] == "assistant" for t in tokens)
    assert all(CREATED_AT.match(t["created_at"]) for t in reply.lines)
    assert content(tokens) == "Echo: <|user|>Hi\n<|assistant|>"
    assert list(final) == ["model", "created_at", "message", "done", "done_reason", *METRIC_KEYS]
    assert final["message"] == {"role": "assistant", "content": ""}
    assert "context" not in final


def test_chat_history_is_rendered_turn_by_turn(srv: OllamaServer) -> None:
    messages = [
        {"role": "system", "content": "Be short."},
        {"role": "USER", "content": "Hi"},  # roles are lower-cased on decode
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Again"},
    ]
    reply = post(srv, "/api/chat", {"model": "echo", "messages": messages, "stream": False})
    assert reply.json()["message"]["content"] == (
        "Echo: <|system|>Be short.\n<|user|>Hi\n<|assistant|>Hello!\n<|user|>Again\n<|assistant|>"
    )


def test_thinking_goes_into_the_message(srv: OllamaServer) -> None:
    body = {"model": "thinker", "messages": [USER], "stream": False}
    message = post(srv, "/api/chat", body).json()["message"]
    assert list(message) == ["role", "content", "thinking"]
    assert message["thinking"].startswith("Okay, the user wants to know about Hi.")
    streamed = ndjson(post(srv, "/api/chat", {**body, "stream": True}))
    thinking = [line for line in streamed if "thinking" in line["message"]]
    assert thinking and all(line["message"]["content"] == "" for line in thinking)
    assert content(streamed, "thinking") == message["thinking"]


def test_chat_format_thinks_first_then_answers_in_json(srv: OllamaServer) -> None:
    body = {"model": "thinker", "messages": [USER], "stream": False, "format": "json"}
    message = post(srv, "/api/chat", body).json()["message"]
    assert message["thinking"] and json.loads(message["content"])["answer"].startswith("**Hi**")


@pytest.mark.parametrize("stream", [True, False])
def test_empty_messages_load_and_unload(fresh: OllamaServer, stream: bool) -> None:
    load = post(fresh, "/api/chat", {"model": "echo", "messages": [], "stream": stream}).json()
    assert list(load) == ["model", "created_at", "message", "done", "done_reason"]
    assert (load["message"], load["done"], load["done_reason"]) == (
        {"role": "assistant", "content": ""},
        True,
        "load",
    )
    unload = post(fresh, "/api/chat", {"model": "echo", "keep_alive": 0}).json()
    assert unload["done_reason"] == "unload"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"messages": [USER]}, 400, "model is required"),
        ({"model": "nope", "messages": [USER]}, 404, "model 'nope' not found"),
        (
            {"model": "echo", "messages": [USER], "tools": [{"type": "function"}]},
            400,
            "registry.ollama.ai/library/echo:latest does not support tools",
        ),
        (
            {"model": "reasoner", "messages": [USER], "think": True},
            400,
            '"reasoner" does not support thinking',
        ),
        (
            {"model": "echo", "messages": [{"role": "user", "content": 1}]},
            400,
            "json: cannot unmarshal number into Go struct field Alias.content of type string",
        ),
        (
            {"model": "echo", "messages": "Hi"},
            400,
            "json: cannot unmarshal string into Go struct field ChatRequest.messages"
            " of type []api.Message",
        ),
        (
            {"model": "echo", "messages": [USER], "options": {"top_k": "x"}},
            500,
            'option "top_k" must be of type integer',
        ),
        (
            {"model": "echo", "messages": [USER], "format": "yaml", "stream": False},
            500,
            'invalid format: "\\"yaml\\""; expected "json" or a valid JSON Schema object',
        ),
    ],
)
def test_chat_errors(srv: OllamaServer, body: dict, status: int, message: str) -> None:
    reply = post(srv, "/api/chat", body)
    assert (reply.status_code, reply.json()) == (status, {"error": message})


def test_broken_chat_fails_in_band(srv: OllamaServer) -> None:
    lines = ndjson(post(srv, "/api/chat", {"model": "broken", "messages": [USER]}))
    assert content(lines[:-1]) == "This answer is about to"
    assert lines[-1] == {
        "error": "an error was encountered while running the model: scripted failure"
    }


def test_a_long_chat_drops_its_oldest_messages_not_the_system_or_last(srv: OllamaServer) -> None:
    long = " ".join(f"w{i}" for i in range(2500))
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": f"first {long}"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "second question"},
    ]
    body = {"model": "echo", "messages": messages, "stream": False, "options": {"num_ctx": 2048}}
    seen = post(srv, "/api/chat", body).json()["message"]["content"]
    assert "Be brief." in seen and "second question" in seen
    assert "first" not in seen and "ok" in seen
    refused = post(srv, "/api/chat", dict(body, messages=messages[:2], truncate=False))
    assert refused.status_code == 400
