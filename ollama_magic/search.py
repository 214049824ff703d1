"""Search your own texts by meaning: a :class:`TextIndex` holds texts and their embedding
vectors (from ``/api/embed``), and :meth:`TextIndex.search` ranks them by cosine similarity to a
question. The :class:`Hits` it returns print as numbered passages, ready for a ``%%ollama``
prompt: ``{hits}`` in the cell becomes ``[1] ...``, ``[2] ...``, so the model can cite them.

The math is plain numpy on one float32 matrix (brute force: every text is scored on every
search), which at notebook scale (up to some 100,000 texts) answers in milliseconds; see the
README's benchmark for when a vector database is the better tool. numpy is optional for the
package (``pip install 'ollama-magic[search]'``): it is imported when an index is made.

Layers: :func:`unit_rows` and :func:`top_k` are pure; :func:`embed_texts` is the transport
(batches through :func:`ollama_magic.lifecycle.embed`); :class:`TextIndex` joins them. Nothing
here displays anything: :class:`Hits` and :class:`TextIndex` have text and HTML reprs, with every
text and server field escaped. A mistake or failure is a ``UsageError`` with one line saying
what to do, which IPython shows without a traceback.
"""

from __future__ import annotations

import html
import numbers
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from IPython.core.error import UsageError

from .errors import ModelNotFound, OllamaError, ResponseError
from .fields import printable
from .messages import EMBEDDING_MODELS as EMBEDDING_MODEL_NAMES
from .messages import describe, gives_no_vectors, no_vectors
from .present import html_table, text_table

if TYPE_CHECKING:  # numpy is an optional extra, requests is slow to import
    import numpy
    from numpy.typing import NDArray

    from .client import OllamaClient

    Matrix = NDArray[numpy.float32]

#: Texts sent in one ``/api/embed`` request: a list is embedded in requests of this many.
BATCH_SIZE = 32

#: Characters of a text the hits' table shows (``str(hits)`` and ``hit.text`` keep them all).
HTML_TEXT = 1000

#: What to say when a model gives no vectors: the embedding models people use with Ollama.
EMBEDDING_MODELS = ", ".join(EMBEDDING_MODEL_NAMES[:-1]) + " or " + EMBEDDING_MODEL_NAMES[-1]


def _numpy() -> Any:
    """numpy, or one line on how to install it."""
    try:
        import numpy
    except ImportError:
        raise UsageError(
            "searching texts needs numpy: pip install 'ollama-magic[search]' (or pip install "
            "numpy), then restart the kernel"
        ) from None
    return numpy


# -- the math (pure) ---------------------------------------------------------------------------


def unit_rows(vectors: Any) -> Matrix:
    """``vectors`` as a float32 matrix whose rows have length one (an all-zero row stays zero),
    so a matrix product gives cosine similarities.

    >>> unit_rows([[3, 4], [0, 0]]).tolist()
    [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    np = _numpy()
    try:
        matrix = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError):
        raise UsageError("vectors must be equally long lists of numbers") from None
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    if matrix.ndim != 2:
        raise UsageError(f"vectors must be equally long lists of numbers, not {matrix.ndim}-D")
    if not np.isfinite(matrix).all():
        raise UsageError("vectors must be finite numbers: these hold inf or nan")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)  # type: ignore[no-any-return]


def top_k(scores: Any, k: int) -> list[int]:
    """Positions of the ``k`` highest scores, best first; equal scores keep their order (the
    earlier text first), and ``k`` past the end gives them all.

    >>> top_k([0.1, 0.9, 0.5, 0.9], 3), top_k([0.2], 5), top_k([], 2)
    ([1, 3, 2], [0], [])
    """
    np = _numpy()
    values = np.asarray(scores, dtype=np.float32)
    if k < len(values):
        # Everything that scores at least the k-th best, ties included, in text order; then a
        # stable sort: no full sort of a large index, and ties never depend on the partition.
        kth = np.partition(values, len(values) - k)[len(values) - k]
        candidates = np.flatnonzero(values >= kth)
    else:
        candidates = np.arange(len(values))
    order = candidates[np.argsort(-values[candidates], kind="stable")]
    return [int(i) for i in order[:k]]


# -- what a search returns ---------------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    """One text found: its ``rank`` (1 is the best), cosine ``score`` (1 is the same meaning),
    ``position`` in the indexed list, ``id`` (the position unless ids were given) and ``text``."""

    rank: int
    score: float
    position: int
    id: str | int
    text: str


class Hits(Sequence[Hit]):
    """The texts a search found, best first. ``str(hits)`` is them as numbered passages,
    ``[1] text`` one per line, which is what ``{hits}`` puts into a ``%%ollama`` prompt; the
    notebook shows a table of rank, score, id and text."""

    def __init__(self, query: str, hits: Sequence[Hit]) -> None:
        self.query = query
        self._hits = tuple(hits)

    @overload
    def __getitem__(self, index: int) -> Hit: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Hit]: ...

    def __getitem__(self, index: int | slice) -> Hit | Sequence[Hit]:
        return self._hits[index]

    def __len__(self) -> int:
        return len(self._hits)

    def __iter__(self) -> Iterator[Hit]:
        return iter(self._hits)

    @property
    def texts(self) -> list[str]:
        return [hit.text for hit in self._hits]

    def __str__(self) -> str:
        return "\n".join(f"[{hit.rank}] {_one_line(hit.text)}" for hit in self._hits)

    def __repr__(self) -> str:
        rows = [
            [f"[{h.rank}]", f"{h.score:.3f}", str(h.id)[:40], _one_line(h.text, 90)] for h in self
        ]
        table = text_table(["#", "SCORE", "ID", "TEXT"], rows) if rows else "(no hits)"
        return f"{self._title()}\n{table}"

    def _repr_html_(self) -> str:
        rows = [[f"[{h.rank}]", f"{h.score:.3f}", str(h.id), _cut(h.text, HTML_TEXT)] for h in self]
        query = html.escape(_one_line(self.query, 200))
        title = f"{len(self._hits)} hits for <i>{query}</i>"
        return f"<p>{title}</p>" + html_table(["#", "score", "id", "text"], rows, "no hits")

    def _title(self) -> str:
        return f"{len(self._hits)} hits for {_one_line(self.query, 80)!r}"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _one_line(text: str, limit: int = 0) -> str:
    """Whitespace folded, so a passage stays one numbered line, and no control characters (a
    text must not steer a terminal); cut to ``limit`` if given."""
    folded = " ".join(printable(text).split())
    return _cut(folded, limit) if limit else folded


# -- the transport -----------------------------------------------------------------------------


def embed_texts(
    client: OllamaClient,
    model: str,
    texts: Sequence[str],
    *,
    dimensions: int | None = None,
    batch_size: int = BATCH_SIZE,
) -> list[list[float]]:
    """One vector per text from ``/api/embed``, ``batch_size`` texts a request; every failure
    is a ``UsageError`` naming the model and what to do."""
    from . import lifecycle

    found: list[list[float]] = []
    for start in range(0, len(texts), batch_size):
        batch = list(texts[start : start + batch_size])
        try:
            answer = lifecycle.embed(client, model, batch, dimensions=dimensions)
        except ModelNotFound as exc:
            raise UsageError(describe(exc)) from None
        except ResponseError as exc:
            if gives_no_vectors(exc):  # a chat model on Ollama 0.30+
                raise UsageError(no_vectors(model, lifecycle.installed(client))) from None
            raise UsageError(
                f"{model} gave no vectors (Ollama answered {exc.status}: {exc.message}). "
                f"Use an embedding model, such as {EMBEDDING_MODELS} (ollama pull NAME)."
            ) from None
        except OllamaError as exc:
            raise UsageError(describe(exc)) from None
        if len(answer.vectors) != len(batch):
            raise UsageError(
                f"the server sent {len(answer.vectors)} vectors for {len(batch)} texts; "
                "is it an Ollama server?"
            )
        if found and answer.vectors and len(answer.vectors[0]) != len(found[0]):
            raise UsageError("the server's vectors changed length between requests")
        found.extend(answer.vectors)
    return found


# -- the index ---------------------------------------------------------------------------------


class TextIndex:
    """Texts and their unit vectors from one embedding model, searched by cosine similarity.

    **Usage:**

    ``index = TextIndex.build(texts, "nomic-embed-text")`` embeds the texts through
    ``/api/embed``; ``hits = index.search("a question", k=3)`` embeds the question with the same
    model and returns the ``k`` closest texts (:class:`Hits`). ``index.save("notes.npz")`` and
    ``TextIndex.load("notes.npz")`` keep it between sessions.

    **Parameters** (of the constructor, for vectors you already have): ``texts``, ``vectors``
    (one row per text), ``model`` that made them, ``ids`` (one per text, else the positions),
    ``host`` (else ``$OLLAMA_HOST``) and ``dimensions`` (sent with every query, as at build).
    """

    def __init__(
        self,
        texts: Sequence[str],
        vectors: Any,
        *,
        model: str,
        ids: Sequence[str | int] | None = None,
        host: str | None = None,
        dimensions: int | None = None,
    ) -> None:
        self.texts = _checked_texts(texts)
        self.vectors = unit_rows(vectors)
        if len(self.vectors) != len(self.texts):
            raise UsageError(f"{len(self.vectors)} vectors for {len(self.texts)} texts")
        self.ids: list[str | int] = _checked_ids(ids, len(self.texts))
        self.model = model
        self.host = host
        self.dimensions = dimensions

    @classmethod
    def build(
        cls,
        texts: Sequence[str],
        model: str,
        *,
        ids: Sequence[str | int] | None = None,
        host: str | None = None,
        dimensions: int | None = None,
        batch_size: int = BATCH_SIZE,
        timeout: float | None = 600.0,
    ) -> TextIndex:
        """Embed ``texts`` with ``model`` (``batch_size`` a request) and index them.
        ``timeout`` is the longest wait for one request."""
        checked = _checked_texts(texts)
        _checked_ids(ids, len(checked))
        if batch_size < 1:
            raise UsageError(f"batch_size {batch_size}: send at least 1 text a request")
        _numpy()
        with closing(_client(host, timeout)) as client:
            found = embed_texts(
                client, model, checked, dimensions=dimensions, batch_size=batch_size
            )
        return cls(checked, found, model=model, ids=ids, host=host, dimensions=dimensions)

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def width(self) -> int:
        """How many numbers each vector has."""
        return int(self.vectors.shape[1])

    def search(self, query: str | Any, k: int = 3, *, timeout: float | None = 600.0) -> Hits:
        """The ``k`` texts closest in meaning to ``query`` (a text, embedded with the index's
        model, or a vector you made), best first."""
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise UsageError(f"k={k!r}: ask for at least 1 hit (k=3 gives the best three)")
        if isinstance(query, str):
            if not query.strip():
                raise UsageError("search for what? Give a question or a few words")
            with closing(_client(self.host, timeout)) as client:
                vector = embed_texts(client, self.model, [query], dimensions=self.dimensions)[0]
            shown = query
        else:
            vector, shown = query, "a vector"
        row = unit_rows(vector)
        if row.shape[0] != 1:
            raise UsageError("search takes one query: a text or one vector")
        if row.shape[1] != self.width:
            raise UsageError(
                f"the query has {row.shape[1]} dimensions but the index {self.width}: embed "
                f"the query with the index's model ({self.model}"
                + (f", dimensions={self.dimensions}" if self.dimensions else "")
                + ")"
            )
        scores = self.vectors @ row[0]
        return Hits(
            shown,
            [
                Hit(rank, float(scores[i]), i, self.ids[i], self.texts[i])
                for rank, i in enumerate(top_k(scores, int(k)), start=1)
            ],
        )

    def save(self, path: str | Path) -> Path:
        """Write the index to an ``.npz`` file (no pickles, so loading one is safe)."""
        np = _numpy()
        target = Path(path)
        numeric = all(isinstance(i, int) for i in self.ids)
        np.savez_compressed(
            target,
            vectors=self.vectors,
            texts=np.array(self.texts, dtype=str),
            ids=np.array(self.ids, dtype=np.int64 if numeric else str),
            model=np.array(self.model, dtype=str),
            dimensions=np.array(self.dimensions or 0, dtype=np.int64),
        )
        return target if target.suffix == ".npz" else target.with_name(target.name + ".npz")

    @classmethod
    def load(cls, path: str | Path, *, host: str | None = None) -> TextIndex:
        """An index :meth:`save` wrote; queries go to ``host`` (else ``$OLLAMA_HOST``)."""
        np = _numpy()
        try:
            with np.load(path, allow_pickle=False) as data:
                texts = [str(t) for t in data["texts"].tolist()]
                ids = [i if isinstance(i, int) else str(i) for i in data["ids"].tolist()]
                vectors = np.asarray(data["vectors"], dtype=np.float32)
                model = str(data["model"])
                dimensions = int(data["dimensions"]) or None
        except (OSError, KeyError, ValueError) as exc:
            raise UsageError(f"{path} is not an index TextIndex.save wrote: {exc}") from None
        return cls(texts, vectors, model=model, ids=ids, host=host, dimensions=dimensions)

    def __repr__(self) -> str:
        return f"TextIndex of {_plural(len(self), 'text')}: {printable(self._about())}"

    def _repr_html_(self) -> str:
        return f"<b>TextIndex</b> of {_plural(len(self), 'text')}: {html.escape(self._about())}"

    def _about(self) -> str:
        size = self.vectors.nbytes
        shown = f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.1f} kB"
        shown = shown if size >= 1e3 else f"{size} bytes"
        return f"{self.width} dimensions from {self.model} ({shown} of float32 vectors)"


def _checked_texts(texts: Any) -> list[str]:
    if isinstance(texts, str):
        raise UsageError("give a list of texts, not one string: [text] indexes a single one")
    try:
        items = list(texts)
    except TypeError:
        raise UsageError(f"texts must be a list of strings, not {type(texts).__name__}") from None
    if not items:
        raise UsageError("no texts to index: give a list of strings")
    for position, text in enumerate(items):
        if not isinstance(text, str):
            raise UsageError(
                f"text {position} is a {type(text).__name__}, not a string: "
                "convert it with str() or leave it out"
            )
        if not text.strip():
            raise UsageError(f"text {position} is empty: leave it out, it has no meaning to find")
    return items


def _checked_ids(ids: Sequence[str | int] | None, count: int) -> list[str | int]:
    if ids is None:
        return list(range(count))
    found = list(ids)
    if len(found) != count:
        raise UsageError(f"{len(found)} ids for {count} texts: give one id per text")
    if not all(isinstance(i, (str, int)) and not isinstance(i, bool) for i in found):
        raise UsageError("ids must be strings or whole numbers")
    return found


def _client(host: str | None, timeout: float | None) -> OllamaClient:
    from .client import HostError, OllamaClient

    try:
        return OllamaClient(host, read_timeout=timeout)
    except (HostError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
