"""Helpers for talking to the local server at the byte level, where ``requests`` hides too much."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import requests

from ollama_magic.server import OllamaServer, ScriptedEngine
from ollama_magic.server.engine import ChatJob, Event, GenerateJob, ModelCard

CREATED_AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{0,8}[1-9])?Z$")
"""Go's RFC3339Nano in UTC: nanoseconds with trailing zeros trimmed (no dot when zero)."""

LOCAL_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{0,8}[1-9])?(Z|[+-]\d\d:\d\d)$")

METRIC_KEYS = [
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
]
"""The metrics that end a final chunk, in Ollama's order (generate and chat alike)."""


def post(server: OllamaServer, path: str, body: Any, **kwargs: Any) -> requests.Response:
    """POST ``body`` as JSON (or raw bytes/str) to the server."""
    if isinstance(body, (bytes, str)):
        return requests.post(server.url + path, data=body, timeout=10, **kwargs)
    return requests.post(server.url + path, json=body, timeout=10, **kwargs)


def ndjson(response: requests.Response) -> list[dict[str, Any]]:
    """Every line of an NDJSON body, parsed."""
    return [json.loads(line) for line in response.content.split(b"\n") if line]


def answer(lines: list[dict[str, Any]], key: str = "response") -> str:
    return "".join(line.get(key, "") for line in lines)


def parse_go_time(text: str) -> datetime:
    """Parse RFC3339Nano (Python stops at microseconds, so the fraction is cut)."""
    match = re.match(r"^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", text)
    assert match, text
    base, fraction, zone = match.groups()
    fraction = (fraction or "0")[:6].ljust(6, "0")
    zone = "+00:00" if zone == "Z" else zone
    return datetime.fromisoformat(f"{base}.{fraction}{zone}")


def seconds_from_now(text: str) -> float:
    return (parse_go_time(text) - datetime.now(timezone.utc)) / timedelta(seconds=1)


@dataclass
class RawResponse:
    """An HTTP/1.1 response as bytes: status, headers (lower-case names), chunks as framed."""

    status: int
    headers: dict[str, str]
    body: bytes  # de-chunked
    chunks: list[bytes] | None  # the chunk payloads, when chunked
    terminated: bool  # a chunked body ended with the zero-length chunk
    raw: bytes

    @property
    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.body.split(b"\n") if line]


def exchange(
    server: OllamaServer,
    method: str,
    path: str,
    body: bytes | dict[str, Any] = b"",
    headers: dict[str, str] | None = None,
    recv_size: int = 65536,
    reads: list[bytes] | None = None,
) -> RawResponse:
    """Send one request with ``Connection: close`` on a raw socket and read until EOF.

    ``reads`` collects what each ``recv`` returned, to see how the bytes arrived.
    """
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    head = {"Host": f"127.0.0.1:{server.port}", "Connection": "close", **(headers or {})}
    if body or method == "POST":
        head["Content-Length"] = str(len(body))
    request = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items())
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(request.encode() + b"\r\n" + body)
        data = b""
        while True:
            try:
                piece = sock.recv(recv_size)
            except ConnectionResetError:
                break
            if not piece:
                break
            if reads is not None:
                reads.append(piece)
            data += piece
    return parse_response(data, head_only=method == "HEAD")


def payload_splits(reads: list[bytes]) -> list[int]:
    """Where the reads of a chunked response cut its de-chunked body (offsets into the body)."""
    data = b"".join(reads)
    pos = data.index(b"\r\n\r\n") + 4
    payloads: list[tuple[int, int, int]] = []  # (raw offset, body offset, size) per chunk
    body_len = 0
    while True:
        line_end = data.index(b"\r\n", pos)
        size = int(data[pos:line_end], 16)
        if size == 0:
            break
        payloads.append((line_end + 2, body_len, size))
        pos = line_end + 2 + size + 2
        body_len += size
    splits, boundary = [], 0
    for read in reads[:-1]:
        boundary += len(read)
        offset = 0
        for raw_start, body_start, size in payloads:
            if raw_start < boundary:
                offset = body_start + min(boundary - raw_start, size)
        splits.append(offset)
    return splits


def parse_response(data: bytes, head_only: bool = False) -> RawResponse:
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split()[1])
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if head_only or headers.get("transfer-encoding") != "chunked":
        return RawResponse(status, headers, rest, None, False, data)
    chunks, body, terminated = [], b"", False
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            terminated = rest == b"\r\n"
            break
        chunk, rest = rest[:size], rest[size:]
        assert rest[:2] == b"\r\n", "chunk not followed by CRLF"
        rest = rest[2:]
        chunks.append(chunk)
        body += chunk
    return RawResponse(status, headers, body, chunks, terminated, data)


class ProtocolEngine:
    """The scripted models behind nothing but the Engine protocol (``load`` and ``unload`` do
    nothing); tests subclass it to change one method."""

    def __init__(self) -> None:
        self.inner = ScriptedEngine()

    def models(self) -> list[ModelCard]:
        return self.inner.models()

    def load(self, name: str, options: dict[str, Any]) -> None:
        pass

    def unload(self, name: str) -> None:
        pass

    def generate(self, job: GenerateJob) -> Iterator[Event]:
        return self.inner.generate(job)

    def chat(self, job: ChatJob) -> Iterator[Event]:
        return self.inner.chat(job)

    def embed(self, name: str, inputs: list[str], options: dict[str, Any]) -> list[list[float]]:
        return self.inner.embed(name, inputs, options)


def pull_embedder(server: OllamaServer) -> None:
    """Install the scripted embedding model ``embedder`` (at once): since Ollama 0.30 a chat
    model such as ``echo`` gives no vectors, so embedding tests pull it as a user would."""
    speed, server.pull_speed = server.pull_speed, 1e12
    try:
        reply = post(server, "/api/pull", {"model": "embedder", "stream": False})
    finally:
        server.pull_speed = speed
    assert reply.json() == {"status": "success"}, reply.text
