"""``%%ollama MODEL --map VAR`` in real kernels: output, Ctrl-C and resume, a restarted kernel
answered from the disk cache, ``%ollama cache``, and bad input."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ollama_magic.server import OllamaServer, ScriptedEngine

from .helpers import Kernel, bodies, error_line, run_ipython, until

CELL = "%%ollama echo --map words -o labels --parallel 2\nLabel: {item}"
WORDS = "words = [f'word {i} ' + 'pad ' * 12 for i in range(12)]"


@pytest.fixture(scope="module")
def slow() -> Iterator[OllamaServer]:
    """Two slots at 60 tokens/s: a dozen items take seconds, long enough to interrupt."""
    with OllamaServer(engines=[ScriptedEngine(pace=60, slots=2)]) as server:
        yield server


def start(server: OllamaServer, cache: Path) -> Kernel:
    kernel = Kernel(env={"OLLAMA_HOST": server.url, "OLLAMA_MAGIC_CACHE_DIR": str(cache)})
    run = kernel.run("%load_ext ollama_magic")
    assert run.ok, run.error
    return kernel


def test_dataframe_and_list_outputs_and_one_progress_view(
    ollama: OllamaServer, tmp_path: Path
) -> None:
    kernel = start(ollama, tmp_path)
    try:
        assert kernel.run("import pandas as pd\ndf = pd.DataFrame({'t': ['x', 'y', 'z']})").ok
        run = kernel.run("%%ollama echo --map df\nSay {t}")
        assert run.ok, run.error
        assert run.stdout.startswith("3 items: 3 done, in ")
        shown = run.notebook_outputs()
        assert [o for o in shown if o and "text/html" in o and "<progress" in o["text/html"]] == []
        table = run.of_type("execute_result")[0]["content"]["data"]["text/plain"]
        assert "Echo: <|user|>Say z" in table and "error" in table
        assert [b["prompt"] for b in sorted(bodies(ollama), key=lambda b: b["prompt"])] == [
            "Say x",
            "Say y",
            "Say z",
        ]
        nbval = run.nbval_outputs()
        assert nbval[0] == {}  # the progress view's first version: nothing to compare
        run = kernel.run("xs = ['a', 'b']\n")
        run = kernel.run("%%ollama echo --map xs -o out\n{item}")
        assert run.ok and not run.of_type("execute_result")
        assert kernel.value("out.answers") == [
            "Echo: <|user|>a\n<|assistant|>",
            "Echo: <|user|>b\n<|assistant|>",
        ]
        run = kernel.run("%ollama cache")
        assert run.stdout.startswith(f"5 cached answers in {tmp_path / 'batch.sqlite'}:")
        assert "echo" in run.stdout
        assert kernel.run("%ollama cache clear echo").stdout == "Forgot 5 cached answers of echo.\n"
    finally:
        kernel.shutdown()


def test_ctrl_c_keeps_finished_items_and_a_rerun_sends_only_the_rest(
    slow: OllamaServer, tmp_path: Path
) -> None:
    slow.clear()
    kernel = start(slow, tmp_path)
    try:
        assert kernel.run(WORDS).ok
        interrupter = threading.Thread(
            target=lambda: (until(lambda: len(bodies(slow)) >= 5, timeout=30), kernel.interrupt())
        )
        interrupter.start()
        run = kernel.run(CELL, timeout=60)
        interrupter.join()
        line = error_line(run)  # one line, no traceback, and Run All stops here
        assert re.fullmatch(
            r"12 items: \d+ done, \d+ not finished, in [\d.]+ s, [\d.]+ tokens/s\. "
            r"Interrupted: the finished answers are kept; run it again to send only the rest\. "
            r"The results are in labels\.",
            line,
        ), line
        assert not run.stdout  # said once, in the error line
        errors = kernel.value("labels.errors")
        kept = [i for i, e in enumerate(errors) if e is None]
        assert 1 <= len(kept) < 12
        first = [r for r in slow.requests if r.path == "/api/generate"]
        for record in first:
            assert record.finished.wait(5)
        assert len(first) <= len(kept) + 2  # the stop sent nothing more
        assert all(r.disconnected_at for r in first if r.json["prompt"] not in _prompts(kept))
        slow.clear()
        run = kernel.run(CELL, timeout=60)
        assert run.ok, run.error
        again = sorted(b["prompt"] for b in bodies(slow))
        assert again == sorted(set(_all_prompts()) - set(_prompts(kept)))
        assert f"12 items: 12 done ({len(kept)} from the cache)" in run.stdout
    finally:
        kernel.shutdown()
    slow.clear()
    restarted = start(slow, tmp_path)  # a new kernel: only the disk cache remembers
    try:
        assert restarted.run(WORDS).ok
        run = restarted.run(CELL)
        assert run.ok, run.error
        assert bodies(slow) == []
        assert run.stdout.startswith("12 items: 12 done (12 from the cache).")
    finally:
        restarted.shutdown()


def _all_prompts() -> list[str]:
    return [f"Label: word {i} " + "pad " * 12 for i in range(12)]


def _prompts(indices: list[int]) -> list[str]:
    every = _all_prompts()
    return [every[i] for i in indices]


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("%%ollama echo --map nope\n{item}", "--map nope: no such variable"),
        ("%%ollama echo --map text\n{item}", "--map text: a str is not a dataset"),
        ("%%ollama echo --map xs --chat\n{item}", "--map sends single prompts"),
        ("%%ollama echo --map xs --parallel 0\n{item}", "--parallel 0: use a whole number"),
        ("%%ollama echo --host a:1 --host b:2\nHi", "several hosts share the work only with --map"),
        ("%%ollama echo --map xs --host 'a b'\n{item}", "--host 'a b' is not a server address"),
    ],
)
def test_bad_input_is_one_line(kernel: Kernel, cell: str, message: str) -> None:
    assert kernel.run("xs = [1, 2]; text = 'abc'").ok
    assert message in error_line(kernel.run(cell))
    assert kernel.run("1 + 1").ok  # the kernel goes on


def test_configured_hosts_share_the_items(ollama: OllamaServer, tmp_path: Path) -> None:
    with OllamaServer() as other:
        kernel = start(ollama, tmp_path)
        try:
            assert kernel.run(f"%config OllamaMagics.hosts = [{ollama.url!r}, {other.url!r}]").ok
            assert kernel.run("%config OllamaMagics.parallel = 1").ok
            assert kernel.run("xs = [f'x{i}' for i in range(12)]").ok
            run = kernel.run("%%ollama slow --map xs -o out --num-predict 2\n{item}")
            assert run.ok, run.error
            assert bodies(ollama) and bodies(other)  # both took a share
            assert len(bodies(ollama)) + len(bodies(other)) == 12
            assert kernel.value("out.failed") == []
        finally:
            kernel.shutdown()


def test_terminal_ipython_prints_only_the_summary(ollama: OllamaServer, tmp_path: Path) -> None:
    code = (
        "xs = ['a', 'b']\n"
        "get_ipython().run_cell_magic('ollama', 'echo --map xs -o r --no-cache', '{item}!')\n"
        "print(r.answers)\n"
    )
    done = run_ipython(code, ollama.url)
    assert done.returncode == 0, done.stderr
    assert "2 items: 2 done, in " in done.stdout
    assert "\r" not in done.stdout  # not a TTY: no live line
    assert "['Echo: <|user|>a!\\n<|assistant|>', 'Echo: <|user|>b!\\n<|assistant|>']" in done.stdout


def test_a_damaged_cache_file_is_one_line(ollama: OllamaServer, tmp_path: Path) -> None:
    (tmp_path / "batch.sqlite").write_bytes(b"this is not a database, " * 100)
    kernel = start(ollama, tmp_path)
    try:
        assert kernel.run("xs = ['a']").ok
        message = error_line(kernel.run("%%ollama echo --map xs\n{item}"))
        assert message.startswith(f"the --map cache {tmp_path / 'batch.sqlite'} cannot be used")
        assert message.endswith("delete the file, or run with --no-cache")
        assert "cannot be used" in error_line(kernel.run("%ollama cache"))
        run = kernel.run("%%ollama echo --map xs --no-cache -o r\n{item}")
        assert run.ok and kernel.value("r.failed") == []
    finally:
        kernel.shutdown()


def test_ctrl_c_without_o_still_shows_the_finished_items(
    slow: OllamaServer, tmp_path: Path
) -> None:
    slow.clear()
    kernel = start(slow, tmp_path)
    try:
        assert kernel.run(WORDS).ok
        interrupter = threading.Thread(
            target=lambda: (until(lambda: len(bodies(slow)) >= 5, timeout=30), kernel.interrupt())
        )
        interrupter.start()
        run = kernel.run("%%ollama echo --map words --parallel 2 --no-cache\nLabel: {item}")
        interrupter.join()
        assert "Interrupted: the finished answers are kept" in error_line(run)
        (shown,) = [m["content"]["data"] for m in run.of_type("display_data")][-1:]
        text = shown["text/plain"]  # what Out would have shown
        assert text.startswith("BatchResults: 12 items") and "'Echo: " in text
        assert "error: not finished: the run was interrupted" in text
    finally:
        kernel.shutdown()
