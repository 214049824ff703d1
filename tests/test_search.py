"""TextIndex: the cosine math on hand-made vectors, then real requests to the package's server
(the scripted ``embedder``, pulled first, embeds a bag of words; chat models refuse as on Ollama
0.30+) and to a hostile look-alike, then a real kernel where the hits fill a ``%%ollama`` prompt."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from IPython.core.error import UsageError

from ollama_magic import TextIndex
from ollama_magic.errors import ResponseError
from ollama_magic.messages import describe, no_vectors
from ollama_magic.search import BATCH_SIZE, Hit, Hits, top_k, unit_rows
from ollama_magic.server import OllamaServer

from .helpers import Kernel, bodies, error_line, magic_kernel
from .hostile import CORPUS
from .server.helpers import pull_embedder

HOSTILE = "\n".join(CORPUS.values())

# -- the math ----------------------------------------------------------------------------------


def index_of(vectors: list[list[float]], **kw: object) -> TextIndex:
    return TextIndex([f"t{i}" for i in range(len(vectors))], vectors, model="m", **kw)  # type: ignore[arg-type]


def test_rows_are_made_unit_length_and_a_zero_row_stays_zero() -> None:
    rows = unit_rows([[3, 4], [0, 0], [-2, 0]])
    assert rows.dtype == np.float32
    assert np.allclose(np.linalg.norm(rows, axis=1), [1, 0, 1])
    assert np.allclose(rows[0], [0.6, 0.8]) and np.allclose(rows[2], [-1, 0])
    assert unit_rows([1, 0]).shape == (1, 2)  # one vector is one row


def test_ranking_is_by_cosine_not_by_length() -> None:
    # The long vector points away; the short ones point the query's way.
    index = index_of([[100, -20], [0.1, 0.1], [0, 2], [-1, 0]])
    hits = index.search(np.array([1.0, 1.0]), k=4)
    assert [h.position for h in hits] == [1, 2, 0, 3]
    assert [h.rank for h in hits] == [1, 2, 3, 4]
    assert hits[0].score == pytest.approx(1.0)
    assert hits[1].score == pytest.approx(2**-0.5)
    assert hits[3].score == pytest.approx(-(2**-0.5))


def test_ties_keep_the_earlier_text_first_wherever_k_cuts() -> None:
    scores = [0.5, 0.9, 0.5, 0.9, 0.1, 0.5]
    assert top_k(scores, 6) == [1, 3, 0, 2, 5, 4]
    for k in range(1, 7):
        assert top_k(scores, k) == [1, 3, 0, 2, 5, 4][:k]
    rng = np.random.default_rng(1)
    many = rng.integers(0, 5, 1000).astype(np.float32)
    expected = sorted(range(1000), key=lambda i: (-many[i], i))
    assert top_k(many, 37) == expected[:37]


def test_k_past_the_end_gives_every_text_and_k_below_one_is_refused() -> None:
    index = index_of([[1, 0], [0, 1]])
    assert len(index.search(np.array([1, 0]), k=10)) == 2
    assert len(index.search([1, 0], k=np.int64(1))) == 1  # a numpy integer is a whole number
    for k in (0, -1, 2.5, True):
        with pytest.raises(UsageError, match="at least 1 hit"):
            index.search(np.array([1, 0]), k=k)  # type: ignore[arg-type]


def test_bad_texts_ids_and_vectors_each_get_one_line() -> None:
    cases = [
        ([], None, [[1]], "no texts to index"),
        ("one string", None, [[1]], "not one string"),
        (["a", 5], None, [[1], [1]], "text 1 is a int, not a string"),
        (["a", "  "], None, [[1], [1]], "text 1 is empty"),
        (["a", "b"], ["x"], [[1], [1]], "1 ids for 2 texts"),
        (["a", "b"], [1.5, 2], [[1], [1]], "ids must be strings or whole numbers"),
        (["a", "b"], None, [[1, 0]], "1 vectors for 2 texts"),
        (["a", "b"], None, [[1, 0], [1]], "equally long lists of numbers"),
        (["a"], None, [["x"]], "equally long lists of numbers"),
        (["a"], None, [[[1]]], "not 3-D"),
        (["a", "b"], None, [[1, 0], [float("nan"), 1]], "inf or nan"),
    ]
    for texts, ids, vectors, said in cases:
        with pytest.raises(UsageError, match=said):
            TextIndex(texts, vectors, model="m", ids=ids)  # type: ignore[arg-type]


def test_a_query_of_another_width_names_the_model_to_use() -> None:
    index = index_of([[1, 0, 0], [0, 1, 0]], dimensions=3)
    with pytest.raises(UsageError) as caught:
        index.search(np.ones(5))
    assert str(caught.value) == (
        "the query has 5 dimensions but the index 3: embed the query with the index's model "
        "(m, dimensions=3)"
    )
    with pytest.raises(UsageError, match="one query"):
        index.search(np.ones((2, 3)))


def test_hits_print_as_numbered_passages_for_a_prompt() -> None:
    hits = Hits(
        "why?",
        [Hit(1, 0.91234, 4, "doc-4", "First line.\n  Second line."), Hit(2, 0.5, 0, 0, "Other")],
    )
    assert str(hits) == "[1] First line. Second line.\n[2] Other"
    assert repr(hits).splitlines() == [
        "2 hits for 'why?'",
        "#      SCORE    ID       TEXT",
        "[1]    0.912    doc-4    First line. Second line.",
        "[2]    0.500    0        Other",
    ]
    assert repr(Hits("q", [])) == "0 hits for 'q'\n(no hits)"
    assert hits.texts == ["First line.\n  Second line.", "Other"]


def test_hostile_texts_ids_and_queries_are_escaped_in_html() -> None:
    index = TextIndex([HOSTILE, "plain"], [[1, 0], [0, 1]], model=HOSTILE, ids=[HOSTILE, "b"])
    hits = index.search(np.array([1, 0]), k=2)
    object.__setattr__(hits, "query", HOSTILE)
    for markup in (hits._repr_html_(), index._repr_html_()):
        assert "<script" not in markup and "<img" not in markup
        assert "&lt;" in markup


def test_a_long_text_is_cut_in_the_table_but_kept_whole_in_the_prompt() -> None:
    long = "word " * 1000
    hits = TextIndex([long], [[1.0]], model="m").search([1.0])
    assert str(hits) == "[1] " + long.strip()
    assert "word " * 199 + "word…</td>" in hits._repr_html_()  # 1000 characters


def test_control_characters_never_reach_a_terminal() -> None:
    index = TextIndex(["red\x1b[31m text\r over"], [[1.0]], model="m\x1b[2J")
    hits = index.search([1.0])
    for shown in (repr(hits), str(hits), repr(index)):
        assert "\x1b" not in shown and "\r" not in shown
    assert str(hits) == "[1] red [31m text over"


def test_save_and_load_keep_texts_ids_vectors_and_model(tmp_path: Path) -> None:
    index = TextIndex(["a", "b", "中文"], [[1, 2], [3, 4], [5, 6]], model="m:1", dimensions=2)
    path = index.save(tmp_path / "notes")
    assert path.name == "notes.npz" and path.exists()
    back = TextIndex.load(path, host="http://127.0.0.1:9")
    assert back.texts == ["a", "b", "中文"] and back.ids == [0, 1, 2]
    assert back.model == "m:1" and back.dimensions == 2 and back.host == "http://127.0.0.1:9"
    assert np.allclose(back.vectors, index.vectors, rtol=0, atol=1e-7)
    named = TextIndex(["a", "b"], [[1, 0], [0, 1]], model="m", ids=["x", "y"])
    assert TextIndex.load(named.save(tmp_path / "n.npz")).ids == ["x", "y"]
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(UsageError, match=r"is not an index TextIndex\.save wrote"):
        TextIndex.load(tmp_path / "junk.npz")


def test_without_numpy_the_message_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "numpy", None)  # import numpy now raises ImportError
    with pytest.raises(UsageError, match=r"pip install 'ollama-magic\[search\]'"):
        TextIndex(["a"], [[1.0]], model="m")


# -- against the package's server --------------------------------------------------------------

TEXTS = [
    "The cat sat on the mat.",
    "Stock markets fell sharply today.",
    "A kitten sleeps on a warm mat.",
    "Rain is expected tomorrow in the north.",
]


@pytest.fixture(scope="module")
def embedding() -> Iterator[OllamaServer]:
    """A server with ``embedder`` pulled: since Ollama 0.30 chat models such as ``echo`` refuse."""
    with OllamaServer() as srv:
        pull_embedder(srv)
        yield srv


@pytest.fixture()
def ollama(embedding: OllamaServer) -> OllamaServer:
    """The embedding server with its request log cleared for this test."""
    embedding.clear()
    return embedding


def test_build_embeds_in_batches_and_search_embeds_the_query(ollama: OllamaServer) -> None:
    index = TextIndex.build(TEXTS, "embedder", host=ollama.url, batch_size=3, ids=list("abcd"))
    assert bodies(ollama, "/api/embed") == [
        {"model": "embedder", "input": TEXTS[:3]},
        {"model": "embedder", "input": TEXTS[3:]},
    ]
    assert index.vectors.shape == (4, 64) and index.width == 64 and len(index) == 4
    assert (
        repr(index)
        == "TextIndex of 4 texts: 64 dimensions from embedder (1.0 kB of float32 vectors)"
    )
    ollama.clear()
    hits = index.search("stock markets", k=2)
    assert bodies(ollama, "/api/embed") == [{"model": "embedder", "input": ["stock markets"]}]
    assert hits[0].id == "b" and hits[0].text == TEXTS[1] and hits.query == "stock markets"
    assert hits[0].score > hits[1].score


def test_dimensions_go_with_the_build_and_every_query(ollama: OllamaServer) -> None:
    index = TextIndex.build(TEXTS, "embedder", host=ollama.url, dimensions=8)
    index.search("the mat", k=1)
    assert [b.get("dimensions") for b in bodies(ollama, "/api/embed")] == [8, 8]
    assert index.width == 8


def test_the_default_batch_is_one_request_for_a_few_dozen_texts(ollama: OllamaServer) -> None:
    texts = [f"passage number {i}" for i in range(BATCH_SIZE + 1)]
    TextIndex.build(texts, "embedder", host=ollama.url)
    assert [len(b["input"]) for b in bodies(ollama, "/api/embed")] == [BATCH_SIZE, 1]


def test_a_missing_model_and_an_absent_server_are_one_line(ollama: OllamaServer) -> None:
    with pytest.raises(UsageError, match=r"Get it with `%ollama pull nomic-embed-text`"):
        TextIndex.build(TEXTS, "nomic-embed-text", host=ollama.url)
    with pytest.raises(UsageError, match=r"Cannot reach Ollama at http://127\.0\.0\.1:9"):
        TextIndex.build(TEXTS, "embedder", host="http://127.0.0.1:9")
    with pytest.raises(UsageError, match="not a server address"):
        TextIndex.build(TEXTS, "embedder", host="http://a b")


def test_a_chat_model_on_ollama_0_30_names_embedding_models(embedding: OllamaServer) -> None:
    """Ollama 0.30+ loads a chat model, then passes on llama-server's 501; the message names the
    embedding model the server has (``/api/tags`` capabilities)."""
    with pytest.raises(UsageError) as caught:
        TextIndex.build(TEXTS, "echo", host=embedding.url)
    assert str(caught.value) == (
        "echo gives no vectors: since 0.30 Ollama embeds only with embedding models. Embed with "
        "one you have: embedder:latest."
    )


def test_the_refusal_is_recognised_by_its_text_on_either_endpoint() -> None:
    refusal = "This server does not support embeddings. Start it with `--embeddings`"
    assert describe(ResponseError(501, refusal), model="qwen3") == no_vectors("qwen3")
    legacy = describe(ResponseError(500, refusal))  # /api/embeddings: a 500, no model known
    assert legacy.startswith("This model gives no vectors: since 0.30 Ollama embeds only")
    other = ResponseError(501, "not implemented")
    assert describe(other) == "Ollama answered 501: not implemented"


def test_another_refusal_is_quoted_with_the_models_to_use() -> None:
    from .hostile_server import HostileServer

    with HostileServer() as srv:
        srv.answer("/api/embed", {"error": "out of memory"}, status=500)
        with pytest.raises(UsageError) as caught:
            TextIndex.build(TEXTS, "qwen3", host=srv.url)
    assert str(caught.value) == (
        "qwen3 gave no vectors (Ollama answered 500: out of memory). Use an embedding model, "
        "such as all-minilm, nomic-embed-text, embeddinggemma or mxbai-embed-large "
        "(ollama pull NAME)."
    )


@pytest.mark.parametrize(
    ("reply", "said"),
    [
        ({"embeddings": [[0.1, 0.2]]}, "sent 1 vectors for 4 texts"),
        ({"embeddings": "abc"}, r"unexpected 'embeddings' \(not a list of vectors\)"),
        ({"embeddings": [[1, 2], [1], [1], [1]]}, "not a list of vectors"),
        ({"embeddings": [["<b>"], [1], [1], [1]]}, "not a list of vectors"),
    ],
)
def test_a_hostile_servers_vectors_are_refused(reply: object, said: str) -> None:
    from .hostile_server import HostileServer

    with HostileServer() as srv:
        srv.answer("/api/embed", reply)
        with pytest.raises(UsageError, match=said):
            TextIndex.build(TEXTS, "m", host=srv.url)


# -- in a kernel -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def own() -> Iterator[OllamaServer]:
    with OllamaServer() as srv:
        pull_embedder(srv)
        yield srv


@pytest.fixture(scope="module")
def kernel(own: OllamaServer) -> Iterator[Kernel]:
    with magic_kernel(own.url) as k:
        yield k


def test_hits_fill_a_prompt_with_numbered_passages(kernel: Kernel, own: OllamaServer) -> None:
    run = kernel.run(
        "from ollama_magic import TextIndex\n"
        f"index = TextIndex.build({TEXTS!r}, 'embedder')\n"
        "hits = index.search('markets fell', k=2)\n"
        "hits"
    )
    assert run.ok, run.error
    [shown] = [o for o in run.notebook_outputs() if o]
    assert (
        "<table>" in shown["text/html"]
        and "Stock markets fell sharply today." in shown["text/html"]
    )
    assert shown["text/plain"].startswith("2 hits for 'markets fell'\n#      SCORE")
    cell = "<td style='text-align:left'>Stock markets fell sharply today.</td>"
    assert cell in shown["text/html"]
    own.clear()
    run = kernel.run(
        "%%ollama echo -o answer\nAnswer from these passages, citing them:\n{hits}\nQ: why?"
    )
    assert run.ok, run.error
    prompt = bodies(own)[0]["prompt"]
    assert prompt.startswith(
        "Answer from these passages, citing them:\n[1] Stock markets fell sharply today.\n[2] "
    )
    assert kernel.value("'[1] Stock markets' in answer.response") is True


def test_mistakes_in_a_kernel_are_one_line_and_the_kernel_goes_on(kernel: Kernel) -> None:
    run = kernel.run("from ollama_magic import TextIndex\nTextIndex.build([], 'embedder')")
    text = error_line(run)
    assert text == "no texts to index: give a list of strings"
    text = error_line(kernel.run("TextIndex.build(['a'], 'nomic-embed-text')"))
    assert "%ollama pull nomic-embed-text" in text
    assert kernel.value("1 + 1") == 2


def test_the_embed_commands_help_points_to_the_index() -> None:
    from ollama_magic.commands.registry import command_help

    assert "from ollama_magic import TextIndex" in " ".join(command_help("embed").split())
