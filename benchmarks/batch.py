"""What ``map_prompt`` (and so ``%%ollama --map``) gains over a hand-written loop, and costs.

    python benchmarks/batch.py [--items 64] [--skip-real] [--json]

Every server runs in its own process (``ScriptedEngine`` with Ollama-like slots, or SmolLM2
through ``LlamaEngine``), so the client side is measured as a user would run it. Each figure
is a ratio or a difference measured in one run:

* **slots**: 64 items on a scripted model paced like a small real model (``--pace`` tokens/s)
  with 4 slots: ``map_prompt(parallel=4)`` against a sequential loop of the same requests
  (``requests.post``, streamed, one after the other).
* **hosts**: the same items over two such servers (``parallel=4`` each) against one.
* **real model**: SmolLM2-135M with 4 slots: ``map_prompt(parallel=4)`` against 4 threads
  posting the same requests straight to the server (a queue, raw ``requests``): the least
  a hand-written concurrent client can do.
* **overhead**: an unpaced scripted model, one request at a time: (``map_prompt`` time - loop
  time) / items, with and without the SQLite cache.
* **memory**: resident memory added by a run of 1,000 and of 10,000 items (fast model, results
  kept), per item: flat means the machinery adds nothing that grows with the run.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ollama_magic.batch import map_prompt  # noqa: E402

SCRIPTED_SERVER = textwrap.dedent(
    """
    import sys
    from ollama_magic.server import OllamaServer, ScriptedEngine

    pace = float(sys.argv[1]) or None
    slots = int(sys.argv[2]) or None
    engine = ScriptedEngine(pace=pace, prompt_pace=2000.0 if pace else None, slots=slots)
    server = OllamaServer(engines=[engine], keep_requests=0)
    server.start()
    print(server.url, flush=True)
    sys.stdin.read()
    server.stop()
    """
)

LLAMA_SERVER = textwrap.dedent(
    """
    import sys
    from ollama_magic.server import OllamaServer
    from ollama_magic.server.llama import LlamaEngine

    server = OllamaServer(engines=[LlamaEngine(parallel=int(sys.argv[1]))], keep_requests=0)
    server.start()
    print(server.url, flush=True)
    sys.stdin.read()
    server.stop()
    """
)


@contextmanager
def server(script: str, *args: object) -> Iterator[str]:
    """A server in a child process; its URL."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("OLLAMA_HOST", None)
    child = subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None and child.stdin is not None
    try:
        yield child.stdout.readline().strip()
    finally:
        child.stdin.close()
        child.wait(timeout=30)


def post(url: str, body: dict[str, Any], session: requests.Session) -> int:
    """One streamed request read to its end, as a plain loop would; its eval_count."""
    count = 0
    with session.post(f"{url}/api/generate", json=body, stream=True, timeout=600) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            chunk = json.loads(line)
            if chunk.get("done"):
                count = int(chunk.get("eval_count") or 0)
    return count


def loop(url: str, model: str, prompts: list[str], options: dict[str, Any]) -> float:
    """Seconds for a sequential loop over ``prompts``."""
    with requests.Session() as session:
        start = time.perf_counter()
        for prompt in prompts:
            post(url, {"model": model, "prompt": prompt, "options": options}, session)
        return time.perf_counter() - start


def threaded(
    url: str, model: str, prompts: list[str], options: dict[str, Any], n: int
) -> tuple[float, int]:
    """Seconds and tokens for ``n`` threads posting ``prompts`` from a queue."""
    todo: queue.Queue[str] = queue.Queue()
    for prompt in prompts:
        todo.put(prompt)
    tokens: list[int] = []

    def work() -> None:
        with requests.Session() as session:
            while True:
                try:
                    prompt = todo.get_nowait()
                except queue.Empty:
                    return
                tokens.append(
                    post(url, {"model": model, "prompt": prompt, "options": options}, session)
                )

    start = time.perf_counter()
    threads = [threading.Thread(target=work) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start, sum(tokens)


def mapped(
    hosts: list[str],
    model: str,
    prompts: list[str],
    options: dict[str, Any],
    parallel: int,
    **kw: Any,
) -> tuple[float, Any]:
    flags = " ".join(f"-O {k}={json.dumps(v)}" for k, v in options.items())
    start = time.perf_counter()
    results = map_prompt(
        "{item}", prompts, model, hosts=hosts, parallel=parallel, flags=flags, display="none", **kw
    )
    seconds = time.perf_counter() - start
    assert not results.failed, results.summary
    return seconds, results


def prompts_for(n: int, tag: str) -> list[str]:
    return [f"{tag} item {i}: label this short text about lighthouses" for i in range(n)]


def bench_slots(items: int, pace: float) -> dict[str, float]:
    options = {"num_predict": 32}
    with server(SCRIPTED_SERVER, pace, 4) as url:
        sequential = loop(url, "lorem", prompts_for(items, "seq"), options)
        batch, _ = mapped([url], "lorem", prompts_for(items, "map"), options, 4, cache=False)
    return {"sequential_s": sequential, "map_s": batch, "speedup": sequential / batch}


def bench_hosts(items: int, pace: float) -> dict[str, float]:
    options = {"num_predict": 32}
    with server(SCRIPTED_SERVER, pace, 4) as a, server(SCRIPTED_SERVER, pace, 4) as b:
        one, _ = mapped([a], "lorem", prompts_for(items, "one"), options, 4, cache=False)
        two, _ = mapped([a, b], "lorem", prompts_for(items, "two"), options, 4, cache=False)
    return {"one_host_s": one, "two_hosts_s": two, "speedup": one / two}


def bench_real(items: int, parallel: int, rounds: int = 3) -> dict[str, float]:
    from ollama_magic.server.llama import DEFAULT_MODEL

    options = {"num_predict": 48, "temperature": 0, "seed": 0}

    def prompts(tag: str) -> list[str]:  # new prompts each time: no slot reuses a cached prefix
        return [f"[{tag}] Write one sentence about the number {i}." for i in range(items)]

    with server(LLAMA_SERVER, parallel) as url:
        threaded(url, DEFAULT_MODEL, prompts("warm")[:parallel], options, parallel)  # load it
        direct, ours = [], []
        for n in range(rounds):  # alternate, so other load on the machine hits both alike
            seconds, tokens = threaded(url, DEFAULT_MODEL, prompts(f"d{n}"), options, parallel)
            direct.append(tokens / seconds)
            seconds, results = mapped(
                [url], DEFAULT_MODEL, prompts(f"m{n}"), options, parallel, cache=False
            )
            ours.append(sum(r.eval_count or 0 for r in results) / seconds)
    best_direct, best_ours = max(direct), max(ours)
    return {"direct_tok_s": best_direct, "map_tok_s": best_ours, "ratio": best_ours / best_direct}


def bench_overhead(items: int) -> dict[str, float]:
    options = {"num_predict": 8}
    with server(SCRIPTED_SERVER, 0, 0) as url:
        loop(url, "lorem", prompts_for(50, "warm"), options)
        base = loop(url, "lorem", prompts_for(items, "loop"), options)
        plain, _ = mapped([url], "lorem", prompts_for(items, "plain"), options, 1, cache=False)
        with tempfile.TemporaryDirectory() as cache:
            cached, _ = mapped([url], "lorem", prompts_for(items, "cache"), options, 1, cache=cache)
            hits, _ = mapped([url], "lorem", prompts_for(items, "cache"), options, 1, cache=cache)
    return {
        "loop_ms_per_item": base / items * 1e3,
        "overhead_ms": (plain - base) / items * 1e3,
        "overhead_with_cache_ms": (cached - base) / items * 1e3,
        "cache_hit_ms": hits / items * 1e3,
    }


def bench_memory() -> dict[str, float]:
    options = {"num_predict": 4}
    me = psutil.Process()
    growth: dict[int, float] = {}
    with server(SCRIPTED_SERVER, 0, 0) as url:
        mapped([url], "lorem", prompts_for(200, "warm"), options, 4, cache=False)
        for n in (1_000, 10_000):
            before = me.memory_info().rss
            peak = [before]
            done = threading.Event()

            def sample(peak: list[int] = peak, done: threading.Event = done) -> None:
                while not done.wait(0.05):
                    peak[0] = max(peak[0], me.memory_info().rss)

            sampler = threading.Thread(target=sample)
            sampler.start()
            _, results = mapped([url], "lorem", prompts_for(n, f"mem{n}"), options, 4, cache=False)
            done.set()
            sampler.join()
            growth[n] = (max(peak[0], me.memory_info().rss) - before) / n
            del results
    return {"bytes_per_item_1k": growth[1_000], "bytes_per_item_10k": growth[10_000]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=64)
    parser.add_argument("--pace", type=float, default=100.0, help="scripted tokens per second")
    parser.add_argument("--overhead-items", type=int, default=500)
    parser.add_argument("--real-items", type=int, default=16)
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--only", help="run one part: slots, hosts, overhead, memory or real")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report: dict[str, dict[str, float]] = {}
    steps: list[tuple[str, Callable[[], dict[str, float]]]] = [
        ("slots", lambda: bench_slots(args.items, args.pace)),
        ("hosts", lambda: bench_hosts(args.items, args.pace)),
        ("overhead", lambda: bench_overhead(args.overhead_items)),
        ("memory", bench_memory),
    ]
    if not args.skip_real:
        steps.append(("real", lambda: bench_real(args.real_items, 4)))
    for name, step in steps:
        if args.only and name != args.only:
            continue
        report[name] = step()
        if not args.json:
            shown = ", ".join(f"{k} {v:.3g}" for k, v in report[name].items())
            print(f"{name}: {shown}", flush=True)
    if args.json:
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
