"""The context window: its default size, and what happens to a prompt that does not fit.

Ollama changed this in 0.30 (llama-server) and again in 0.30.11, and the magic is tested
against both eras, so both rules live here, chosen per job by :class:`Truncation`:

* **current** (Ollama ≥ 0.30.11, the default): a prompt of ``num_ctx`` tokens or more is cut
  to its first ``num_keep`` tokens (+1 when the tokenizer adds BOS) plus its **last** ones,
  ``num_ctx − max((num_ctx − keep) / 2, 1)`` in all, about half the window, so the answer has
  room; Ollama says nothing to the client and logs ``truncating input prompt`` at WARN.
  ``shift: false`` makes it a 400 instead, and ``truncate: false`` sends the prompt whole,
  which llama-server refuses with a 400 whose raw JSON body becomes the error text.
* **legacy** (Ollama 0.12, the Go runner): cut to exactly ``num_ctx`` (first ``num_keep``
  tokens, then the end); ``truncate: false`` is a 400 ``the input length exceeds the context
  length``.

Either way a chat first drops whole messages from the oldest (:func:`fit_conversation`).
Pure apart from one log line; see ``ollama-api.md`` §2.10.

>>> shift_limit(4096, 5)
2051
>>> fit_prompt(list(range(10)), num_ctx=8, options={"num_keep": 2}, truncation=Truncation())
[0, 1, 7, 8, 9]
>>> fit_prompt(list(range(10)), num_ctx=8, options={"num_keep": 2},
...            truncation=Truncation(legacy=True))
[0, 1, 4, 5, 6, 7, 8, 9]
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("ollama_magic.server")

DEFAULT_NUM_CTX = 4096
"""Ollama's context length on a machine without a large GPU (its smallest VRAM tier)."""

DEFAULT_NUM_KEEP = 4

NO_CONTEXT_SHIFT = (
    "the prompt is longer than the context length currently available to the model; shorten "
    "the prompt, adjust the context length in settings, or use a model with a longer context "
    "length"
)
"""Ollama ≥ 0.30.9: an over-long prompt with ``shift: false`` (HTTP 400)."""

LEGACY_PROMPT_TOO_LONG = "the input length exceeds the context length"
"""Ollama 0.12 (Go runner): an over-long prompt with ``truncate: false`` (HTTP 400). Current
Ollama still uses this text for ``/api/embed``."""


def default_num_ctx(env: str | None = None) -> int:
    """``OLLAMA_CONTEXT_LENGTH`` if it is a positive whole number, else 4096 (no GPU here)."""
    value = os.environ.get("OLLAMA_CONTEXT_LENGTH", "") if env is None else env
    try:
        number = int(value.strip())
    except ValueError:
        return DEFAULT_NUM_CTX
    return number if number > 0 else DEFAULT_NUM_CTX


def exceeds_context(n_prompt: int, n_ctx: int) -> str:
    """llama-server's 400 body for a prompt over its slot, which Ollama passes on as the error
    text (``truncate: false``, or native-path chat)."""
    error = {
        "code": 400,
        "message": f"request ({n_prompt} tokens) exceeds the available context size "
        f"({n_ctx} tokens), try increasing it",
        "type": "exceed_context_size_error",
        "n_prompt_tokens": n_prompt,
        "n_ctx": n_ctx,
    }
    return json.dumps({"error": error}, separators=(",", ":"))


class PromptTooLong(Exception):
    """A prompt refused instead of cut: ``str()`` is Ollama's error text (HTTP 400)."""


@dataclass(frozen=True)
class Truncation:
    """Which era's rule cuts an over-long prompt (see the module docstring)."""

    legacy: bool = False

    @property
    def name(self) -> str:
        return "legacy" if self.legacy else "current"


LATEST = Truncation()
"""Current Ollama's rule (the default)."""
LEGACY = Truncation(legacy=True)
"""Ollama 0.12's rule."""


def num_keep(options: dict[str, Any], num_ctx: int) -> int:
    """``num_keep`` as the legacy runner read it: default 4, within ``[0, num_ctx − 1]``."""
    keep = options.get("num_keep", DEFAULT_NUM_KEEP)
    keep = keep if isinstance(keep, int) and not isinstance(keep, bool) else DEFAULT_NUM_KEEP
    return min(max(keep, 0), num_ctx - 1)


def shift_limit(num_ctx: int, keep: int) -> int:
    """Ollama's ``contextShiftPromptLimit``: how many tokens a cut prompt keeps."""
    if num_ctx <= 1:
        return 0
    keep = max(0, min(keep, num_ctx - 1))
    return num_ctx - max((num_ctx - keep) // 2, 1)


def fit_prompt(
    ids: list[int],
    *,
    num_ctx: int,
    options: dict[str, Any],
    truncation: Truncation,
    truncate: bool = True,
    shift: bool = True,
    adds_bos: bool = False,
    room: int = 0,
) -> list[int]:
    """The prompt tokens an engine runs, cut by the era's rule; :class:`PromptTooLong` if the
    rule refuses them. ``room`` (legacy only) is how many slots the engine must keep free
    (llama-server needs one for the first answer token)."""
    if truncation.legacy:
        limit = num_ctx - room
        if len(ids) <= limit:
            return ids
        if not truncate:
            raise PromptTooLong(LEGACY_PROMPT_TOO_LONG)
        keep = min(num_keep(options, num_ctx), max(limit - 1, 0))
        return ids[:keep] + ids[keep + len(ids) - limit :]
    if not truncate or num_ctx <= 1 or len(ids) <= num_ctx - 1:
        if len(ids) >= num_ctx:
            raise PromptTooLong(exceeds_context(len(ids), num_ctx))
        return ids
    if not shift:
        raise PromptTooLong(NO_CONTEXT_SHIFT)
    wanted = options.get("num_keep", DEFAULT_NUM_KEEP)
    keep = wanted if isinstance(wanted, int) and not isinstance(wanted, bool) else DEFAULT_NUM_KEEP
    if keep < 0:
        keep = len(ids)
    keep = min(keep + (1 if adds_bos else 0), num_ctx - 1)
    limit = shift_limit(num_ctx, keep)
    discard = len(ids) - limit
    cut = ids[:keep] + ids[keep + discard :]
    log.warning(
        "truncating input prompt limit=%d prompt=%d keep=%d new=%d", limit, len(ids), keep, len(cut)
    )
    return cut


def answer_limit(num_predict: int, num_ctx: int) -> int:
    """``num_predict``, or Ollama's cap of 10 × ``num_ctx`` tokens for an open-ended answer."""
    return 10 * num_ctx if num_predict < 0 else num_predict


def fit_conversation(
    messages: tuple[dict[str, Any], ...],
    encode: Callable[[tuple[dict[str, Any], ...]], list[int]],
    num_ctx: int,
) -> tuple[list[int], tuple[dict[str, Any], ...]]:
    """Ollama's ``chatPrompt``: drop whole messages from the oldest until the conversation fits
    ``num_ctx``; system messages among the dropped ones come back in front, and the last
    message always stays. Returns the tokens and the messages kept (what still does not fit
    is :func:`fit_prompt`'s to cut)."""
    last = len(messages) - 1
    for start in range(len(messages)):
        dropped_system = tuple(m for m in messages[:start] if m.get("role") == "system")
        kept = dropped_system + messages[start:]
        ids = encode(kept)
        if len(ids) <= num_ctx or start >= last:
            return ids, kept
    return encode(messages), messages  # no messages at all
