"""How far :class:`~ollama_magic.search.TextIndex`'s brute-force numpy search goes.

Run with ``./dev bench`` (or ``python benchmarks/search.py``). Random unit vectors stand in for
embeddings (the time of a search does not depend on what the numbers mean) at 1,000, 10,000 and
100,000 texts, 576 dimensions (SmolLM2's) and 768 (nomic-embed-text's). For each: the time to
make the index from vectors already embedded (normalising the float32 matrix), the median time
of one search for the best 5 (one matrix-vector product, then the top 5), and the index's
memory. Embedding the texts is left out: the model takes far longer than any of this.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ollama_magic.search import TextIndex

SIZES = (1_000, 10_000, 100_000)
WIDTHS = (576, 768)
SEARCHES = 50


def measure(n: int, width: int, rng: numpy.random.Generator) -> tuple[float, float, float]:
    """Seconds to build, median seconds of one search, megabytes of vectors."""
    vectors = rng.standard_normal((n, width), dtype=numpy.float32)
    texts = [f"text {i}" for i in range(n)]
    start = time.perf_counter()
    index = TextIndex(texts, vectors, model="random")
    built = time.perf_counter() - start
    queries = rng.standard_normal((SEARCHES, width), dtype=numpy.float32)
    times = []
    for query in queries:
        start = time.perf_counter()
        index.search(query, k=5)
        times.append(time.perf_counter() - start)
    return built, statistics.median(times), index.vectors.nbytes / 1e6


def main() -> None:
    rng = numpy.random.default_rng(0)
    print(f"numpy {numpy.__version__}, brute-force cosine search, best 5 of n")
    print(f"{'texts':>8} {'dims':>5} {'build ms':>9} {'search ms':>10} {'memory MB':>10}")
    for width in WIDTHS:
        for n in SIZES:
            built, search, size = measure(n, width, rng)
            print(f"{n:>8,} {width:>5} {built * 1e3:>9.1f} {search * 1e3:>10.2f} {size:>10.1f}")


if __name__ == "__main__":
    main()
