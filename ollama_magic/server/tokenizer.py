"""A tiny lossless tokenizer with a process-wide vocabulary, for the scripted models.

Tokens are word pieces with their leading whitespace attached (``" world"``), at most
:data:`MAX_PIECE` letters or digits long; every CJK character and every other symbol is a token
of its own. An id is a hash of its text, so the same text gets the same id in every process and
whatever ran before (saved notebooks print them); a table remembers each id's text so that
``context`` round-trips through a client like real token ids. Pure apart from that table
(thread-safe, append-only; a hash collision moves the later text to the next free id).

>>> split("Hello, world!  你好")
['Hello', ',', ' world', '!', '  你', '好']
>>> decode(encode("round trip ✓")) == "round trip ✓"
True
"""

from __future__ import annotations

import re
import threading
import zlib
from collections.abc import Iterable

MAX_PIECE = 8
"""Longest run of letters/digits in one token; longer words are split into pieces."""

_CJK = (
    "\u2e80-\u2fff\u3001-\u303f\u3040-\u30ff\u3100-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uac00-\ud7af\uf900-\ufaff\uff00-\uffef"
)
_TOKEN_RE = re.compile(rf"\s*(?:[{_CJK}]|[^\W_{_CJK}]{{1,{MAX_PIECE}}}|[^\s{_CJK}])|\s+")

VOCABULARY = 1 << 20
"""Ids are in ``1..VOCABULARY - 1``: large enough that collisions are rare."""

_lock = threading.Lock()
_ids: dict[str, int] = {}
_texts: dict[int, str] = {}


def split(text: str) -> list[str]:
    """The token texts of ``text``; joining them gives ``text`` back."""
    return _TOKEN_RE.findall(text)


def token_id(piece: str) -> int:
    """The id of one token text: its hash, remembered on first use.

    >>> token_id(" world") == zlib.crc32(b" world") % (VOCABULARY - 1) + 1
    True
    """
    found = _ids.get(piece)
    if found is not None:
        return found
    with _lock:
        found = _ids.get(piece)
        if found is None:
            found = zlib.crc32(piece.encode()) % (VOCABULARY - 1) + 1
            while found in _texts:
                found = found % (VOCABULARY - 1) + 1
            _texts[found] = piece
            _ids[piece] = found
        return found


def encode(text: str) -> list[int]:
    """Token ids of ``text``."""
    return [token_id(piece) for piece in split(text)]


def decode(ids: Iterable[int]) -> str:
    """Text of token ids; ids this process never handed out decode to nothing."""
    texts = _texts
    return "".join(texts.get(i, "") for i in ids)
