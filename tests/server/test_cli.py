"""The command line: ``python -m ollama_magic.server`` announces its URL and serves until Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest
import requests

from ollama_magic.server.__main__ import build_engines, build_parser, main
from ollama_magic.server.scripted import ScriptedEngine


def test_engines_are_a_list_built_from_the_arguments() -> None:
    (engine,) = build_engines(build_parser().parse_args([]))
    assert isinstance(engine, ScriptedEngine)
    assert build_engines(build_parser().parse_args(["--no-scripted"])) == []


def test_no_engines_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--no-scripted", "--port", "0"]) == 2
    assert "no engines" in capsys.readouterr().err


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT")
def test_module_serves_until_interrupted() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "ollama_magic.server", "--port", "0", "--quiet"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "0"},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.fullmatch(r"Ollama-compatible server on (http://127\.0\.0\.1:\d+)\n", line)
        assert match, line
        assert requests.get(match.group(1), timeout=5).text == "Ollama is running"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=5) == 0
    finally:
        process.kill()
        process.wait()
