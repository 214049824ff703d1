"""Moved to :mod:`ollama_magic.common.thinking`; this name stays for old imports."""

from .common.thinking import (
    ANSWER,
    CLOSE_TAG,
    OPEN_TAG,
    RETRACT,
    THINKING,
    Event,
    Kind,
    ReasoningSplitter,
    SplitText,
    TextBuffer,
    held_suffix,
)

__all__ = [
    "ANSWER",
    "CLOSE_TAG",
    "OPEN_TAG",
    "RETRACT",
    "THINKING",
    "Event",
    "Kind",
    "ReasoningSplitter",
    "SplitText",
    "TextBuffer",
    "held_suffix",
]
