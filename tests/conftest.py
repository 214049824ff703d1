"""Shared fixtures: the package's own Ollama-compatible server and real IPython kernels."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ollama_magic.server import OllamaServer

from .helpers import Kernel, magic_kernel


@pytest.fixture(scope="session")
def server() -> Iterator[OllamaServer]:
    with OllamaServer() as srv:
        yield srv


@pytest.fixture()
def ollama(server: OllamaServer) -> OllamaServer:
    """The session's server with its request log cleared for this test."""
    server.clear()
    return server


@pytest.fixture(scope="module")
def kernel(server: OllamaServer) -> Iterator[Kernel]:
    with magic_kernel(server.url) as k:
        yield k
