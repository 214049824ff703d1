"""The NDJSON decoder at every byte boundary, with multi-byte text and in-band errors."""

from __future__ import annotations

import json

import pytest

from ollama_magic.errors import StreamError
from ollama_magic.ndjson import NDJSONDecoder

OBJECTS = [
    {"response": "人工智能", "done": False},
    {"response": "é😀 <think>", "thinking": "", "done": False},
    {"response": "", "done": True, "context": [1, 2, 3]},
]
WIRE = b"".join(json.dumps(o, ensure_ascii=False).encode() + b"\n" for o in OBJECTS)


def decode(chunks: list[bytes]) -> list[dict]:
    d = NDJSONDecoder()
    out = []
    for c in chunks:
        out += d.feed(c)
    return out + d.flush()


def test_one_piece() -> None:
    assert decode([WIRE]) == OBJECTS


@pytest.mark.parametrize("cut", range(1, len(WIRE)))
def test_every_single_cut(cut: int) -> None:
    assert decode([WIRE[:cut], WIRE[cut:]]) == OBJECTS


def test_byte_by_byte() -> None:
    assert decode([WIRE[i : i + 1] for i in range(len(WIRE))]) == OBJECTS


def test_last_line_without_newline_is_flushed() -> None:
    assert decode([b'{"done": true}']) == [{"done": True}]


def test_blank_lines_are_skipped() -> None:
    assert decode([b'\n{"a": 1}\n\n']) == [{"a": 1}]


def test_in_band_error_line_raises_with_the_server_text() -> None:
    d = NDJSONDecoder()
    assert d.feed(b'{"response": "a", "done": false}\n') == [{"response": "a", "done": False}]
    with pytest.raises(StreamError, match="scripted failure"):
        d.feed(b'{"error":"an error was encountered while running the model: scripted failure"}\n')


def test_garbage_line_raises_stream_error() -> None:
    with pytest.raises(StreamError, match="not JSON"):
        NDJSONDecoder().feed(b"<html>\n")


def test_a_long_context_is_kept_compact_and_reads_like_a_list() -> None:
    ids = list(range(100_000, 130_000))
    line = json.dumps({"response": "", "done": True, "context": ids, "eval_count": 3}).encode()
    (obj,) = NDJSONDecoder().feed(line.replace(b", ", b",") + b"\n")
    assert obj["context"] == ids and obj["eval_count"] == 3 and obj["done"] is True
    assert obj["context"].itemsize == 4  # machine ints, not Python objects
    assert json.loads(json.dumps(list(obj["context"]))) == ids


def test_a_short_context_stays_a_plain_list() -> None:
    (obj,) = NDJSONDecoder().feed(b'{"done":true,"context":[1,2,3]}\n')
    assert type(obj["context"]) is list
