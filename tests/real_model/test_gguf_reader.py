"""The pure GGUF header reader on small files written here (needs no model and no llama.cpp)."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path
from typing import Any

import pytest

from ollama_magic.server.gguf import (
    GGUFError,
    file_sha256,
    file_type_name,
    human_number,
    read_header,
)

_SCALARS = {"u8": (0, "<B"), "i32": (5, "<i"), "u32": (4, "<I"), "f32": (6, "<f")}
_SCALARS |= {"bool": (7, "<?"), "u64": (10, "<Q"), "i64": (11, "<q"), "f64": (12, "<d")}


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def _value(kind: str, value: Any) -> bytes:
    if kind == "str":
        return struct.pack("<I", 8) + _string(value)
    if kind.startswith("arr:"):
        item = kind[4:]
        if item == "str":
            body = b"".join(_string(v) for v in value)
            return struct.pack("<IIQ", 9, 8, len(value)) + body
        code, fmt = _SCALARS[item]
        body = b"".join(struct.pack(fmt, v) for v in value)
        return struct.pack("<IIQ", 9, code, len(value)) + body
    code, fmt = _SCALARS[kind]
    return struct.pack("<I", code) + struct.pack(fmt, value)


def write_gguf(
    path: Path,
    kv: list[tuple[str, str, Any]],
    tensors: list[tuple[str, tuple[int, ...]]],
    version: int = 3,
) -> Path:
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kv))
    for key, kind, value in kv:
        out += _string(key) + _value(kind, value)
    for name, dims in tensors:
        out += _string(name) + struct.pack(f"<I{len(dims)}Q", len(dims), *dims)
        out += struct.pack("<IQ", 0, 0)
    path.write_bytes(out + b"\0" * 64)  # stand-in for tensor data, never read
    return path


KV = [
    ("general.architecture", "str", "qwen3"),
    ("general.file_type", "u32", 15),
    ("general.license", "str", "mit"),
    ("qwen3.context_length", "u32", 40960),
    ("qwen3.rope.freq_base", "f32", 0.5),
    ("qwen3.big", "u64", 2**40),
    ("qwen3.neg", "i64", -3),
    ("qwen3.flag", "bool", True),
    ("qwen3.eps", "f64", 1e-6),
    ("tokenizer.chat_template", "str", "{{ messages }} é"),
    ("tokenizer.ggml.tokens", "arr:str", [f"t{i}" for i in range(1000)]),
    ("tokenizer.ggml.scores", "arr:f32", [0.25] * 6),
    ("general.tags", "arr:str", ["a", "b"]),
    ("small.ints", "arr:i32", [1, -2, 3]),
]


def test_reads_keys_types_and_cuts_long_arrays(tmp_path: Path):
    path = write_gguf(tmp_path / "m.gguf", KV, [("a", (4, 3)), ("b", (5,)), ("c", (2, 2, 2))])
    header = read_header(path)
    assert header.version == 3
    assert header.architecture == "qwen3"
    assert header.context_length == 40960
    assert header.file_type == "Q4_K_M"
    assert header.chat_template == "{{ messages }} é"
    assert header.tensor_count == 3
    assert header.parameter_count == 12 + 5 + 8
    assert header.parameters == 25  # no general.parameter_count: counted from the tensors
    meta = header.metadata
    assert meta["qwen3.rope.freq_base"] == 0.5
    assert meta["qwen3.big"] == 2**40 and meta["qwen3.neg"] == -3
    assert meta["qwen3.flag"] is True and meta["qwen3.eps"] == 1e-6
    assert meta["general.tags"] == ["a", "b"] and meta["small.ints"] == [1, -2, 3]
    assert header.array_lengths["tokenizer.ggml.tokens"] == 1000
    info = header.model_info()
    assert info["tokenizer.ggml.tokens"] == [] and info["tokenizer.ggml.scores"] == []
    assert info["general.parameter_count"] == 25
    assert list(info) == sorted(info)


def test_parameter_count_key_wins(tmp_path: Path):
    kv = [*KV, ("general.parameter_count", "u64", 134_515_008)]
    header = read_header(write_gguf(tmp_path / "m.gguf", kv, [("a", (2,))]))
    assert header.parameters == 134_515_008
    assert human_number(header.parameters) == "134.52M"


def test_keep_arrays_limit(tmp_path: Path):
    header = read_header(write_gguf(tmp_path / "m.gguf", KV, []), keep_arrays=2000)
    assert len(header.metadata["tokenizer.ggml.tokens"]) == 1000


@pytest.mark.parametrize(
    "data",
    [b"GGML" + bytes(20), b"GGUF" + struct.pack("<I", 1) + bytes(16), b"GGUF\x03\x00"],
    ids=["magic", "version", "truncated"],
)
def test_rejects_what_it_cannot_read(tmp_path: Path, data: bytes):
    path = tmp_path / "bad.gguf"
    path.write_bytes(data)
    with pytest.raises(GGUFError):
        read_header(path)


def test_helpers(tmp_path: Path):
    assert file_type_name(3) == "Q4_1" and file_type_name(999) == "unknown (999)"
    assert [human_number(n) for n in (999, 1_500, 2_000_000, 7_000_000_000, 8_030_261_248)] == [
        "999",
        "2K",
        "2M",
        "7B",
        "8.0B",
    ]
    path = tmp_path / "blob"
    path.write_bytes(b"x" * 3_000_000)
    assert file_sha256(path, chunk_size=4096) == hashlib.sha256(b"x" * 3_000_000).hexdigest()
