"""TextIndex on SmolLM2's real vectors (llama.cpp's mean pooling, served as smollm2-embed:135m):
properties any embedding has, not its quality, which the tutorial measures and states."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from IPython.core.error import UsageError

from ollama_magic import TextIndex
from ollama_magic.server import OllamaServer
from ollama_magic.server.engine import ModelCard
from ollama_magic.server.llama import DEFAULT_MODEL, EMBED_MODEL, LlamaEngine

pytestmark = pytest.mark.real_model

PASSAGES = [
    "POST /api/chat takes a list of messages, each with a role and content.",
    "keep_alive says how long a model stays in memory after a request.",
    "Ollama also speaks the OpenAI API under /v1, so the openai package can talk to it.",
    "Quantization stores the weights with fewer bits, so a model needs less memory.",
    "A fixed seed makes sampling repeatable.",
]


@pytest.fixture(scope="module")
def server(engine: LlamaEngine) -> Iterator[OllamaServer]:
    with OllamaServer(engines=[engine]) as srv:
        yield srv


def test_real_vectors_are_unit_rows_of_the_trained_width(
    server: OllamaServer, card: ModelCard
) -> None:
    index = TextIndex.build(PASSAGES, EMBED_MODEL, host=server.url)
    assert index.vectors.shape == (len(PASSAGES), card.embedding_length)
    assert np.allclose(np.linalg.norm(index.vectors, axis=1), 1.0, atol=1e-5)
    # Each passage finds itself first, at a cosine of 1: the query goes through the same model.
    for position, text in enumerate(PASSAGES):
        [hit] = index.search(text, k=1)
        assert hit.position == position and hit.score == pytest.approx(1.0, abs=1e-4)


def test_batches_do_not_change_the_vectors(server: OllamaServer) -> None:
    whole = TextIndex.build(PASSAGES, EMBED_MODEL, host=server.url)
    one_by_one = TextIndex.build(PASSAGES, EMBED_MODEL, host=server.url, batch_size=1)
    assert np.allclose(whole.vectors, one_by_one.vectors, atol=1e-4)


def test_dimensions_shorten_both_the_index_and_the_queries(server: OllamaServer) -> None:
    index = TextIndex.build(PASSAGES, EMBED_MODEL, host=server.url, dimensions=64)
    assert index.width == 64
    hits = index.search(PASSAGES[2], k=2)
    assert hits[0].position == 2 and len(hits) == 2


def test_the_chat_model_is_one_line_naming_embedding_models(server: OllamaServer) -> None:
    with pytest.raises(UsageError) as caught:
        TextIndex.build(PASSAGES, DEFAULT_MODEL, host=server.url)
    message = str(caught.value)
    assert message.startswith(f"{DEFAULT_MODEL} gives no vectors: since 0.30 Ollama embeds only")
    assert message.endswith(f"Embed with one you have: {EMBED_MODEL}.")  # the local one
    assert "\n" not in message
