"""The local server under hostile load, measured from outside its process.

Run with ``python benchmarks/server_hostile.py`` (``--connections N`` to change the 1,000).
It starts ``python -m ollama_magic.server`` on a free port of 127.0.0.1 and prints:

(a) the server's RSS before and after two 200 MB POSTs (one with Content-Length, one chunked),
    and what they were answered;
(b) the server's thread count before and while N connections each hold half a request head;
(c) whether a normal request was answered meanwhile, and in how long;
(d) how many of the half-open connections the server had dropped after its read timeout.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ollama_magic.server.app import DEFAULT_READ_TIMEOUT
from tests.server.hostile_clients import (
    answered_meanwhile,
    closed_by_server,
    open_half_open,
    post_oversized,
    server_process,
    wait_for,
)

MB = 1_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000, help="half-open connections")
    parser.add_argument("--post-mb", type=int, default=200, help="size of each large POST")
    args = parser.parse_args()

    with server_process() as server:
        answered_meanwhile(server.url)  # warm up: imports and one worker thread
        rss_before = server.rss()
        for chunked in (False, True):
            started = time.perf_counter()
            reply = post_oversized(server.port, args.post_mb * MB, chunked=chunked)
            kind = "chunked" if chunked else "Content-Length"
            print(
                f"POST {args.post_mb} MB ({kind}): {reply.status} {reply.body.decode()} "
                f"in {time.perf_counter() - started:.2f} s"
            )
        rss_after = server.rss()
        print(f"server RSS before the POSTs:           {rss_before / MB:8.1f} MB")
        print(f"server RSS after two {args.post_mb} MB POSTs:     {rss_after / MB:8.1f} MB")

        threads_before = server.threads()
        started = time.perf_counter()
        sockets = open_half_open(server.port, args.connections)
        held = wait_for(lambda: server.connections() >= args.connections, timeout=10)
        print(
            f"{args.connections} half-open connections opened in "
            f"{time.perf_counter() - started:.2f} s (all held by the server: {held})"
        )
        print(f"server threads before:                 {threads_before:8d}")
        print(f"server threads with them open:         {server.threads():8d}")
        started = time.perf_counter()
        answered = answered_meanwhile(server.url)
        print(
            f"normal request answered meanwhile:     {answered!s:>8} "
            f"({time.perf_counter() - started:.3f} s)"
        )
        print(f"server threads after that request:     {server.threads():8d}")
        time.sleep(DEFAULT_READ_TIMEOUT)
        dropped = sum(closed_by_server(sock, within=2) for sock in sockets)
        print(
            f"dropped by the server {DEFAULT_READ_TIMEOUT:g} s later:       "
            f"{dropped:8d} of {args.connections}"
        )
        for sock in sockets:
            sock.close()


if __name__ == "__main__":
    main()
