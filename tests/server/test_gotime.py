"""Go's duration parser and RFC 3339 formatting, checked against Go's own test tables."""

from __future__ import annotations

import time

import pytest

from ollama_magic.common.gotime import MAX_DURATION, DurationError, format_time, parse_duration

NS, US, MS, S, M, H = 1, 1_000, 1_000_000, 1_000_000_000, 60_000_000_000, 3_600_000_000_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # from Go's time/time_test.go parseDurationTests
        ("0", 0),
        ("5s", 5 * S),
        ("30s", 30 * S),
        ("1478s", 1478 * S),
        ("-5s", -5 * S),
        ("+5s", 5 * S),
        ("-0", 0),
        ("+0", 0),
        ("5.0s", 5 * S),
        ("5.6s", 5 * S + 600 * MS),
        ("5.s", 5 * S),
        (".5s", 500 * MS),
        ("1.0s", 1 * S),
        ("1.00s", 1 * S),
        ("1.004s", 1 * S + 4 * MS),
        ("1.0040s", 1 * S + 4 * MS),
        ("100.00100s", 100 * S + 1 * MS),
        ("10ns", 10 * NS),
        ("11us", 11 * US),
        ("12µs", 12 * US),
        ("12μs", 12 * US),
        ("13ms", 13 * MS),
        ("14s", 14 * S),
        ("15m", 15 * M),
        ("16h", 16 * H),
        ("3h30m", 3 * H + 30 * M),
        ("10.5s4m", 4 * M + 10 * S + 500 * MS),
        ("-2m3.4s", -(2 * M + 3 * S + 400 * MS)),
        ("1h2m3s4ms5us6ns", 1 * H + 2 * M + 3 * S + 4 * MS + 5 * US + 6 * NS),
        ("39h9m14.425s", 39 * H + 9 * M + 14 * S + 425 * MS),
        ("52763797000ns", 52763797000 * NS),
        ("0.3333333333333333333h", 20 * M),
        ("9007199254740993ns", (1 << 53) + 1),
        ("9223372036854775807ns", MAX_DURATION),
        ("9223372036854775.807us", MAX_DURATION),
        ("9223372036s854ms775us807ns", MAX_DURATION),
        ("-9223372036854775808ns", -(1 << 63)),
        ("-9223372036854775.808us", -(1 << 63)),
        ("0.100000000000000000000h", 6 * M),
        ("0.830103483285477580700h", 49 * M + 48 * S + 372539827 * NS),
    ],
)
def test_parse_duration_matches_go(text: str, expected: int) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'time: invalid duration ""'),
        ("3", 'time: missing unit in duration "3"'),
        ("300", 'time: missing unit in duration "300"'),
        ("-1", 'time: missing unit in duration "-1"'),
        ("-", 'time: invalid duration "-"'),
        ("s", 'time: invalid duration "s"'),
        (".", 'time: invalid duration "."'),
        ("-.", 'time: invalid duration "-."'),
        (".s", 'time: invalid duration ".s"'),
        ("+.s", 'time: invalid duration "+.s"'),
        ("abc", 'time: invalid duration "abc"'),
        ("1d", 'time: unknown unit "d" in duration "1d"'),
        ("1.5 h", 'time: unknown unit " h" in duration "1.5 h"'),
        ("3000000h", 'time: invalid duration "3000000h"'),
        ("9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"'),
        ("9223372036854775.808us", 'time: invalid duration "9223372036854775.808us"'),
        ("\x85\x85", 'time: invalid duration "\\xc2\\x85\\xc2\\x85"'),
        ("5é", 'time: unknown unit "\\xc3\\xa9" in duration "5\\xc3\\xa9"'),
    ],
)
def test_parse_duration_errors_are_gos(text: str, message: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_duration(text)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (1_700_000_000_000_000_000, "2023-11-14T22:13:20Z"),
        (1_700_000_000_100_000_000, "2023-11-14T22:13:20.1Z"),
        (1_700_000_000_000_000_123, "2023-11-14T22:13:20.000000123Z"),
        (1_700_000_000_123_456_780, "2023-11-14T22:13:20.12345678Z"),
    ],
)
def test_utc_times_trim_trailing_zeros(ns: int, text: str) -> None:
    assert format_time(ns, utc=True) == text


@pytest.mark.skipif(not hasattr(time, "tzset"), reason="needs time.tzset")
def test_local_times_carry_the_offset(monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        monkeypatch.setenv("TZ", "America/Los_Angeles")
        time.tzset()
        assert format_time(1_700_000_000_500_000_000, utc=False) == "2023-11-14T14:13:20.5-08:00"
        monkeypatch.setenv("TZ", "Asia/Kolkata")
        time.tzset()
        assert format_time(1_700_000_000_000_000_000, utc=False) == "2023-11-15T03:43:20+05:30"
        monkeypatch.setenv("TZ", "UTC")
        time.tzset()
        assert format_time(1_700_000_000_000_000_000, utc=False) == "2023-11-14T22:13:20Z"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_forever_is_about_292_years_ahead() -> None:
    text = format_time(1_700_000_000 * S + MAX_DURATION, utc=True)
    assert text.startswith("2316-02-")  # 2023 + 292.27 years
