"""Cutting streamed text at ``stop`` strings, shared by every engine. Pure: no I/O.

A stop string can arrive cut across tokens, so text that may be its start is held back until the
next piece shows whether it was one; on a full match the text is cut right before it, as Ollama
does.

>>> stop = StopFilter(["###"])
>>> stop.push("Done #"), stop.push("## never shown")
(('Done ', False), ('', True))
"""

from __future__ import annotations

from collections.abc import Sequence

from .thinking import held_suffix


class StopFilter:
    """Holds back text that may be the start of a stop string; cuts at the first full match."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [stop for stop in stops if stop]
        self.pending = ""

    def push(self, text: str) -> tuple[str, bool]:
        """(text safe to emit, whether a stop string was hit: then nothing more may follow)."""
        buffer = self.pending + text
        hits = [index for index in (buffer.find(stop) for stop in self.stops) if index >= 0]
        if hits:
            self.pending = ""
            return buffer[: min(hits)], True
        keep = held_suffix(buffer, self.stops)
        self.pending = buffer[len(buffer) - keep :] if keep else ""
        return buffer[: len(buffer) - keep], False

    def flush(self) -> str:
        """End of stream: what was held back was not a stop string after all."""
        text, self.pending = self.pending, ""
        return text
