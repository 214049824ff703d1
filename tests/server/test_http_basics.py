"""Routing, fallbacks, request decoding errors, tags, show, version and request recording."""

from __future__ import annotations

import json
import re

import pytest
import requests

from ollama_magic.server import OllamaServer

from .helpers import LOCAL_TIME, exchange, post

JSON = "application/json; charset=utf-8"
NAMES = [
    "echo:latest",
    "reasoner:latest",
    "thinker:latest",
    "chinese:latest",
    "slow:latest",
    "lorem:latest",
    "broken:latest",
    "dropper:latest",
]


def test_root_says_ollama_is_running(srv: OllamaServer) -> None:
    reply = exchange(srv, "GET", "/")
    assert (reply.status, reply.headers["content-type"], reply.body) == (
        200,
        "text/plain",
        b"Ollama is running",
    )
    assert "server" not in reply.headers  # Go sends no Server header
    head = exchange(srv, "HEAD", "/")
    assert (head.status, head.headers["content-length"], head.body) == (200, "17", b"")


def test_version(srv: OllamaServer) -> None:
    reply = requests.get(srv.url + "/api/version", timeout=5)
    assert reply.headers["Content-Type"] == JSON
    assert reply.content == b'{"version":"0.32.15"}'
    assert requests.head(srv.url + "/api/version", timeout=5).status_code == 200
    with OllamaServer(version="0.5.0") as old:
        assert requests.get(old.url + "/api/version", timeout=5).json() == {"version": "0.5.0"}


@pytest.mark.parametrize(
    ("method", "path", "status", "text"),
    [
        ("GET", "/api/nothing", 404, b"404 page not found"),
        ("POST", "/v1/whatever", 404, b"404 page not found"),
        ("GET", "/api/generate", 405, b"405 method not allowed"),
        ("DELETE", "/api/chat", 405, b"405 method not allowed"),
        ("POST", "/api/tags", 405, b"405 method not allowed"),
        ("POST", "/api/ps", 405, b"405 method not allowed"),
    ],
)
def test_gin_fallbacks_are_plain_text(
    srv: OllamaServer, method: str, path: str, status: int, text: bytes
) -> None:
    reply = exchange(srv, method, path)
    assert (reply.status, reply.headers["content-type"], reply.body) == (status, "text/plain", text)


def test_ps_has_no_head_route(srv: OllamaServer) -> None:
    assert exchange(srv, "HEAD", "/api/ps").status == 405


def test_trailing_slash_redirects_like_gin(srv: OllamaServer) -> None:
    reply = exchange(srv, "GET", "/api/tags/")
    assert (reply.status, reply.headers["location"]) == (301, "/api/tags")
    assert exchange(srv, "POST", "/api/generate/", b"{}").status == 307


@pytest.mark.parametrize("path", ["/api/generate", "/api/chat", "/api/show"])
@pytest.mark.parametrize("body", [b"", b"  \n"])
def test_empty_body_is_missing_request_body(srv: OllamaServer, path: str, body: bytes) -> None:
    reply = post(srv, path, body)
    assert reply.status_code == 400
    assert reply.headers["Content-Type"] == JSON
    assert reply.content == b'{"error":"missing request body"}'


CANNOT = "json: cannot unmarshal"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"model": x}', "invalid character 'x' looking for beginning of value"),
        (b'{"model":"echo"', "unexpected EOF"),
        (b'{"model":"echo",}', "invalid character '}' looking for beginning of object key string"),
        (b"[1]", "json: cannot unmarshal array into Go value of type api.GenerateRequest"),
        (
            b'{"model":"echo","prompt":["hi"]}',
            f"{CANNOT} array into Go struct field GenerateRequest.prompt of type string",
        ),
        (
            b'{"model":"echo","stream":"yes"}',
            f"{CANNOT} string into Go struct field GenerateRequest.stream of type bool",
        ),
        (
            b'{"model":"echo","images":["data:image/png;base64,AAAA"]}',
            "illegal base64 data at input byte 4",
        ),
    ],
)
def test_bad_bodies_get_gos_decoder_messages(srv: OllamaServer, body: bytes, message: str) -> None:
    reply = post(srv, "/api/generate", body)
    assert (reply.status_code, reply.json()) == (400, {"error": message})


def test_null_body_and_trailing_bytes_behave_like_go(srv: OllamaServer) -> None:
    assert post(srv, "/api/generate", b"null").json() == {"error": "model '' not found"}
    reply = post(srv, "/api/generate", b'{"model":"nope"} and then junk')
    assert (reply.status_code, reply.json()) == (404, {"error": "model 'nope' not found"})


def test_tags_list_every_scripted_model(srv: OllamaServer) -> None:
    reply = requests.get(srv.url + "/api/tags", timeout=5)
    assert reply.headers["Content-Type"] == JSON
    models = reply.json()["models"]
    assert [m["name"] for m in models] == NAMES  # newest first
    assert [m["model"] for m in models] == NAMES
    times = [m["modified_at"] for m in models]
    assert all(LOCAL_TIME.match(t) for t in times) and times == sorted(times, reverse=True)
    echo = models[0]
    assert list(echo) == [
        "name",
        "model",
        "modified_at",
        "size",
        "digest",
        "details",
        "capabilities",
    ]
    assert re.fullmatch(r"[0-9a-f]{64}", echo["digest"])
    assert echo["details"] == {
        "parent_model": "",
        "format": "gguf",
        "family": "scripted",
        "families": ["scripted"],
        "parameter_size": "4M",
        "quantization_level": "F16",
        "context_length": 32768,  # trained lengths, since Ollama 0.30
        "embedding_length": 64,
    }
    assert echo["capabilities"] == ["completion", "insert", "vision"]
    assert models[2]["capabilities"] == ["completion", "thinking"]
    assert len({m["digest"] for m in models}) == len(models)
    assert exchange(srv, "HEAD", "/api/tags").body == b""


def test_show_describes_a_model(srv: OllamaServer) -> None:
    reply = post(srv, "/api/show", {"model": "thinker"})
    assert reply.headers["Content-Type"] == JSON
    show = reply.json()
    assert list(show) == [
        "license",
        "modelfile",
        "parameters",
        "template",
        "details",
        "model_info",
        "capabilities",
        "modified_at",
    ]
    assert show["capabilities"] == ["completion", "thinking"]
    assert show["model_info"] == {
        "general.architecture": "scripted",
        "general.basename": "thinker",
        "general.parameter_count": 4000000,
        "scripted.context_length": 32768,
        "scripted.embedding_length": 64,
    }
    assert show["parameters"].splitlines() == [
        "temperature                    0.6",
        "top_k                          20",
    ]
    assert show["template"].startswith("{{ if .System }}<|system|>")
    assert "FROM thinker:latest" in show["modelfile"] and "PARAMETER top_k 20" in show["modelfile"]
    assert LOCAL_TIME.match(show["modified_at"])
    assert post(srv, "/api/show", {"name": "echo:latest"}).json()["capabilities"][1] == "insert"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({}, 400, "model is required"),
        ({"model": ""}, 400, "model is required"),
        ({"model": "nope"}, 404, "model 'nope:latest' not found"),
        ({"model": "me/nope:7b"}, 404, "model 'me/nope:7b' not found"),
    ],
)
def test_show_errors(srv: OllamaServer, body: dict, status: int, message: str) -> None:
    reply = post(srv, "/api/show", body)
    assert (reply.status_code, reply.json()) == (status, {"error": message})


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("localhost:11434", 200),
        ("127.0.0.1", 200),
        ("10.1.2.3:80", 200),
        ("[::1]:11434", 200),
        ("notebook.localhost", 200),
        ("box.local", 200),
        ("evil.example.com", 403),
        ("evil.example.com:11434", 403),
    ],
)
def test_host_guard_on_loopback(srv: OllamaServer, host: str, status: int) -> None:
    reply = exchange(srv, "GET", "/api/version", headers={"Host": host})
    assert reply.status == status
    if status == 403:
        assert reply.body == b""


def test_requests_are_recorded_in_order(fresh: OllamaServer) -> None:
    post(fresh, "/api/show", {"model": "echo"}, headers={"X-Trace": "1"})
    requests.get(fresh.url + "/api/tags?verbose=1", timeout=5)
    post(fresh, "/api/generate", b"not json")
    first, second, third = fresh.requests
    assert (first.method, first.path, first.json) == ("POST", "/api/show", {"model": "echo"})
    assert first.headers["x-trace"] == "1" and first.headers["Content-Type"] == "application/json"
    assert json.loads(first.body) == {"model": "echo"} and first.status == 200
    assert (second.method, second.path, second.query, second.body) == (
        "GET",
        "/api/tags",
        "verbose=1",
        b"",
    )
    assert (third.json, third.status, third.disconnected_at) == (None, 400, None)
    assert all(r.finished.wait(2) for r in fresh.requests)  # set just after the reply is sent
    fresh.clear()
    assert fresh.requests == []
