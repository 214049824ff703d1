"""Tables, cards, sizes and times for the line commands: pure functions of their inputs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from ollama_magic.present import (
    LoadedList,
    ModelInfo,
    ModelList,
    ago,
    human_bytes,
    parse_time,
    processor,
    until,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)

TAG = {
    "name": "qwen3:8b",
    "model": "qwen3:8b",
    "modified_at": "2026-02-26T12:00:00.123456789+01:00",
    "size": 5_225_388_164,
    "digest": "a" * 64,
    "details": {
        "family": "qwen3",
        "parameter_size": "8.2B",
        "quantization_level": "Q4_K_M",
    },
    "capabilities": ["completion", "tools", "thinking"],
}


def test_sizes_use_decimal_units_like_the_cli() -> None:
    assert [human_bytes(n) for n in (0, 999, 1000, 1_500_000, 5_225_388_164)] == [
        "0 B",
        "999 B",
        "1.0 KB",
        "1.5 MB",
        "5.2 GB",
    ]


def test_relative_times() -> None:
    assert ago(NOW - timedelta(days=400), NOW) == "1 year ago"
    assert ago(NOW - timedelta(hours=5), NOW) == "5 hours ago"
    assert ago(None, NOW) == ""
    assert until(NOW + timedelta(minutes=4, seconds=50), NOW) == "in 5 min"
    assert until(NOW + timedelta(seconds=30), NOW) == "in 30 s"
    assert until(NOW + timedelta(days=365 * 292), NOW) == "forever"
    assert until(NOW - timedelta(seconds=1), NOW) == "stopping…"


def test_timestamps_with_nanoseconds_and_offsets_parse() -> None:
    parsed = parse_time("2026-02-26T12:00:00.123456789+01:00")
    assert parsed == datetime(2026, 2, 26, 11, 0, 0, 123456, tzinfo=timezone.utc)
    assert parse_time("2026-02-26T12:00:00Z") == datetime(2026, 2, 26, 12, tzinfo=timezone.utc)
    assert parse_time("not a time") is None and parse_time(None) is None


def test_model_list_as_text_and_html() -> None:
    evil = dict(TAG, name="<script>x</script>:latest")
    table = ModelList([TAG, evil], now=NOW)
    text = repr(table)
    header, first, _second = text.splitlines()
    assert header.split() == [
        "NAME",
        "SIZE",
        "FAMILY",
        "PARAMETERS",
        "QUANTIZATION",
        "CAPABILITIES",
        "MODIFIED",
    ]
    assert first.startswith("qwen3:8b") and "5.2 GB" in first and "8.2B" in first
    assert "completion, tools, thinking" in first and first.endswith("3 days ago")
    # columns line up: every value starts where its header starts
    assert first.index("5.2 GB") == header.index("SIZE")
    html = table._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert html.count("<tr>") == 3
    assert table.names == ["qwen3:8b", "<script>x</script>:latest"] and len(table) == 2


def test_empty_lists_say_what_to_do() -> None:
    assert "%ollama pull NAME" in repr(ModelList([], now=NOW))
    assert "%ollama load NAME" in LoadedList([], now=NOW)._repr_html_()


def test_loaded_list_shows_memory_processor_and_time_left() -> None:
    row = {
        "name": "qwen3:8b",
        "size": 6_000_000_000,
        "size_vram": 3_000_000_000,
        "context_length": 8192,
        "expires_at": (NOW + timedelta(minutes=4)).isoformat(),
    }
    forever = dict(row, name="keep:latest", size_vram=0, expires_at="2318-01-01T00:00:00Z")
    text = repr(LoadedList([row, forever], now=NOW))
    assert "6.0 GB" in text and "3.0 GB" in text and "50%/50% CPU/GPU" in text
    assert "8192" in text and "in 4 min" in text
    assert text.splitlines()[2].startswith("keep:latest") and "forever" in text
    assert processor(10, 10) == "100% GPU"


def test_model_info_card() -> None:
    info = ModelInfo(
        "qwen3:8b",
        {
            "details": TAG["details"],
            "model_info": {"general.architecture": "qwen3", "qwen3.context_length": 40960},
            "capabilities": ["completion", "thinking"],
            "parameters": f"{'temperature':<30} 0.6\n{'stop':<30} " + '"<|im_end|>"',
            "license": "Apache License\nVersion 2.0, January 2004\nmore\nmore",
            "template": "{{ .Prompt }}",
        },
    )
    text = repr(info)
    assert text.splitlines()[0] == "  Model"
    assert "architecture      qwen3" in text and "context length    40960" in text
    assert "Capabilities" in text and "    thinking" in text
    assert 'stop           "<|im_end|>"' in text
    assert "Apache License\n    Version 2.0, January 2004 …" in text
    assert info.capabilities == ["completion", "thinking"]
    html = info._repr_html_()
    assert "&lt;|im_end|&gt;" in html and "<details><summary>Template" in html
