"""Servers and settings as untrusted input, without a kernel: the field readers, the presenters
fed arbitrary JSON, host addresses and their passwords, and timeouts."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ollama_magic import fields
from ollama_magic.args import ArgsError, timeout_value
from ollama_magic.client import HostError, OllamaClient, credentials, parse_host, redact
from ollama_magic.errors import UnexpectedReply
from ollama_magic.messages import describe, lacking
from ollama_magic.present import (
    LoadedList,
    ModelInfo,
    ModelList,
    load_summary,
    unload_summary,
)
from ollama_magic.progress import Progress
from ollama_magic.result import GenerationResult
from ollama_magic.session import chat_pieces, generate_pieces
from ollama_magic.widgets.logic import generating_models, transfer_status

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
HOSTILE = "<script>alert(1)</script>"

#: Any JSON value, plus the ones a hostile server likes: huge, negative, NaN, markup.
leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from([10**30, -(10**30), 2**63, -1, float("inf"), float("nan"), 1e300, HOSTILE])
)
json_values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def objects(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with any of ``keys``, each holding any JSON value."""
    return st.fixed_dictionaries({}, optional={key: json_values for key in keys})


# -- the field readers -------------------------------------------------------------------------


@given(json_values)
def test_every_reader_takes_any_json(value: Any) -> None:
    size = fields.count(value)
    assert size is None or (type(size) is int and 0 <= size <= fields.MAX_COUNT)
    found = fields.number(value)
    assert found is None or math.isfinite(found)
    wait = fields.seconds(value)
    assert wait is None or 0 < wait <= fields.MAX_SECONDS
    assert isinstance(fields.text(value, "?"), str)
    assert all(isinstance(t, str) for t in fields.texts(value))
    assert isinstance(fields.mapping(value), dict)
    assert all(isinstance(row, dict) for row in fields.rows(value))
    ids = fields.token_ids(value)
    assert ids is None or all(0 <= t <= fields.MAX_TOKEN for t in ids)
    assert fields.vectors(value) is None or isinstance(value, list)
    assert "\n" not in fields.one_line(value)


@pytest.mark.parametrize(
    ("value", "size"),
    [(0, 0), (8_000_000, 8_000_000), (8e6, 8_000_000), ("8", None), (-1, None), (True, None),
     (2**63, None), (float("nan"), None), (None, None), ([1], None)],
)
def test_count(value: Any, size: int | None) -> None:
    assert fields.count(value) == size


def test_text_and_one_line() -> None:
    assert [fields.text(v, "?") for v in ("a", 5, 1.5, float("inf"), None, {}, False)] == [
        "a", "5", "1.5", "?", "?", "?", "?"
    ]
    assert fields.one_line("a\n\tb  c") == "a b c"
    assert fields.one_line("x" * 500) == "x" * 299 + "…"


# -- presenters fed arbitrary JSON -------------------------------------------------------------


@settings(max_examples=200)
@given(st.lists(objects(["name", "size", "details", "capabilities", "modified_at"]), max_size=4))
def test_model_list_shows_any_rows(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        row.setdefault("name", HOSTILE)
    models = ModelList(rows, now=NOW)
    assert len(repr(models).splitlines()) == (1 + len(rows) if rows else 1)
    page = models._repr_html_()
    assert "<script" not in page
    assert all(isinstance(name, str) for name in models.names)
    generating_models(models.models)
    lacking("m", "vision", models.models)


@settings(max_examples=200)
@given(
    st.lists(
        objects(["name", "model", "size", "size_vram", "context_length", "expires_at"]),
        max_size=4,
    )
)
def test_loaded_list_shows_any_rows(rows: list[dict[str, Any]]) -> None:
    loaded = LoadedList(rows, now=NOW)
    repr(loaded)
    assert "<script" not in loaded._repr_html_()
    for row in rows:
        assert load_summary("m", 0.5, row, NOW).startswith("Loaded m in 0.50 s")
        assert unload_summary("m", row).startswith("Unloaded m")


@settings(max_examples=300)
@given(
    st.one_of(
        json_values,
        objects(
            ["system", "template", "license", "parameters", "modelfile", "details",
             "model_info", "capabilities"]
        ),
    )
)
def test_model_card_shows_any_answer(info: Any) -> None:
    card = ModelInfo(HOSTILE, info)
    repr(card)
    assert "<script" not in card._repr_html_()
    assert all(isinstance(c, str) for c in card.capabilities)
    for part in ("modelfile", "template", "parameters", "system", "license"):
        assert isinstance(card.part(part), str)


def test_model_card_escapes_every_part() -> None:
    card = ModelInfo(
        "m",
        {
            "system": HOSTILE,
            "template": HOSTILE,
            "license": HOSTILE,
            "parameters": f"stop {HOSTILE}",
            "details": {"family": HOSTILE, "parameter_size": HOSTILE},
            "capabilities": [HOSTILE],
        },
    )
    page = card._repr_html_()
    assert "<script" not in page and page.count("&lt;script&gt;") >= 6


progress_items = st.fixed_dictionaries(
    {},
    optional={
        "status": json_values,
        "digest": st.sampled_from(["sha256:a", "sha256:b"]) | json_values,
        "total": json_values,
        "completed": json_values,
    },
)


@settings(max_examples=300)
@given(st.lists(progress_items, max_size=6))
def test_progress_takes_any_items(items: list[dict[str, Any]]) -> None:
    progress = Progress("pull", HOSTILE, 0.0)
    for tick, item in enumerate(items):
        progress.feed(item, float(tick))
        progress.line()
    assert 0.0 <= progress.fraction <= 1.0
    assert "<script" not in progress.html()
    progress.summary(9.0)
    progress.stopped()
    transfer_status(progress)


def test_progress_ignores_wrong_numbers() -> None:
    progress = Progress("pull", "m", 0.0)
    progress.feed({"status": "pulling", "digest": "d", "total": 400, "completed": 100}, 1.0)
    for bad in ("500", 10**30, 1e400, -5, None, True, [1]):
        progress.feed({"status": "pulling", "digest": "d", "total": bad, "completed": bad}, 2.0)
    assert (progress.total, progress.completed) == (400, 100)
    assert progress.stopped() == "at 25% (100 B of 400 B)"


final_keys = [
    "model", "done_reason", "context", "prompt_eval_count", "prompt_eval_duration",
    "eval_count", "eval_duration", "load_duration", "total_duration",
]


@settings(max_examples=300)
@given(objects(final_keys))
def test_a_final_chunk_of_any_types_gives_a_sound_result(final: dict[str, Any]) -> None:
    result = GenerationResult.from_final("m", {"done": True, **final}, answer="a")
    for name in final_keys[3:]:
        value = getattr(result, name)
        assert value is None or (type(value) is int and value >= 0)
    assert isinstance(result.model, str) and result.model
    assert result.done_reason is None or isinstance(result.done_reason, str)
    assert result.context is None or all(type(t) is int for t in result.context)
    rate = result.tokens_per_second
    assert rate is None or math.isfinite(rate)
    repr(result)


@given(objects(["response", "thinking", "message"]))
def test_chunk_text_is_text_or_one_unexpected_reply(chunk: dict[str, Any]) -> None:
    for pieces in (generate_pieces, chat_pieces):
        try:
            answer, thinking = pieces(chunk)
        except UnexpectedReply as exc:
            assert "unexpected" in describe(exc)
        else:
            assert isinstance(answer, str) and isinstance(thinking, str)


# -- host addresses ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("http://", "no server after http://"),
        ("https://user:pw@", "no server after https://"),
        (":abc", "the port must be a number from 1 to 65535"),
        ("host:99999", "the port must be a number from 1 to 65535"),
        ("[::1", "an IPv6 address needs its closing ]"),
        ("http://my host", "it contains a space"),
        ("http://host\x00:1", "it contains a space or a control character"),
        ("ftp://host", "ftp:// is not supported"),
        ("http://ho;st", "'ho;st' is not a host name"),
        ("1:2:3:zz", "'1:2:3:zz' is not an IPv6 address"),
    ],
)
def test_garbage_hosts_are_refused_with_the_reason(host: str, reason: str) -> None:
    with pytest.raises(HostError) as info:
        parse_host(host)
    assert info.value.reason.startswith(reason)
    assert str(info.value).endswith("write it like http://127.0.0.1:11434 or HOST:PORT")


@pytest.mark.parametrize(
    ("host", "url", "auth"),
    [
        ("http://ann:pw@example.com:8080", "http://example.com:8080", ("ann", "pw")),
        ("ann:p%40w@example.com", "http://example.com:11434", ("ann", "p@w")),
        ("https://token@[::1]:9/x", "https://[::1]:9/x", ("token", "")),
        ("HTTP://Example.com", "http://example.com:80", None),
        ("[fe80::1%25eth0]:1", "http://[fe80::1%25eth0]:1", None),
    ],
)
def test_credentials_are_split_from_the_address(host: str, url: str, auth: Any) -> None:
    assert parse_host(host) == url
    assert credentials(host) == auth


secrets = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=6, max_size=12).map(
    lambda s: "PW" + s
)


@given(secrets, st.sampled_from(["http://", "https://", ""]), st.text(max_size=12))
def test_a_password_is_never_in_a_message(secret: str, scheme: str, rest: str) -> None:
    host = f"{scheme}ann:{secret}@{rest}"
    try:
        url = parse_host(host)
    except HostError as exc:
        assert secret not in str(exc)
    else:
        assert secret not in url
        client = OllamaClient(host)
        assert secret not in repr(client) and secret not in client.base_url
        client.close()
    assert secret not in redact(host)


def test_the_password_is_sent_as_basic_auth_unless_a_key_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    monkeypatch.setenv("OLLAMA_HOST", "http://ann:pw@127.0.0.1:9")
    client = OllamaClient()
    assert client._session.auth == ("ann", "pw") and client.base_url == "http://127.0.0.1:9"
    monkeypatch.setenv("OLLAMA_API_KEY", "key")
    client = OllamaClient()
    assert client._session.auth is None
    assert client._session.headers["Authorization"] == "Bearer key"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, 0.0, 1e7])
def test_bad_timeouts_are_refused(bad: float) -> None:
    with pytest.raises(ArgsError, match="use a number of seconds above 0"):
        timeout_value(bad, "--timeout")
    with pytest.raises(ValueError, match="read_timeout"):
        OllamaClient("h", read_timeout=bad)


def test_timeouts_are_checked() -> None:
    assert timeout_value(0.5, "--timeout") == 0.5
    with pytest.raises(ArgsError, match=r"^%config OllamaMagics.timeout = -1: .* = 600$"):
        timeout_value(-1, "%config OllamaMagics.timeout")
    assert OllamaClient("h", read_timeout=None).timeout == (5.0, None)


# -- the model manager ---------------------------------------------------------------------------


def test_the_model_manager_escapes_and_hides_what_it_shows() -> None:
    from ollama_magic.widgets import ModelManager

    from .hostile_server import HostileServer

    with HostileServer() as srv:
        srv.answer("/x/api/tags", {"models": [{"name": HOSTILE, "size": "abc"}, 5]})
        srv.answer("/x/api/ps", {"models": "abc"})
        app = ModelManager(srv.url.replace("//", "//ann:PWsecret@") + "/x", live=False)
        try:
            assert app.title.value == f"<b>Ollama models</b> at <code>{srv.url}/x</code>"
            assert "&lt;script&gt;" in app.installed.value and "<script" not in app.installed.value
            assert app.message.value.endswith(
                f"The server sent an unexpected model list from /api/ps; is {srv.url}/x an "
                "Ollama server? Point --host, %config OllamaMagics.host or OLLAMA_HOST at one."
                "</span>"
            )
            shown = [app.title.value, app.installed.value, app.loaded.value, app.message.value]
            assert not any("PWsecret" in value for value in shown)
            assert srv.requests[0].headers["Authorization"].startswith("Basic ")
        finally:
            app.close()
    app = ModelManager("http://127.0.0.1:9/<i>x</i>", live=False)
    try:
        assert "<code>http://127.0.0.1:9/&lt;i&gt;x&lt;/i&gt;</code>" in app.title.value
    finally:
        app.close()
