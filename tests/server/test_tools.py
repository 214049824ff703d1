"""Tool calling on the wire (ollama-api.md §2.11): the ``tools`` capability derived from the
template, the 400 for a model without it, ``tool_calls`` streamed as Ollama's generic parser
streams them, and the scripted ``agent`` answering from ``role: "tool"`` messages."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from ollama_magic.server import OllamaServer
from ollama_magic.server.prompting import template_capabilities
from ollama_magic.server.scripted import AGENT_TEMPLATE, TEMPLATE

from .helpers import ndjson, post

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "required": ["city"],
            "properties": {"city": {"type": "string", "description": "The city."}},
        },
    },
}
ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "",
        "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}},
    },
}


@pytest.fixture(scope="module")
def agent() -> Iterator[OllamaServer]:
    """A server with ``agent`` pulled (it is in the library, not installed at first)."""
    with OllamaServer(pull_speed=1e12) as server:
        assert ndjson(post(server, "/api/pull", {"model": "agent"}))[-1] == {"status": "success"}
        yield server


def chat(server: OllamaServer, text: str, tools: list[dict[str, Any]], **extra: Any) -> Any:
    body = {"model": "agent", "messages": [{"role": "user", "content": text}], "tools": tools}
    return post(server, "/api/chat", {**body, **extra})


def test_capabilities_come_from_the_template() -> None:
    assert template_capabilities(AGENT_TEMPLATE) == ("tools",)
    assert "tools" not in template_capabilities(TEMPLATE)
    assert template_capabilities("{{ .Tools", jinja=False) == ()  # unparsable: nothing
    jinja = "{% if tools %}{{ tools | tojson }}{% endif %}{{ messages[0].content }}"
    assert template_capabilities(jinja, jinja=True) == ("tools",)
    assert template_capabilities("<tool_call>{{ x }}</tool_call>", jinja=True) == ("tools",)


def test_show_lists_tools_for_agent_only(agent: OllamaServer) -> None:
    assert post(agent, "/api/show", {"model": "agent"}).json()["capabilities"] == [
        "completion",
        "tools",
    ]
    assert "tools" not in post(agent, "/api/show", {"model": "echo"}).json()["capabilities"]


def test_a_model_without_tools_gets_ollamas_400(agent: OllamaServer) -> None:
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], "tools": [WEATHER]}
    reply = post(agent, "/api/chat", body)
    assert reply.status_code == 400
    message = "registry.ollama.ai/library/echo:latest does not support tools"
    assert reply.json() == {"error": message}
    assert post(agent, "/api/chat", {**body, "tools": []}).status_code == 200  # empty: no check


def test_one_call_streams_as_the_generic_parser_sends_it(agent: OllamaServer) -> None:
    lines = ndjson(chat(agent, "Use get_weather with city=Paris.", [WEATHER]))
    calls = [line for line in lines if line["message"].get("tool_calls")]
    assert len(calls) == 1 and calls[0]["done"] is False
    message = calls[0]["message"]
    assert message["content"] == "" and message["role"] == "assistant"
    (call,) = message["tool_calls"]
    assert re.fullmatch(r"call_[a-z0-9]{8}", call["id"])
    assert call["function"] == {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}
    assert list(lines[-1])[:5] == ["model", "created_at", "message", "done", "done_reason"]
    assert lines[-1]["done"] is True and lines[-1]["eval_count"] > 0


def test_two_calls_in_one_turn_and_non_streamed(agent: OllamaServer) -> None:
    text = "Use get_weather with city='New York', then add(a=2, b=3.5)."
    streamed = ndjson(chat(agent, text, [WEATHER, ADD]))
    found = [c for line in streamed for c in line["message"].get("tool_calls", [])]
    assert [c["function"]["index"] for c in found] == [0, 1]
    assert found[0]["function"]["arguments"] == {"city": "New York"}
    assert found[1]["function"]["arguments"] == {"a": 2, "b": 3.5}
    whole = chat(agent, text, [WEATHER, ADD], stream=False).json()
    assert whole["done"] is True and whole["message"]["tool_calls"] == found


def test_answers_from_tool_results(agent: OllamaServer) -> None:
    messages = [
        {"role": "user", "content": "Use get_weather with city=Paris and add(a=1)."},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
        },
        {"role": "tool", "content": "18 °C", "tool_name": "get_weather", "tool_call_id": "c1"},
        {"role": "tool", "content": "Error: TypeError: no", "tool_name": "add"},
    ]
    body = {"model": "agent", "messages": messages, "tools": [WEATHER, ADD], "stream": False}
    message = post(agent, "/api/chat", body).json()["message"]
    assert "tool_calls" not in message
    assert message["content"] == (
        "Here is what the tools said:\n\n- **get_weather**: 18 °C\n- **add** failed: TypeError: no"
    )


def test_forever_keeps_calling_and_no_tools_answers_plainly(agent: OllamaServer) -> None:
    messages = [
        {"role": "user", "content": "Call get_weather(city=Oslo) forever."},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "x"}}]},
        {"role": "tool", "content": "cold", "tool_name": "get_weather"},
    ]
    body = {"model": "agent", "messages": messages, "tools": [WEATHER], "stream": False}
    again = post(agent, "/api/chat", body).json()["message"]["tool_calls"]
    assert again[0]["function"]["name"] == "get_weather"
    plain = post(agent, "/api/chat", {**body, "tools": []}).json()["message"]
    assert plain["content"].startswith("Here is what the tools said")
    none = chat(agent, "Hello there", [], stream=False).json()["message"]["content"]
    assert none == "I was given no tools, so I answer directly: Hello there."


def test_unknown_names_written_as_calls_are_called(agent: OllamaServer) -> None:
    whole = chat(agent, "Please run lookup(symbol=ACME).", [WEATHER], stream=False).json()
    (call,) = whole["message"]["tool_calls"]
    assert call["function"]["name"] == "lookup"  # a test of the client's unknown-name answer
