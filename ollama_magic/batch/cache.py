"""Finished batch answers on disk (SQLite from the standard library), so a kernel restart or a
Ctrl-C loses nothing: the same request is answered from here instead of the server.

The key is :func:`~ollama_magic.batch.core.cache_key` (the request without its host), the value
the result as JSON. Only answers that finished are stored. One connection is shared by the
worker threads behind a lock; the database runs in WAL mode, so two kernels may use it at once.
Where it lives: ``$OLLAMA_MAGIC_CACHE_DIR``, else ``$XDG_CACHE_HOME/ollama-magic``, else
``~/.cache/ollama-magic`` (``%config OllamaMagics.cache_dir`` overrides all three).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..logprobs import Candidate, TokenLogprob
from ..result import GenerationResult

FILE_NAME = "batch.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    created REAL NOT NULL,
    value TEXT NOT NULL
)
"""


class CacheError(Exception):
    """The cache file cannot be used (damaged, not a database, locked too long, no space)."""


def default_dir(configured: str = "") -> Path:
    """The cache directory: the configured one, else the environment's, else ``~/.cache``."""
    if configured:
        return Path(configured).expanduser()
    explicit = os.environ.get("OLLAMA_MAGIC_CACHE_DIR", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base).expanduser() / "ollama-magic"


@dataclass(frozen=True)
class ModelShare:
    """One model's part of the cache, for ``%ollama cache``."""

    model: str
    count: int
    size: int  # bytes of answer and reasoning text (UTF-8), the same for the same answers


class ResultCache:
    """The answers of finished requests, by cache key. Safe to use from several threads."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self.path = self.directory / FILE_NAME
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    @contextmanager
    def _using(self) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock; any SQLite failure becomes one :class:`CacheError`
        naming the file and what to do."""
        with self._lock:
            try:
                yield self._connect()
            except (sqlite3.Error, OSError) as exc:
                raise CacheError(
                    f"the --map cache {self.path} cannot be used ({exc}); delete the file, "
                    "or run with --no-cache"
                ) from None

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, timeout=10.0)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")  # WAL: crash-safe, no fsync a row
                db.execute(_SCHEMA)
                db.commit()
            except sqlite3.Error:
                db.close()
                raise
            self._db = db
        return self._db

    def get(self, key: str, request: dict[str, Any]) -> GenerationResult | None:
        """The stored result for ``key`` (its ``request`` set to ``request``), or ``None``."""
        with self._using() as db:
            row = db.execute("SELECT value FROM results WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        try:
            return decode(json.loads(row[0]), request)
        except (ValueError, TypeError, KeyError):  # a damaged row is a miss, and is re-asked
            return None

    def put(self, key: str, result: GenerationResult) -> None:
        value = json.dumps(encode(result), ensure_ascii=False, separators=(",", ":"))
        with self._using() as db:
            db.execute(
                "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?)",
                (key, str(result.request.get("model") or result.model), time.time(), value),
            )
            db.commit()

    def shares(self) -> list[ModelShare]:
        """Count and size per model, largest first; nothing (and no file made) when empty."""
        if not self.path.exists():
            return []
        with self._using() as db:
            rows = db.execute(
                "SELECT model, COUNT(*), SUM(LENGTH(CAST(json_extract(value, '$.answer') "
                "AS BLOB)) + LENGTH(CAST(json_extract(value, '$.thinking') AS BLOB))) "
                "FROM results GROUP BY model ORDER BY 3 DESC, 1"
            ).fetchall()
        return [ModelShare(str(m), int(n), int(size or 0)) for m, n, size in rows]

    def clear(self, model: str | None = None) -> int:
        """Forget every answer, or one model's; how many were forgotten."""
        if not self.path.exists():
            return 0
        with self._using() as db:
            if model is None:
                cursor = db.execute("DELETE FROM results")
            else:
                cursor = db.execute("DELETE FROM results WHERE model = ?", (model,))
            db.commit()
            gone = cursor.rowcount
            db.execute("VACUUM")
        return gone

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> ResultCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def encode(result: GenerationResult) -> dict[str, Any]:
    """What a cached result keeps: the texts, the server's final chunk and any logprobs."""
    value: dict[str, Any] = {
        "model": result.model,
        "answer": result.answer,
        "thinking": result.thinking,
        "response": result.response,
        "raw": result.raw,
        "streamed_tokens": result.streamed_tokens,
        "streamed_seconds": result.streamed_seconds,
    }
    if result.logprobs is not None:
        value["logprobs"] = [
            [t.token, t.logprob, [[a.token, a.logprob] for a in t.alternatives], t.thinking]
            for t in result.logprobs
        ]
    return value


def decode(value: dict[str, Any], request: dict[str, Any]) -> GenerationResult:
    logprobs = None
    if "logprobs" in value:
        logprobs = [
            TokenLogprob(
                str(token),
                float(logprob),
                alternatives=tuple(Candidate(str(t), float(p)) for t, p in alternatives),
                thinking=bool(thinking),
            )
            for token, logprob, alternatives, thinking in value["logprobs"]
        ]
    return GenerationResult.from_final(
        str(value["model"]),
        value["raw"],
        answer=str(value["answer"]),
        thinking=str(value["thinking"]),
        response=str(value["response"]),
        request=request,
        logprobs=logprobs,
        streamed_tokens=int(value["streamed_tokens"]),
        streamed_seconds=float(value["streamed_seconds"]),
    )
