"""The scripted models' simulated timing (``ScriptedEngine(pace=..., ...)``), which the tutorials
turn on so their footers read like a small model on a laptop: same tokens, plausible numbers."""

from __future__ import annotations

import pytest

from ollama_magic.server import OllamaServer, ScriptedEngine

from .helpers import post

BODY = {
    "model": "echo",
    "prompt": "Hi!",
    "stream": False,
    "options": {"seed": 42, "num_predict": 8},
}


def rate(reply: dict) -> float:
    return reply["eval_count"] / reply["eval_duration"] * 1e9


def test_unpaced_by_default() -> None:
    with OllamaServer() as server:
        reply = post(server, "/api/generate", BODY).json()
    assert rate(reply) > 1000
    assert reply["load_duration"] < 0.05e9


def test_pace_load_and_prompt_pace_show_in_the_timings_not_the_tokens() -> None:
    engine = ScriptedEngine(pace=100, prompt_pace=1000, load_seconds=0.2)
    with OllamaServer(engines=[engine]) as server, OllamaServer() as fast:
        cold = post(server, "/api/generate", BODY).json()
        warm = post(server, "/api/generate", BODY).json()
        unpaced = post(fast, "/api/generate", BODY).json()
    assert cold["response"] == warm["response"] == unpaced["response"]
    assert cold["eval_count"] == unpaced["eval_count"] == 8
    assert 50 < rate(warm) <= 100
    assert cold["load_duration"] >= 0.2e9  # a fresh load takes load_seconds
    assert warm["load_duration"] < 0.1e9  # a loaded model does not
    prompt_seconds = warm["prompt_eval_count"] / 1000
    assert warm["prompt_eval_duration"] >= prompt_seconds * 1e9
    assert warm["total_duration"] >= warm["prompt_eval_duration"] + warm["eval_duration"]


def test_a_models_own_delay_and_scripted_delay_win_over_the_pace() -> None:
    engine = ScriptedEngine(pace=1000)
    with OllamaServer(engines=[engine]) as server:
        slow = post(server, "/api/generate", {**BODY, "model": "slow"}).json()  # 0.05 s a token
        asked = post(
            server,
            "/api/generate",
            {**BODY, "options": {**BODY["options"], "scripted_delay": 0.02}},
        ).json()
    assert rate(slow) <= 20
    assert rate(asked) <= 50


@pytest.mark.parametrize("kwargs", [{"pace": 0}, {"prompt_pace": -1}, {"load_seconds": -0.5}])
def test_bad_values_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ScriptedEngine(**kwargs)
