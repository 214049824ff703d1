"""The client against the real local server: headers, host resolution, timeouts, typed errors."""

from __future__ import annotations

import pytest

from ollama_magic.client import OllamaClient, resolve_host
from ollama_magic.errors import (
    ConnectionFailed,
    ModelNotFound,
    ReadTimedOut,
    ResponseError,
    StreamError,
    StreamTruncated,
)


def test_host_comes_from_the_argument_then_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "example.com:1234")
    assert resolve_host() == "http://example.com:1234"
    assert resolve_host("other:1") == "http://other:1"
    monkeypatch.delenv("OLLAMA_HOST")
    assert resolve_host() == "http://127.0.0.1:11434"


def test_api_key_is_sent_as_bearer_token(ollama, monkeypatch) -> None:
    monkeypatch.setenv("OLLAMA_API_KEY", "sekrit")
    OllamaClient(ollama.url).tags()
    (request,) = ollama.requests
    assert request.headers["Authorization"] == "Bearer sekrit"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("ollama-magic/")


def test_no_key_no_authorization_header(ollama, monkeypatch) -> None:
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    OllamaClient(ollama.url).tags()
    assert "Authorization" not in ollama.requests[0].headers


def test_stream_yields_objects_until_done(ollama) -> None:
    with OllamaClient(ollama.url).stream(
        "/api/generate", {"model": "chinese", "prompt": "你好", "stream": True}
    ) as stream:
        chunks = list(stream)
    assert chunks[-1]["done"] is True
    assert "人工智能" in "".join(c["response"] for c in chunks)


def test_typed_errors(ollama) -> None:
    client = OllamaClient(ollama.url)
    with pytest.raises(ModelNotFound) as missing:
        client.stream("/api/generate", {"model": "nope", "prompt": "x"})
    assert (missing.value.status, missing.value.model) == (404, "nope")
    with pytest.raises(ResponseError) as bad:
        client.stream("/api/generate", {"model": "echo", "prompt": "x", "keep_alive": "1d"})
    assert bad.value.status == 400 and 'unknown unit "d"' in bad.value.message
    with pytest.raises(StreamError, match="scripted failure"):
        list(client.stream("/api/generate", {"model": "broken", "prompt": "x"}))
    with pytest.raises(StreamTruncated):
        list(client.stream("/api/generate", {"model": "dropper", "prompt": "x"}))


def test_connect_failure_names_the_url() -> None:
    with pytest.raises(ConnectionFailed) as failed:
        OllamaClient("http://127.0.0.1:9").tags()
    assert failed.value.url == "http://127.0.0.1:9"
    assert "connection refused" in str(failed.value)


def test_read_timeout_is_separate_from_connect_timeout(ollama) -> None:
    client = OllamaClient(ollama.url, connect_timeout=5, read_timeout=0.2)
    body = {"model": "slow", "prompt": "x", "options": {"scripted_delay": 1.0}}
    with pytest.raises(ReadTimedOut) as waited:
        list(client.stream("/api/generate", body))
    assert waited.value.seconds == 0.2


def test_closing_a_stream_disconnects_at_once(ollama) -> None:
    stream = OllamaClient(ollama.url).stream(
        "/api/generate", {"model": "slow", "prompt": "x", "options": {"num_predict": 400}}
    )
    next(iter(stream))
    stream.close()
    (request,) = [r for r in ollama.requests if r.path == "/api/generate"]
    request.finished.wait(5)
    assert request.disconnected_at is not None
