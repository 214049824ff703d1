"""``attach_data``: a ``--format`` answer becomes ``.data``, or one line says what is wrong."""

from __future__ import annotations

import pydantic

from ollama_magic.result import GenerationResult
from ollama_magic.session import attach_data


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
