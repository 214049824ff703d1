"""Hostile input: huge and broken bodies, stalled and half-open connections, web pages.

Everything is real HTTP to a real server on 127.0.0.1. Memory and thread counts are measured
on a server in its own process (``benchmarks/server_hostile.py`` does the same at full size).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
import requests

from ollama_magic.server import OllamaServer
from ollama_magic.server.app import BODY_TOO_LARGE, DEFAULT_MAX_BODY, allowed_origins

from .helpers import exchange, ndjson, parse_response, post
from .hostile_clients import (
    ServerProcess,
    answered_meanwhile,
    closed_by_server,
    open_half_open,
    post_oversized,
    server_process,
    wait_for,
)

MB = 1_000_000


@pytest.fixture(scope="module")
def process() -> Iterator[ServerProcess]:
    with server_process() as server:
        yield server


@pytest.fixture()
def quick() -> Iterator[OllamaServer]:
    """A server that drops stalled clients after half a second."""
    with OllamaServer(read_timeout=0.5) as server:
        yield server


def _names(server: OllamaServer) -> list[str]:
    return [
        model["name"]
        for model in requests.get(server.url + "/api/tags", timeout=5).json()["models"]
    ]


# -- bodies ----------------------------------------------------------------------------------------


def test_two_200_mb_posts_get_413_and_leave_the_server_small(process: ServerProcess) -> None:
    assert answered_meanwhile(process.url)  # warmed up: the baseline includes a served request
    before = process.rss()
    for chunked in (False, True):
        reply = post_oversized(process.port, 200 * MB, chunked=chunked)
        assert (reply.status, reply.lines) == (413, [{"error": BODY_TOO_LARGE}])
        assert reply.headers["connection"] == "close"
    growth = process.rss() - before
    assert growth < 80 * MB, f"the server grew by {growth / MB:.0f} MB"
    assert answered_meanwhile(process.url)


def test_the_limit_is_configurable_and_a_body_at_the_limit_is_read() -> None:
    body = b'{"model":"echo","prompt":"hi","stream":false}'
    with OllamaServer(max_body=len(body)) as server:
        assert post(server, "/api/generate", body).status_code == 200
        reply = post(server, "/api/generate", body + b" ")
        assert (reply.status_code, reply.json()) == (413, {"error": BODY_TOO_LARGE})
        assert reply.headers["Content-Type"] == "application/json; charset=utf-8"
        (_, refused) = server.requests
        assert (refused.status, refused.body) == (413, b"")


def test_requests_sending_a_body_over_the_default_limit_reads_the_413(srv: OllamaServer) -> None:
    reply = requests.post(srv.url + "/api/chat", data=bytes(DEFAULT_MAX_BODY + 1), timeout=30)
    assert (reply.status_code, reply.json()) == (413, {"error": BODY_TOO_LARGE})


def test_expect_100_continue_gets_the_413_instead_of_an_invitation(srv: OllamaServer) -> None:
    with socket.create_connection((srv.host, srv.port), timeout=5) as sock:
        sock.sendall(
            b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % (DEFAULT_MAX_BODY + 1)
        )
        data = b""
        while piece := sock.recv(65536):  # the server closes after the 413
            data += piece
    assert data.startswith(b"HTTP/1.1 413 ")
    assert parse_response(data).lines == [{"error": BODY_TOO_LARGE}]


def test_a_chunked_body_is_counted_against_the_limit() -> None:
    with OllamaServer(max_body=100) as server:
        pieces = iter([b"{" + b" " * 60, b" " * 60 + b"}"])  # a generator: sent chunked
        reply = requests.post(server.url + "/api/generate", data=pieces, timeout=5)
        assert (reply.status_code, reply.json()) == (413, {"error": BODY_TOO_LARGE})


@pytest.mark.parametrize("path", ["/api/generate", "/api/chat", "/api/show", "/api/copy"])
@pytest.mark.parametrize(
    ("deep", "opener"),
    [(b"[" * 100_000, "["), (b'{"model":' + b'{"a":' * 10_000, "{")],  # 10,001 levels
)
def test_deep_nesting_is_a_400_with_gos_text(
    srv: OllamaServer, path: str, deep: bytes, opener: str, capfd: pytest.CaptureFixture[str]
) -> None:
    reply = post(srv, path, deep)
    error = f"invalid character '{opener}' exceeded max depth"
    assert (reply.status_code, reply.json()) == (400, {"error": error})
    assert "Traceback" not in capfd.readouterr().err


def test_nesting_within_gos_limit_is_decoded(srv: OllamaServer) -> None:
    """10,000 levels are fine for Go (Python's json stops near 1,000): the type error follows."""
    reply = post(srv, "/api/generate", b"[" * 10_000 + b"]" * 10_000)
    message = "json: cannot unmarshal array into Go value of type api.GenerateRequest"
    assert (reply.status_code, reply.json()) == (400, {"error": message})
    body = b'{"model":"echo","prompt":' + b"[" * 5000 + b"]" * 5000 + b"}"
    message = (
        "json: cannot unmarshal array into Go struct field GenerateRequest.prompt of type string"
    )
    assert post(srv, "/api/generate", body).json() == {"error": message}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"model": "echo", "prompt": "h', "unexpected EOF"),
        (b'{"model": echo}', "invalid character 'e' looking for beginning of value"),
        (b'{"model" "echo"}', "invalid character '\"' after object key"),
        (b"[1, 2,]", "invalid character ']' looking for beginning of value"),
    ],
)
def test_broken_bodies_are_a_400_with_gos_text(srv: OllamaServer, body: bytes, error: str) -> None:
    reply = post(srv, "/api/generate", body)
    assert (reply.status_code, reply.json()) == (400, {"error": error})


def test_a_body_cut_short_by_the_client_is_unexpected_eof(srv: OllamaServer) -> None:
    body = b'{"model":"echo","prompt":"hello"}'
    with socket.create_connection((srv.host, srv.port), timeout=5) as sock:
        sock.sendall(
            b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n%b"
            % (len(body), body[:20])
        )
        sock.shutdown(socket.SHUT_WR)  # the client is done sending: the body is short
        data = b""
        while piece := sock.recv(65536):
            data += piece
    reply = parse_response(data)
    assert (reply.status, reply.lines) == (400, [{"error": "unexpected EOF"}])


@pytest.mark.parametrize("length", [b"-5", b"12abc", b"0x10", b"1_0"])
def test_a_bad_content_length_is_a_400(srv: OllamaServer, length: bytes) -> None:
    with socket.create_connection((srv.host, srv.port), timeout=5) as sock:
        sock.sendall(b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ")
        sock.sendall(length + b"\r\n\r\n{}")
        data = b""
        while piece := sock.recv(65536):  # and the connection is closed
            data += piece
    assert data.startswith(b"HTTP/1.1 400 ")


def test_requests_kept_are_bounded() -> None:
    with OllamaServer(keep_requests=2) as server:
        for prompt in ("a", "b", "c"):
            post(server, "/api/generate", {"model": "echo", "prompt": prompt, "stream": False})
        assert [r.json["prompt"] for r in server.requests] == ["b", "c"]
    with OllamaServer(keep_requests=0) as server:
        assert requests.get(server.url + "/api/version", timeout=5).status_code == 200
        assert server.requests == []


# -- connections -----------------------------------------------------------------------------------


def test_a_half_open_request_head_is_dropped(quick: OllamaServer) -> None:
    (sock,) = open_half_open(quick.port, 1)
    with sock:
        started = time.monotonic()
        assert closed_by_server(sock, within=3)
        assert 0.3 < time.monotonic() - started < 2


def test_a_stalled_body_is_dropped(quick: OllamaServer) -> None:
    with socket.create_connection((quick.host, quick.port), timeout=5) as sock:
        sock.sendall(
            b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{"
        )
        assert closed_by_server(sock, within=3)


def test_a_slow_stream_to_a_slow_reader_outlives_the_read_timeout(quick: OllamaServer) -> None:
    body = {"model": "slow", "prompt": "x", "options": {"num_predict": 30}}  # 30 x 0.05 s
    with requests.post(quick.url + "/api/generate", json=body, stream=True, timeout=10) as reply:
        lines = []
        for line in reply.iter_lines():
            lines.append(line)
            time.sleep(0.03)  # reads slower than the tokens come: the buffers hold the rest
    assert len(lines) == 31 and b'"done":true' in lines[-1]


def test_a_kept_alive_connection_serves_pipelined_requests(srv: OllamaServer) -> None:
    request = b"GET /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with socket.create_connection((srv.host, srv.port), timeout=5) as sock:
        sock.sendall(request * 3)
        data = b""
        while data.count(b'"version"') < 3:
            piece = sock.recv(65536)
            assert piece, data
            data += piece
    assert data.count(b"HTTP/1.1 200 OK") == 3


def test_threads_stay_few_under_100_half_open_connections(process: ServerProcess) -> None:
    baseline = process.threads()
    sockets = open_half_open(process.port, 100)
    try:
        assert wait_for(lambda: process.connections() >= 100)
        assert answered_meanwhile(process.url)
        assert process.threads() <= baseline + 4, (baseline, process.threads())
    finally:
        for sock in sockets:
            sock.close()


def test_past_max_pending_the_oldest_waiting_connection_goes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with OllamaServer() as server:
        monkeypatch.setattr(server._httpd, "max_pending", 5)
        sockets = open_half_open(server.port, 6)
        try:
            assert closed_by_server(sockets[0], within=3)
            assert not closed_by_server(sockets[-1], within=0.2)
            assert answered_meanwhile(server.url)
        finally:
            for sock in sockets:
                sock.close()


# -- web pages -------------------------------------------------------------------------------------

PAGE = "http://evil.example"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/copy", {"source": "echo", "destination": "stolen"}),
        ("POST", "/api/delete", {"model": "echo"}),
        ("DELETE", "/api/delete", {"model": "echo"}),
        ("POST", "/api/generate", {"model": "echo", "prompt": "hi"}),
    ],
)
def test_a_web_page_gets_403_and_changes_nothing(
    fresh: OllamaServer, method: str, path: str, body: dict[str, str]
) -> None:
    before = _names(fresh)
    headers = {"Origin": PAGE, "Content-Type": "text/plain;charset=UTF-8"}
    reply = exchange(fresh, method, path, body, headers=headers)
    assert (reply.status, reply.body) == (403, b"")
    assert "access-control-allow-origin" not in reply.headers
    assert _names(fresh) == before
    assert fresh.scheduler.loaded() == []


@pytest.mark.parametrize(
    "origin",
    [
        "http://localhost",
        "http://localhost:8888",
        "https://127.0.0.1:8443",
        "http://0.0.0.0:3000",
        "vscode-webview://1abc",
        "app://obsidian.md",
        "file://",
    ],
)
def test_local_origins_may_call(srv: OllamaServer, origin: str) -> None:
    reply = exchange(srv, "GET", "/api/version", headers={"Origin": origin})
    assert reply.status == 200
    assert (reply.headers["access-control-allow-origin"], reply.headers["vary"]) == (
        origin,
        "Origin",
    )


@pytest.mark.parametrize(
    "origin", ["null", "http://localhost.evil.example", "chrome-extension://x"]
)
def test_other_origins_may_not(srv: OllamaServer, origin: str) -> None:
    assert exchange(srv, "GET", "/api/version", headers={"Origin": origin}).status == 403


def test_an_origin_equal_to_the_host_is_not_cross_origin(srv: OllamaServer) -> None:
    host = "notebook.localhost:8888"
    reply = exchange(srv, "GET", "/api/version", headers={"Host": host, "Origin": f"http://{host}"})
    assert reply.status == 200 and "access-control-allow-origin" not in reply.headers


def test_ollama_origins_adds_origins(monkeypatch: pytest.MonkeyPatch) -> None:
    entries = "https://app.example.com,chrome-extension://*, https://*.example, https://x.example"
    monkeypatch.setenv("OLLAMA_ORIGINS", f"'{entries}'")
    assert allowed_origins()[:4] == entries.split(",")  # quotes stripped, entries not trimmed
    with OllamaServer() as server:
        for origin, status in [
            ("https://app.example.com", 200),
            ("chrome-extension://abcdef", 200),
            ("https://a.example", 403),  # " https://*.example" never matches
            ("https://x.example", 403),  # Ollama would not start with " https://x.example"
            ("https://other.example.com", 403),
            ("http://localhost:8888", 200),  # the local origins stay
        ]:
            reply = exchange(server, "GET", "/api/version", headers={"Origin": origin})
            assert reply.status == status, origin


def test_ollama_origins_star_allows_every_origin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_ORIGINS", "*")
    with OllamaServer() as server:
        reply = exchange(server, "GET", "/api/version", headers={"Origin": PAGE})
        assert reply.status == 200 and reply.headers["access-control-allow-origin"] == "*"
        assert "vary" not in reply.headers


def test_an_allowed_preflight_is_204_with_the_cors_headers(srv: OllamaServer) -> None:
    origin = "http://localhost:5173"
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    reply = exchange(srv, "OPTIONS", "/api/chat", headers=headers)
    assert (reply.status, reply.body) == (204, b"")
    assert "content-length" not in reply.headers
    assert reply.headers["access-control-allow-origin"] == origin
    assert reply.headers["access-control-allow-methods"] == "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS"
    allowed = reply.headers["access-control-allow-headers"].split(",")
    assert allowed[:6] == [
        "Authorization",
        "Content-Type",
        "User-Agent",
        "Accept",
        "X-Requested-With",
        "Openai-Beta",
    ]
    assert "X-Stainless-Retry-Count" in allowed
    assert reply.headers["access-control-max-age"] == "43200"
    vary = [line for line in reply.raw.split(b"\r\n") if line.lower().startswith(b"vary:")]
    assert vary == [
        b"Vary: Origin",
        b"Vary: Access-Control-Request-Method",
        b"Vary: Access-Control-Request-Headers",
    ]


def test_preflights_without_an_allowed_origin(srv: OllamaServer) -> None:
    preflight = {"Origin": PAGE, "Access-Control-Request-Method": "POST"}
    assert exchange(srv, "OPTIONS", "/api/delete", headers=preflight).status == 403
    # No Origin: the Host guard answers preflights for allowed host names, not for IPs.
    assert exchange(srv, "OPTIONS", "/api/chat", headers={"Host": "localhost:11434"}).status == 204
    assert exchange(srv, "OPTIONS", "/api/chat").status == 405


def test_the_host_guard_still_applies_to_allowed_origins(srv: OllamaServer) -> None:
    headers = {"Origin": "http://localhost:8888", "Host": "evil.example"}
    assert exchange(srv, "GET", "/api/version", headers=headers).status == 403


def test_the_package_clients_send_no_origin(srv: OllamaServer) -> None:
    srv.clear()
    reply = requests.post(
        srv.url + "/api/generate", json={"model": "echo", "prompt": "hi"}, timeout=5
    )
    assert ndjson(reply)[-1]["done"] is True
    assert "Origin" not in srv.requests[-1].headers
