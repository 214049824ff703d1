"""``session.run``, where transport meets display, with a fake client and a recording sink; and
``attach_data``: a ``--format`` answer becomes ``.data``, or one line says what is wrong."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Any

import pydantic

from ollama_magic.errors import ConnectionFailed, StreamError, StreamTruncated
from ollama_magic.result import ERROR, INTERRUPTED, GenerationResult
from ollama_magic.session import attach_data, chat_pieces, run

BODY = {"model": "m", "prompt": "Hi", "stream": True}
DONE = {"done": True, "done_reason": "stop", "eval_count": 3}


class FakeStream:
    """Yields ``items`` (an exception among them is raised there); ``abort`` ends it at once,
    as shutting down a socket does, even while it waits for ``gate``."""

    def __init__(self, items: Iterable[Any], gate: threading.Event | None = None) -> None:
        self.items = list(items)
        self.gate = gate
        self.aborted = threading.Event()
        self.closed = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for item in self.items:
            if isinstance(item, BaseException):
                raise item
            yield item
        if self.gate is not None:
            self.gate.wait(5)
        if self.aborted.is_set():
            raise StreamTruncated("the connection was closed by the server")

    def abort(self) -> None:
        self.aborted.set()
        if self.gate is not None:
            self.gate.set()

    def close(self) -> None:
        self.closed = True


class FakeClient:
    base_url = "http://fake:1"

    def __init__(self, stream: FakeStream | Exception) -> None:
        self._stream = stream
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def stream(self, path: str, body: dict[str, Any]) -> FakeStream:
        self.requests.append((path, body))
        if isinstance(self._stream, Exception):
            raise self._stream
        return self._stream


class RecordingSink:
    """Every call the session makes, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.first_piece = threading.Event()

    def thinking(self, text: str) -> None:
        self.calls.append(("thinking", text))

    def answer(self, text: str) -> None:
        self.calls.append(("answer", text))
        self.first_piece.set()

    def retract(self, reasoning: str) -> None:
        self.calls.append(("retract", reasoning))

    def finish(self, result: GenerationResult) -> None:
        self.calls.append(("finish", result))

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.calls]


def piece(text: str, thinking: str = "") -> dict[str, Any]:
    return {"response": text, "thinking": thinking, "done": False}


def test_a_normal_end_shows_every_piece_then_the_result() -> None:
    stream = FakeStream([piece("", "Let me see."), piece("Hel"), piece("lo"), DONE])
    client, sink = FakeClient(stream), RecordingSink()
    result, error = run(client, "/api/generate", BODY, sink)
    assert error is None and stream.closed
    assert client.requests == [("/api/generate", BODY)]
    assert sink.calls[:-1] == [("thinking", "Let me see."), ("answer", "Hel"), ("answer", "lo")]
    assert sink.calls[-1] == ("finish", result)
    assert (result.answer, result.thinking, result.done_reason) == ("Hello", "Let me see.", "stop")
    assert result.eval_count == 3 and result.request == BODY and result.error is None


def test_inline_reasoning_that_ends_late_is_retracted() -> None:
    stream = FakeStream([piece("Thinking it over"), piece("</think>Yes."), DONE])
    sink = RecordingSink()
    result, error = run(FakeClient(stream), "/api/generate", BODY, sink)
    assert error is None and "retract" in sink.kinds()
    assert (result.thinking, result.answer) == ("Thinking it over", "Yes.")


def test_an_error_line_keeps_the_partial_answer() -> None:
    stream = FakeStream([piece("Half an"), StreamError("out of memory")])
    sink = RecordingSink()
    result, error = run(FakeClient(stream), "/api/generate", BODY, sink)
    assert isinstance(error, StreamError) and stream.closed
    assert (result.answer, result.done_reason, result.error) == ("Half an", ERROR, "out of memory")
    assert sink.kinds() == ["answer", "finish"]


def test_a_dropped_connection_is_a_truncated_stream() -> None:
    stream = FakeStream([piece("Half an")])  # ends without a final chunk
    sink = RecordingSink()
    result, error = run(FakeClient(stream), "/api/generate", BODY, sink)
    assert isinstance(error, StreamTruncated)
    assert (result.answer, result.done_reason) == ("Half an", ERROR)
    assert sink.kinds() == ["answer", "finish"]


def test_ctrl_c_is_an_interruption_not_an_error() -> None:
    stream = FakeStream([piece("Half an"), KeyboardInterrupt()])
    sink = RecordingSink()
    result, error = run(FakeClient(stream), "/api/generate", BODY, sink)
    assert error is None and stream.closed
    assert (result.answer, result.done_reason) == ("Half an", INTERRUPTED)
    assert result.error == "interrupted by the user"
    assert sink.kinds() == ["answer", "finish"]


def test_a_stop_from_another_thread_ends_the_stream_with_its_reason() -> None:
    gate = threading.Event()
    stream = FakeStream([piece("Half an")], gate=gate)
    sink = RecordingSink()
    stopped: list[str] = []

    def press_stop() -> None:
        assert sink.first_piece.wait(5)
        stopped.append("stopped by the user")
        stream.abort()

    presser = threading.Thread(target=press_stop)
    presser.start()
    result, error = run(
        FakeClient(stream),
        "/api/generate",
        BODY,
        sink,
        stopped=lambda: stopped[0] if stopped else None,
    )
    presser.join(5)
    assert error is None and stream.closed
    assert (result.answer, result.done_reason) == ("Half an", INTERRUPTED)
    assert result.error == "stopped by the user"
    assert sink.kinds() == ["answer", "finish"]


def test_nothing_received_shows_nothing() -> None:
    sink = RecordingSink()
    failed = ConnectionFailed("http://fake:1", "refused")
    result, error = run(FakeClient(failed), "/api/generate", BODY, sink)
    assert error is failed and sink.calls == []
    assert (result.answer, result.done_reason, result.model) == ("", ERROR, "m")


def test_chat_chunks_are_read_from_their_message() -> None:
    reply = {"message": {"role": "assistant", "content": "Hi"}, "done": False}
    stream = FakeStream([reply, {**DONE, "message": {"role": "assistant", "content": ""}}])
    result, error = run(FakeClient(stream), "/api/chat", BODY, RecordingSink(), chat_pieces)
    assert error is None and result.answer == "Hi"


class Person(pydantic.BaseModel):
    name: str
    age: int


def result(answer: str) -> GenerationResult:
    return GenerationResult.from_final("m", {"done": True}, answer=answer)


def test_json_and_pydantic_answers_become_data() -> None:
    plain, typed = result('{"name": "张伟", "age": 28}'), result('{"name": "Ana", "age": 7}')
    assert attach_data(plain) is None and plain.data == {"name": "张伟", "age": 28}
    assert attach_data(typed, Person) is None and typed.data == Person(name="Ana", age=7)


def test_the_note_names_the_field_and_the_problem() -> None:
    missing = result('{"name": "Ana"}')
    assert attach_data(missing, Person) == (
        "the answer is not valid for --format, so .data is None: age: Field required"
    )
    assert missing.data is None
    cut = result('{"name": "Ana", "age"')
    note = attach_data(cut)
    assert note is not None and note.endswith("Expecting ':' delimiter: line 1 column 22 (char 21)")
