"""keep_alive forms, load/unload through the engine, and what /api/ps shows."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from ollama_magic.server import OllamaServer, ScriptedEngine

from .helpers import LOCAL_TIME, parse_go_time, post, seconds_from_now

YEAR = 365.25 * 24 * 3600


def ps(server: OllamaServer) -> list[dict]:
    reply = requests.get(server.url + "/api/ps", timeout=5)
    assert reply.headers["Content-Type"] == "application/json; charset=utf-8"
    return reply.json()["models"]


def run(server: OllamaServer, model: str = "echo", **body: object) -> requests.Response:
    """One generation, waiting until the server has also finished it (the client can read the
    reply before the server releases the model, so ps could still show it for a moment)."""
    reply = post(server, "/api/generate", {"model": model, "prompt": "hi", "stream": False, **body})
    assert reply.status_code == 200, reply.text
    assert server.requests[-1].finished.wait(5)
    return reply


def wait_until(condition: object, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_ps_is_empty_at_first(fresh: OllamaServer) -> None:
    assert requests.get(fresh.url + "/api/ps", timeout=5).content == b'{"models":[]}'


def test_ps_shows_a_loaded_model(fresh: OllamaServer, engine: ScriptedEngine) -> None:
    run(fresh)
    (model,) = ps(fresh)
    assert list(model) == [
        "name",
        "model",
        "size",
        "digest",
        "details",
        "expires_at",
        "size_vram",
        "context_length",
    ]
    card = next(c for c in engine.models() if c.name == "echo:latest")
    assert (model["name"], model["model"], model["size"], model["digest"]) == (
        "echo:latest",
        "echo:latest",
        card.size,
        card.digest,
    )
    assert (model["size_vram"], model["context_length"]) == (0, 4096)
    assert model["details"]["family"] == "scripted"
    assert LOCAL_TIME.match(model["expires_at"])
    assert 298 < seconds_from_now(model["expires_at"]) <= 300  # the 5 minute default
    assert engine.calls == [("load", "echo:latest")]
    run(fresh)
    assert engine.calls == [("load", "echo:latest")]  # still loaded: no second load


@pytest.mark.parametrize(
    ("keep_alive", "seconds"),
    [("10m", 600), (42, 42), (42.5, 42.5), ("1h30m", 5400), (None, 300)],
)
def test_keep_alive_sets_expiry(fresh: OllamaServer, keep_alive: object, seconds: float) -> None:
    run(fresh, keep_alive=keep_alive)
    assert seconds - 2 < seconds_from_now(ps(fresh)[0]["expires_at"]) <= seconds


@pytest.mark.parametrize("keep_alive", [-1, -3.14, "-1m", "-1h"])
def test_negative_keep_alive_is_forever(fresh: OllamaServer, keep_alive: object) -> None:
    run(fresh, keep_alive=keep_alive)
    years = seconds_from_now(ps(fresh)[0]["expires_at"]) / YEAR
    assert 292 < years < 293


@pytest.mark.parametrize("keep_alive", [0, "0", "0s", 0.0])
def test_keep_alive_zero_unloads_after_the_request(
    fresh: OllamaServer, engine: ScriptedEngine, keep_alive: object
) -> None:
    lines = run(fresh, keep_alive=keep_alive).json()
    assert lines["done_reason"] == "stop"
    assert ps(fresh) == []
    assert engine.calls == [("load", "echo:latest"), ("unload", "echo:latest")]


def test_expired_models_are_unloaded_by_the_timer(
    fresh: OllamaServer, engine: ScriptedEngine
) -> None:
    run(fresh, keep_alive=0.3)
    assert [m["name"] for m in ps(fresh)] == ["echo:latest"]
    assert wait_until(lambda: ("unload", "echo:latest") in engine.calls, timeout=2)
    assert ps(fresh) == []


def test_load_and_unload_requests(fresh: OllamaServer, engine: ScriptedEngine) -> None:
    assert post(fresh, "/api/generate", {"model": "thinker", "keep_alive": "1m"}).status_code == 200
    (model,) = ps(fresh)
    assert model["name"] == "thinker:latest"
    assert 58 < seconds_from_now(model["expires_at"]) <= 60
    unload = post(fresh, "/api/generate", {"model": "thinker:latest", "keep_alive": 0}).json()
    assert (unload["model"], unload["done_reason"]) == ("thinker:latest", "unload")
    assert ps(fresh) == []
    assert engine.calls == [("load", "thinker:latest"), ("unload", "thinker:latest")]
    # unloading a model that is not loaded still answers, without bothering the engine
    assert post(fresh, "/api/generate", {"model": "echo", "keep_alive": 0}).status_code == 200
    assert len(engine.calls) == 2


def test_changing_num_ctx_reloads(fresh: OllamaServer, engine: ScriptedEngine) -> None:
    run(fresh, options={"num_ctx": 8192})
    assert ps(fresh)[0]["context_length"] == 8192
    run(fresh, options={"num_ctx": 8192, "temperature": 0})  # sampling options don't reload
    assert engine.calls == [("load", "echo:latest")]
    run(fresh)
    assert ps(fresh)[0]["context_length"] == 4096
    assert engine.calls == [
        ("load", "echo:latest"),
        ("unload", "echo:latest"),
        ("load", "echo:latest"),
    ]


def test_ps_lists_the_latest_expiry_first(fresh: OllamaServer) -> None:
    run(fresh, "echo", keep_alive="1m")
    run(fresh, "thinker", keep_alive="2m")
    run(fresh, "reasoner", keep_alive="30s")
    assert [m["name"] for m in ps(fresh)] == ["thinker:latest", "echo:latest", "reasoner:latest"]


def test_ps_during_a_request(fresh: OllamaServer) -> None:
    done = threading.Event()

    def slow_request() -> None:
        run(fresh, "slow", keep_alive="10m", options={"num_predict": 8})
        done.set()

    threading.Thread(target=slow_request, daemon=True).start()
    assert wait_until(lambda: bool(ps(fresh)))
    assert not done.is_set()
    (first,) = ps(fresh)
    assert 598 < seconds_from_now(first["expires_at"]) <= 600  # now + keep_alive while running
    assert done.wait(5)
    assert parse_go_time(ps(fresh)[0]["expires_at"]) > parse_go_time(first["expires_at"])


@pytest.mark.parametrize(
    ("keep_alive", "message"),
    [
        ("1d", 'time: unknown unit "d" in duration "1d"'),
        ("300", 'time: missing unit in duration "300"'),
        ("-1", 'time: missing unit in duration "-1"'),
        ("abc", 'time: invalid duration "abc"'),
        (True, "Unsupported type: 'bool'"),
        ({"m": 5}, "Unsupported type: 'map[string]interface {}'"),
        ([5], "Unsupported type: '[]interface {}'"),
    ],
)
def test_bad_keep_alive_is_a_400(srv: OllamaServer, keep_alive: object, message: str) -> None:
    # decoding fails before the model is even looked up
    body = {"model": "no-such-model", "prompt": "hi", "keep_alive": keep_alive}
    reply = post(srv, "/api/generate", body)
    assert (reply.status_code, reply.json()) == (400, {"error": message})
