"""Clients that misbehave on purpose, and a server in its own process to measure.

Shared by ``test_hostile.py`` and ``benchmarks/server_hostile.py``. Everything talks to
127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import re
import resource
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psutil
import requests

from .helpers import RawResponse, parse_response

_URL_LINE = re.compile(r"Ollama-compatible server on http://127\.0\.0\.1:(\d+)\n")
_PIECE = bytes(1 << 20)  # what an oversized body is made of, sent a MiB at a time


@dataclass
class ServerProcess:
    """``python -m ollama_magic.server`` on a free port, for measuring it from outside."""

    process: subprocess.Popen[str]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss(self) -> int:
        return int(psutil.Process(self.process.pid).memory_info().rss)

    def threads(self) -> int:
        return psutil.Process(self.process.pid).num_threads()

    def connections(self) -> int:
        """Established TCP connections the server holds on its port."""
        return sum(
            1
            for c in psutil.Process(self.process.pid).net_connections("tcp")
            if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == self.port
        )


@contextlib.contextmanager
def server_process(*argv: str) -> Iterator[ServerProcess]:
    """Start the server CLI (scripted models, quiet); kill it afterwards."""
    process = subprocess.Popen(
        [sys.executable, "-m", "ollama_magic.server", "--port", "0", "--quiet", *argv],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = _URL_LINE.fullmatch(line)
        assert match, line
        yield ServerProcess(process, int(match.group(1)))
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def post_oversized(port: int, size: int, *, chunked: bool = False) -> RawResponse:
    """POST ``size`` zero bytes to ``/api/generate``, all of them, as a client that only reads
    the answer once its body is sent would (the server must not hold what it refuses)."""
    head = f"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {size}\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode())
        sent = 0
        while sent < size:
            piece = _PIECE[: size - sent]
            sock.sendall(b"%x\r\n%b\r\n" % (len(piece), piece) if chunked else piece)
            sent += len(piece)
        if chunked:
            sock.sendall(b"0\r\n\r\n")
        return parse_response(_read_until_closed(sock))


def _read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while piece := sock.recv(65536):
        data += piece
    return data


def open_half_open(port: int, count: int) -> list[socket.socket]:
    """``count`` connections that each send the start of a request head, and no more."""
    _allow_descriptors(count + 256)
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
        sockets.append(sock)
    return sockets


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes ``sock`` (EOF or reset) within ``within`` seconds."""
    poller = select.poll()  # not select.select: descriptors may be above 1024
    poller.register(sock, select.POLLIN)
    if not poller.poll(within * 1000):
        return False
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def answered_meanwhile(url: str) -> bool:
    """Whether a normal request gets its answer within 5 seconds."""
    try:
        reply = requests.post(
            url + "/api/generate",
            json={"model": "echo", "prompt": "hi", "stream": False},
            timeout=5,
        )
    except requests.RequestException:
        return False
    return reply.status_code == 200 and reply.json()["done"] is True


def wait_for(condition: Callable[[], object], timeout: float = 5.0) -> bool:
    """Poll ``condition()`` until it is true or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def _allow_descriptors(count: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < count:
        wanted = count if hard == resource.RLIM_INFINITY else min(count, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


__all__ = [
    "ServerProcess",
    "answered_meanwhile",
    "closed_by_server",
    "open_half_open",
    "post_oversized",
    "server_process",
    "wait_for",
]
