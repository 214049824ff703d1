"""Split a model's reasoning from its answer, incrementally and without I/O.

Reasoning reaches a client in two ways: Ollama's separate ``thinking`` field (models with a
built-in parser, ``think`` on) or inline in ``response`` as ``<think>…</think>`` (older servers,
older model pulls, ``raw`` mode, some models even with ``think: false``). Tags can be cut at any
character by chunking, a reply can stop inside ``<think>`` (``num_predict`` reached), and some
templates put ``<think>`` in the prompt so the reply has only ``</think>``. One splitter handles
all of these and yields the same result for any chunking of the same text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

THINKING: Literal["thinking"] = "thinking"
ANSWER: Literal["answer"] = "answer"
#: Everything emitted as answer so far was reasoning (a bare ``</think>`` arrived); the event's
#: text is more reasoning that follows it.
RETRACT: Literal["retract"] = "retract"

Kind = Literal["thinking", "answer", "retract"]
Event = tuple[Kind, str]

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"
_CLOSE_TAGS = (CLOSE_TAG,)


def held_suffix(text: str, markers: Sequence[str]) -> int:
    """Length of the longest end of ``text`` that is a proper start of one of ``markers``:
    text to hold back until the next piece shows whether a marker (a tag, a stop string) begins.

    >>> held_suffix("abc</th", ["</think>"]), held_suffix("abc", ["</think>"])
    (4, 0)
    >>> held_suffix("abc<|us", ["<|user|>", "END"])
    4
    """
    longest = 0
    for marker in markers:
        if not marker or marker[0] not in text[-(len(marker) - 1) :]:
            continue  # the usual case, found without trying every length
        for size in range(min(len(marker) - 1, len(text)), longest, -1):
            if text.endswith(marker[:size]):
                longest = size
                break
    return longest


class ReasoningSplitter:
    """Feed ``response`` (and ``thinking``) pieces; get ``(kind, text)`` events back.

    >>> s = ReasoningSplitter()
    >>> s.feed("<thi") + s.feed("nk>\\nHmm.</th") + s.feed("ink>\\n\\nHi!") + s.flush()
    [('thinking', 'Hmm.'), ('answer', 'Hi!')]
    """

    def __init__(self) -> None:
        self._state: Literal["start", "think", "answer"] = "start"
        self._pending = ""
        self._skip_space = False
        self._tag_seen = False  # once any tag was seen, a later </think> is plain text

    def feed(self, response: str, thinking: str = "") -> list[Event]:
        events: list[Event] = []
        if thinking:
            events.append((THINKING, thinking))
        if response:
            self._scan(self._pending + response, events)
        return events

    def flush(self) -> list[Event]:
        """End of stream: text held back as a possible tag is emitted as what it was inside."""
        text, self._pending = self._pending, ""
        if not text or (self._skip_space and not text.strip()):
            return []
        return [(THINKING if self._state == "think" else ANSWER, text)]

    def _scan(self, text: str, events: list[Event]) -> None:
        self._pending = ""
        while text:
            if self._skip_space:
                text = text.lstrip()
                if not text:
                    return
                self._skip_space = False
            if self._state == "start":
                body = text.lstrip()
                if body.startswith(OPEN_TAG):
                    self._state, self._tag_seen, self._skip_space = "think", True, True
                    text = body[len(OPEN_TAG) :]
                elif not body or OPEN_TAG.startswith(body):
                    self._pending = text  # whitespace or a cut opening tag: wait for more
                    return
                else:
                    self._state = "answer"
            elif self._state == "think":
                end = text.find(CLOSE_TAG)
                if end >= 0:
                    if end:
                        events.append((THINKING, text[:end]))
                    self._state, self._skip_space = "answer", True
                    text = text[end + len(CLOSE_TAG) :]
                else:
                    self._emit_holding_back(text, THINKING, events)
                    return
            elif self._tag_seen:
                events.append((ANSWER, text))
                return
            else:
                end = text.find(CLOSE_TAG)
                if end >= 0:  # no opening tag, yet a closing one: all so far was reasoning
                    events.append((RETRACT, text[:end]))
                    self._tag_seen, self._skip_space = True, True
                    text = text[end + len(CLOSE_TAG) :]
                else:
                    self._emit_holding_back(text, ANSWER, events)
                    return

    def _emit_holding_back(self, text: str, kind: Kind, events: list[Event]) -> None:
        keep = held_suffix(text, _CLOSE_TAGS)
        if keep:
            text, self._pending = text[:-keep], text[-keep:]
        if text:
            events.append((kind, text))


class TextBuffer:
    """Appendable text stored as UTF-8 bytes: one byte per ASCII character and no object per
    piece (``io.StringIO`` takes four bytes per character, a list of pieces an object each).

    >>> b = TextBuffer()
    >>> b.write("你"); b.write("好"); b.value(), len(b)
    ('你好', 6)
    """

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data = bytearray()

    def write(self, text: str) -> None:
        self._data += text.encode()

    def value(self) -> str:
        return self._data.decode()

    def take(self) -> bytearray:
        """Hand over the bytes and start empty."""
        data, self._data = self._data, bytearray()
        return data

    def extend(self, data: bytes | bytearray) -> None:
        self._data += data

    def __len__(self) -> int:
        return len(self._data)


class SplitText:
    """Accumulates events into the whole reasoning and answer.

    >>> t = SplitText()
    >>> for e in [("answer", "Let me see. "), ("retract", "Yes."), ("answer", "42")]:
    ...     t.apply(e)
    >>> t.thinking, t.answer
    ('Let me see. Yes.', '42')
    """

    def __init__(self) -> None:
        self._thinking = TextBuffer()
        self._answer = TextBuffer()

    def apply(self, event: Event) -> None:
        kind, text = event
        if kind == ANSWER:
            self._answer.write(text)
        elif kind == THINKING:
            self._thinking.write(text)
        else:
            self._thinking.extend(self._answer.take())
            self._thinking.write(text)

    @property
    def thinking(self) -> str:
        return self._thinking.value()

    @property
    def answer(self) -> str:
        return self._answer.value()
