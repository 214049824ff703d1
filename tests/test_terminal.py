"""Terminal IPython and the demo command: plain streamed text, no Markdown or HTML."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .helpers import run_ipython


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


def test_terminal_line_commands_print_aligned_text_and_progress_lines() -> None:
    from ollama_magic.server import OllamaServer

    cells = [
        "%ollama models",
        "%ollama load thinker -k 1m",
        "%ollama ps",
        "%ollama stop thinker",
        "%ollama pull haiku",
        "%%ollama --chat haiku\nsea",
        "%ollama history",
        "%ollama reset",
        "%ollama show thinker",
        "%ollama pull embedder",
        "%ollama embed embedder The sky is blue",
        "%ollama cp echo parrot",
        "%ollama create pirate --from parrot -s 'Talk like a pirate.'",
        "%ollama rm parrot pirate",
        "%ollama use echo",
        "%ollama version",
        "%ollama host",
    ]
    code = "\n".join(f"get_ipython().run_cell({cell!r})" for cell in cells)  # one cell each
    with OllamaServer(pull_speed=500_000_000) as server:
        done = run_ipython(code, server.url)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("NAME") and "FAMILY" in line)
    echo = next(line for line in lines if line.startswith("echo:latest"))
    assert echo.index("8.0 MB") == header.index("SIZE")  # aligned columns, no HTML
    assert any(line.startswith("Loaded thinker in ") for line in lines)
    assert any(line.startswith("thinker:latest") and line.endswith("in 1 min") for line in lines)
    assert "Unloaded thinker (9.5 MB freed)." in lines
    assert lines.index("pulling manifest") < lines.index("writing manifest")
    assert any(line.startswith("Pulled haiku: ") for line in lines)
    assert "Conversation 'default': 1 turn, about" in done.stdout and "you: sea" in lines
    assert "Forgot conversation 'default' (1 turn)." in lines
    assert "  Capabilities" in lines and "    thinking" in lines
    assert "1 vector of 64 dimensions from embedder (4 tokens)." in lines
    assert "Copied echo to parrot." in lines
    assert lines.index("Deleted parrot.") > next(
        i for i, line in enumerate(lines) if line.startswith("Created pirate in ")
    )
    assert "Later %%ollama cells use echo." in lines
    assert any(line.startswith("ollama-magic ") and "Ollama 0.32.15" in line for line in lines)
    assert any(line.startswith("Ollama server: http://127.0.0.1:") for line in lines)
    assert "<table" not in done.stdout and "Traceback" not in done.stdout + done.stderr
    assert "UsageError" not in done.stdout + done.stderr


def test_terminal_ipython_ctrl_c_keeps_the_partial_answer_and_ends_with_one_line(ollama) -> None:
    from .helpers import IPYTHON, bodies, until

    env = dict(os.environ, OLLAMA_HOST=ollama.url)
    code = "%%ollama slow --num-predict 400 -o r\nCount slowly.\n"
    proc = subprocess.Popen(
        [*IPYTHON, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        until(lambda: bodies(ollama), timeout=30)
        time.sleep(1.0)  # some words arrive
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "This is a slow answer about Count slowly." in out
    assert "stopped: the answer above is partial]" in out
    usage = [line for line in (out + err).splitlines() if "UsageError" in line]
    assert usage == ["UsageError: Interrupted: the answer above is partial (kept in r)."]
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in out + err
