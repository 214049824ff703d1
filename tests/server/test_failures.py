"""Failures and rough networks: in-band errors, dropped connections, split writes, hang-ups."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from ollama_magic.server import OllamaServer
from ollama_magic.server.app import Handler
from ollama_magic.server.engine import Done, Event, GenerateJob, Pause, Token

from .helpers import ProtocolEngine, answer, exchange, parse_response, payload_splits, post

FAILURE = "an error was encountered while running the model: scripted failure"


def test_broken_streams_then_sends_an_error_line(srv: OllamaServer) -> None:
    reply = exchange(srv, "POST", "/api/generate", {"model": "broken", "prompt": "hi"})
    assert reply.status == 200 and reply.terminated  # the stream still ends properly
    *tokens, error = reply.lines
    assert answer(tokens) == "This answer is about to" and len(tokens) == 5
    assert error == {"error": FAILURE}  # only "error": no model, no done
    assert reply.chunks and reply.chunks[-1] == b'{"error":"' + FAILURE.encode() + b'"}\n'


def test_broken_without_streaming_is_a_500(srv: OllamaServer) -> None:
    reply = post(srv, "/api/generate", {"model": "broken", "prompt": "hi", "stream": False})
    assert (reply.status_code, reply.headers["Content-Type"]) == (
        500,
        "application/json; charset=utf-8",
    )
    assert reply.json() == {"error": FAILURE}


def test_failure_before_any_output_is_an_http_error(srv: OllamaServer) -> None:
    body = {"model": "broken", "prompt": "hi", "options": {"scripted_fail_after": 0}}
    reply = post(srv, "/api/generate", body)
    # Ollama switches the stream's content type to JSON, without charset
    assert (reply.status_code, reply.headers["Content-Type"]) == (500, "application/json")
    assert reply.content == b'{"error":"' + FAILURE.encode() + b'"}'


def test_broken_stops_at_num_predict_first(srv: OllamaServer) -> None:
    body = {"model": "broken", "prompt": "hi", "options": {"num_predict": 3}, "stream": False}
    assert post(srv, "/api/generate", body).json()["done_reason"] == "length"


def test_dropper_closes_without_the_terminator(srv: OllamaServer) -> None:
    reply = exchange(srv, "POST", "/api/generate", {"model": "dropper", "prompt": "hi"})
    assert reply.status == 200 and not reply.terminated
    assert answer(reply.lines) == "The line will drop now"
    assert all(not line["done"] for line in reply.lines)


def test_requests_sees_the_drop(srv: OllamaServer) -> None:
    reply = post(srv, "/api/generate", {"model": "dropper", "prompt": "hi"}, stream=True)
    got = []
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for line in reply.iter_lines():
            got.append(json.loads(line))
    assert answer(got) == "The line will drop now"


@pytest.mark.parametrize(
    "body",
    [
        {"model": "dropper", "prompt": "hi", "stream": False},
        {"model": "dropper", "prompt": "hi", "options": {"scripted_fail_after": 0}},
    ],
)
def test_drop_before_any_output_sends_nothing(srv: OllamaServer, body: dict) -> None:
    with pytest.raises(requests.exceptions.ConnectionError):
        post(srv, "/api/generate", body)


def test_chinese_lines_arrive_split_through_characters(srv: OllamaServer) -> None:
    body = {"model": "chinese", "prompt": "介绍一下人工智能"}
    # Some reads really end inside a character: the body goes on with a continuation byte.
    # Whether the client's recv returns at a pause is up to the OS scheduler, so on a busy
    # machine one response may not show it; a few tries make the test reliable.
    for _ in range(5):
        reads: list[bytes] = []
        reply = exchange(srv, "POST", "/api/generate", body, reads=reads)
        splits = [at for at in payload_splits(reads) if at < len(reply.body)]
        if any(0x80 <= reply.body[at] < 0xC0 for at in splits):
            break
    else:
        pytest.fail("no read ended inside a UTF-8 character in 5 responses")
    assert reply.chunks and max(len(chunk) for chunk in reply.chunks) <= 5

    def is_utf8(piece: bytes) -> bool:
        try:
            piece.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True

    assert not all(is_utf8(chunk) for chunk in reply.chunks)  # cuts through characters
    text = answer(reply.lines)
    assert text.startswith("关于「介绍一下人工智能」：人工智能（AI）是计算机科学的一个分支")
    assert text.endswith("🤖") and "\ufffd" not in text
    assert reply.lines[-1]["done_reason"] == "stop"


def test_chinese_through_requests_byte_by_byte(srv: OllamaServer) -> None:
    reply = post(srv, "/api/generate", {"model": "chinese", "prompt": "AI"}, stream=True)
    data = b"".join(reply.iter_content(1))
    lines = [json.loads(line) for line in data.split(b"\n") if line]
    assert "人工智能" in answer(lines) and lines[-1]["done"] is True


def _read_lines_then_close(server: OllamaServer, body: dict, count: int) -> float:
    """Stream ``body``, read ``count`` lines, hang up; return the monotonic hang-up time."""
    sock = socket.create_connection((server.host, server.port), timeout=10)
    payload = json.dumps(body).encode()
    sock.sendall(
        b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n%s"
        % (len(payload), payload)
    )
    data = b""
    while data.count(b"}\n") < count:
        data += sock.recv(4096)
    sock.close()
    return time.monotonic()


def test_server_notices_a_client_that_hangs_up(fresh: OllamaServer) -> None:
    closed = _read_lines_then_close(fresh, {"model": "slow", "prompt": "hi"}, 2)
    (record,) = fresh.requests
    assert record.finished.wait(2)
    assert record.disconnected_at is not None
    assert record.disconnected_at - closed < 0.5


class _Watched(ProtocolEngine):
    """An engine whose generator reports being closed, to prove the server stops it."""

    def __init__(self) -> None:
        super().__init__()
        self.yielded = 0
        self.closed = threading.Event()

    def generate(self, job: GenerateJob) -> Iterator[Event]:
        try:
            for n in range(10_000):
                self.yielded += 1
                yield Token(response=f" {n}")
                if n % 2:
                    yield Pause(0.01)
            yield Done()
        finally:
            self.closed.set()


def test_hanging_up_closes_the_engines_generator() -> None:
    engine = _Watched()
    with OllamaServer([engine]) as server:
        closed = _read_lines_then_close(server, {"model": "echo", "prompt": "hi"}, 3)
        assert engine.closed.wait(1)
        assert time.monotonic() - closed < 0.5
        assert engine.yielded < 500
        (record,) = server.requests
        assert record.finished.wait(1) and record.disconnected_at is not None


def test_stopping_the_server_ends_open_streams() -> None:
    server = OllamaServer().start()
    options = {"num_predict": -1, "scripted_delay": 0.01}
    body = {"model": "lorem", "prompt": "go", "options": options}
    reply = post(server, "/api/generate", body, stream=True)
    lines = reply.iter_lines()
    next(lines)
    started = time.monotonic()
    server.stop()
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for _ in lines:
            pass
    assert time.monotonic() - started < 2


def test_keep_alive_connections_serve_several_requests(srv: OllamaServer) -> None:
    with requests.Session() as session:
        for model in ("echo", "broken", "echo"):
            reply = session.post(srv.url + "/api/generate", json={"model": model, "prompt": "x"})
            assert reply.status_code == 200
        assert session.get(srv.url + "/api/version").json() == {"version": "0.32.15"}


def test_chunked_request_bodies_are_read(srv: OllamaServer) -> None:
    payload = b'{"model":"echo","prompt":"hi","stream":false}'
    with socket.create_connection((srv.host, srv.port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/generate HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n%s\r\n" % (10, payload[:10])
            + b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload) - 10, payload[10:])
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    reply = parse_response(data)
    assert reply.status == 200
    assert json.loads(reply.body)["response"] == "Echo: <|user|>hi\n<|assistant|>"


def _serve_one_connection(
    server: OllamaServer, use: Callable[[socket.socket], None]
) -> threading.Event:
    """Run ``use`` on a kept-alive connection; the event is set once the server is done with it
    (after any ``handle_error``), so a test need not sleep."""
    done = threading.Event()
    httpd = server._httpd
    shutdown_request = httpd.shutdown_request

    def finished(request: Any) -> None:
        shutdown_request(request)
        done.set()

    httpd.shutdown_request = finished  # type: ignore[method-assign]
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        use(sock)
    return done


def _reset_after_one_request(sock: socket.socket) -> None:
    sock.sendall(b"GET /api/version HTTP/1.1\r\nHost: localhost\r\n\r\n")
    reply = b""
    while not reply.endswith(b'"}'):  # the whole {"version":...} body
        piece = sock.recv(65536)
        assert piece, reply
        reply += piece
    assert reply.startswith(b"HTTP/1.1 200")
    # Close with SO_LINGER 0: the kernel sends RST, so the server's next read of the idle
    # kept-alive connection fails with ConnectionResetError.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_a_client_resetting_an_idle_connection_prints_nothing(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with OllamaServer() as server:
        assert _serve_one_connection(server, _reset_after_one_request).wait(5)
    assert capfd.readouterr().err == ""


def _request_that_crashes(sock: socket.socket) -> None:
    sock.sendall(b"GET /api/version HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert sock.recv(65536) == b""  # the handler crashed: the server closed the connection


def test_real_bugs_in_the_connection_handler_are_still_printed(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: object) -> bool:
        raise RuntimeError("a bug in request parsing")

    monkeypatch.setattr(Handler, "parse_request", broken)
    with OllamaServer() as server:
        assert _serve_one_connection(server, _request_that_crashes).wait(5)
    err = capfd.readouterr().err
    assert "Exception occurred during processing of request" in err
    assert "RuntimeError: a bug in request parsing" in err
