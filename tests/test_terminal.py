"""Terminal IPython and the demo command: plain streamed text, no Markdown or HTML."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

IPYTHON = [
    sys.executable,
    "-m",
    "IPython",
    "--no-banner",
    "--colors=NoColor",
    "--quick",
    "--ext",
    "ollama_magic",
]


def run_ipython(code: str, host: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OLLAMA_HOST=host)
    return subprocess.run(
        [*IPYTHON, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )


def test_terminal_ipython_streams_plain_text(ollama) -> None:
    done = run_ipython("%%ollama reasoner -o r\nWhy?", ollama.url)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Thinking…" in out
    assert "In short: start simple, then add detail." in out
    assert "done: stop]" in out
    assert "<details>" not in out and "<sub>" not in out


def test_terminal_ipython_error_is_one_line(ollama) -> None:
    done = run_ipython("%%ollama nosuch\nhi", ollama.url)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    usage = [line for line in lines if "UsageError" in line]
    assert usage == [usage[0]] and "Model 'nosuch' is not installed" in usage[0]
    assert "Traceback" not in done.stdout + done.stderr


def test_demo_command_streams_an_answer() -> None:
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "OLLAMA_HOST"}
    env["OLLAMA_HOST"] = "http://127.0.0.1:9"  # nothing listens: the demo starts its own server
    done = subprocess.run(
        [sys.executable, "-m", "ollama_magic.demo", "--model", "echo", "--prompt", "Hello demo"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=root,
    )
    assert done.returncode == 0, done.stderr
    assert "local server runs at http://127.0.0.1:" in done.stdout
    assert "Echo: <|user|>Hello demo" in done.stdout
    assert "The result is bound to r: GenerationResult(model='echo'" in done.stdout
