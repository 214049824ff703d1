"""Fixtures for the server tests: one shared server, and fresh ones where state matters."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ollama_magic.server import OllamaServer, ScriptedEngine

from .helpers import pull_embedder


@pytest.fixture(scope="session")
def srv() -> Iterator[OllamaServer]:
    """A server shared by tests that do not care what is loaded."""
    with OllamaServer() as server:
        yield server


@pytest.fixture(scope="session")
def emb() -> Iterator[OllamaServer]:
    """A shared server with ``embedder`` pulled: on Ollama 0.30+ only embedding models embed."""
    with OllamaServer() as server:
        pull_embedder(server)
        yield server


@pytest.fixture(scope="session")
def legacy() -> Iterator[OllamaServer]:
    """A server that reports and truncates as Ollama 0.12.6 did."""
    with OllamaServer(version="0.12.6") as server:
        yield server


@pytest.fixture()
def fresh() -> Iterator[OllamaServer]:
    """A server of its own, for tests that look at loaded models or engine calls."""
    with OllamaServer([ScriptedEngine()]) as server:
        yield server


@pytest.fixture()
def engine(fresh: OllamaServer) -> ScriptedEngine:
    scripted = fresh.engines[0]
    assert isinstance(scripted, ScriptedEngine)
    return scripted
