"""The pure pieces: tokenizer, template subset, schema synthesizer, request decoding, prompts."""

from __future__ import annotations

import itertools
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from ollama_magic.common.gotime import MAX_DURATION
from ollama_magic.common.stops import StopFilter
from ollama_magic.server import tokenizer
from ollama_magic.server.decoding import (
    GENERATE_REQUEST,
    DecodeError,
    OptionError,
    decode_struct,
    keep_alive_ns,
    parse_parameters,
    think_value,
    validate_options,
)
from ollama_magic.server.engine import ChatJob, GenerateJob, ModelCard, Token
from ollama_magic.server.gojson import decode_first
from ollama_magic.server.gotemplate import TemplateError, parse
from ollama_magic.server.llama import _ThinkTokens
from ollama_magic.server.prompting import render_chat, render_generate
from ollama_magic.server.scheduler import model_options
from ollama_magic.server.schema import synthesize
from ollama_magic.server.scripted import TEMPLATE

# -- tokenizer -----------------------------------------------------------------------------------


@given(st.text())
def test_tokens_join_back_to_the_text(text: str) -> None:
    assert "".join(tokenizer.split(text)) == text
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_tokens_are_word_pieces_with_leading_space() -> None:
    assert tokenizer.split("Hello, world!\n  ok") == ["Hello", ",", " world", "!", "\n  ok"]
    assert tokenizer.split("internationalization") == ["internat", "ionaliza", "tion"]
    assert tokenizer.split("人工智能。") == ["人", "工", "智", "能", "。"]
    assert tokenizer.split("end  ") == ["end", "  "]


def test_ids_are_stable_and_unknown_ids_decode_to_nothing() -> None:
    first = tokenizer.encode("stable ids")
    assert tokenizer.encode("stable ids") == first
    assert tokenizer.decode([*first, 10**9, -1, 0]) == "stable ids"


# -- template subset -----------------------------------------------------------------------------


SYSTEM_FIRST = "{{ if .System }}S:{{ .System }} {{ end }}{{ .Prompt }}"


@pytest.mark.parametrize(
    ("template", "values", "expected"),
    [
        ("{{ .Prompt }}", {"Prompt": "hi"}, "hi"),
        ("{{ .Missing }}", {}, "<no value>"),
        (SYSTEM_FIRST, {"Prompt": "p"}, "p"),
        (SYSTEM_FIRST, {"System": "s", "Prompt": "p"}, "S:s p"),
        ("{{ if .A }}a{{ else if .B }}b{{ else }}c{{ end }}", {"B": True}, "b"),
        ("{{ if .A }}a{{ else if .B }}b{{ else }}c{{ end }}", {}, "c"),
        ("x {{- .P -}} \n y", {"P": "!"}, "x!y"),
        ("{{/* note */}}{{ .Think }}", {"Think": True}, "true"),
    ],
)
def test_template_subset_renders_like_go(template: str, values: dict, expected: str) -> None:
    assert parse(template).execute(values) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ .Prompt", "template: :1: unclosed action"),
        ("{{ if .System }}x", "template: :1: unexpected EOF"),
        ("a\n{{ end }}", "template: :2: unexpected {{end}}"),
        ("{{ upper .Prompt }}", 'template: :1: function "upper" not defined'),
        ("{{ }}", "template: :1: missing value for command"),
    ],
)
def test_template_errors_read_like_go(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        parse(template)
    assert str(info.value) == message


def test_unsupported_template_actions_say_so() -> None:
    with pytest.raises(TemplateError, match="not supported by ollama-magic's template subset"):
        parse("{{ range .Messages }}{{ end }}")


def test_cut_after_stops_at_the_response() -> None:
    template = parse("<{{ .Prompt }}>{{ .Response }}</turn>")
    assert template.execute({"Prompt": "q", "Response": "a"}, cut_after="Response") == "<q>a"


# -- prompts -------------------------------------------------------------------------------------

CARD = ModelCard("m:latest", "f", "1M", "F16", 1, "0" * 64, template=TEMPLATE, system="Default.")


def test_generate_prompt_uses_the_request_system_else_the_models() -> None:
    job = GenerateJob(model="m", card=CARD, prompt="hi")
    assert render_generate(job) == "<|system|>Default.\n<|user|>hi\n<|assistant|>"
    job = GenerateJob(model="m", card=CARD, prompt="hi", system="Mine.")
    assert render_generate(job) == "<|system|>Mine.\n<|user|>hi\n<|assistant|>"


def test_fill_in_the_middle_gets_only_prompt_and_suffix() -> None:
    job = GenerateJob(model="m", card=CARD, prompt="def f(", suffix=")")
    assert render_generate(job) == "<|fim_prefix|>def f(<|fim_suffix|>)<|fim_middle|>"


def test_raw_prompts_are_verbatim() -> None:
    assert render_generate(GenerateJob(model="m", card=CARD, prompt="{{ x", raw=True)) == "{{ x"


def test_chat_renders_one_turn_per_user_message() -> None:
    job = ChatJob(
        model="m",
        card=CARD,
        messages=(
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Again"},
        ),
    )
    assert render_chat(job) == (
        "<|system|>Default.\n<|user|>Hi\n<|assistant|>Hello!\n<|user|>Again\n<|assistant|>"
    )


# -- schema synthesis ----------------------------------------------------------------------------


class Address(BaseModel):
    street: str
    zip_code: int


class Person(BaseModel):
    name: str
    age: int
    height: float
    member: bool
    kind: Literal["a", "b"]
    nickname: str | None = None
    tags: list[str]
    home: Address
    others: list[Address]


def test_synthesized_instances_validate_against_pydantic_schemas() -> None:
    instance = synthesize(Person.model_json_schema())
    person = Person.model_validate(instance)
    assert person.name == "name" and person.age == 42 and person.kind == "a"
    assert person.home.street == "street" and len(person.others) == 1
    assert synthesize(Person.model_json_schema()) == instance  # deterministic


def test_synthesis_respects_bounds_formats_and_recursion() -> None:
    schema = {
        "type": "object",
        "properties": {
            "n": {"type": "integer", "minimum": 100},
            "m": {"type": "integer", "exclusiveMaximum": 10},
            "when": {"type": "string", "format": "date"},
            "code": {"type": "string", "minLength": 6, "maxLength": 8},
            "tree": {"$ref": "#"},
        },
    }
    value = synthesize(schema)
    assert value["n"] == 100 and value["m"] == 9 and value["when"] == "2024-01-01"
    assert 6 <= len(value["code"]) <= 8
    assert isinstance(value["tree"], dict)  # recursion is cut off, not infinite


# -- request decoding ----------------------------------------------------------------------------


def test_fields_match_case_insensitively_and_nulls_mean_absent() -> None:
    body = decode_first(b'{"MODEL":"a","Prompt":"p","stream":null,"keep_alive":null,"x":1}')
    assert decode_struct(body, GENERATE_REQUEST) == {"model": "a", "prompt": "p"}


CANNOT = "json: cannot unmarshal"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[]", "json: cannot unmarshal array into Go value of type api.GenerateRequest"),
        (
            b'{"prompt":1}',
            f"{CANNOT} number into Go struct field GenerateRequest.prompt of type string",
        ),
        (
            b'{"context":[1, 2.5]}',
            f"{CANNOT} number 2.5 into Go struct field GenerateRequest.context of type int",
        ),
        (
            b'{"options":[]}',
            "json: cannot unmarshal array into Go struct field GenerateRequest.options"
            " of type map[string]interface {}",
        ),
        (b'{"images":["abc"]}', "illegal base64 data at input byte 0"),
        # a type error is remembered, but a keep_alive error stops decoding at once and wins
        (b'{"prompt":1,"keep_alive":"1d"}', 'time: unknown unit "d" in duration "1d"'),
        (
            b'{"keep_alive":"1m","prompt":1,"stream":"x"}',
            f"{CANNOT} number into Go struct field GenerateRequest.prompt of type string",
        ),
    ],
)
def test_decode_errors_are_gos(body: bytes, message: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_struct(decode_first(body), GENERATE_REQUEST)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (42, 42_000_000_000),
        (42.5, 42_500_000_000),
        (-1, MAX_DURATION),
        (-3.14, MAX_DURATION),
        ("10m", 600_000_000_000),
        ("1h30m", 5_400_000_000_000),
        ("0", 0),
        ("-1m", MAX_DURATION),
        (1e300, MAX_DURATION),
    ],
)
def test_keep_alive_values(value: object, expected: int) -> None:
    assert keep_alive_ns(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("300", 'time: missing unit in duration "300"'),
        ("-1", 'time: missing unit in duration "-1"'),
        ("1d", 'time: unknown unit "d" in duration "1d"'),
        ("abc", 'time: invalid duration "abc"'),
        (True, "Unsupported type: 'bool'"),
        ({}, "Unsupported type: 'map[string]interface {}'"),
        ([], "Unsupported type: '[]interface {}'"),
    ],
)
def test_keep_alive_errors(value: object, message: str) -> None:
    with pytest.raises(DecodeError) as info:
        keep_alive_ns(value)
    assert str(info.value) == message


def test_think_values() -> None:
    assert think_value(True) is True and think_value("max") == "max"
    with pytest.raises(DecodeError, match=r'^invalid think value: "extreme" \(must be "high"'):
        think_value("extreme")
    with pytest.raises(DecodeError, match=r"^think must be a boolean or string"):
        think_value(1)


def test_options_are_coerced_like_go_and_unknown_keys_pass_through() -> None:
    options = {"num_ctx": 4096.9, "temperature": 1, "stop": ["a"], "seed": None, "mine": "x"}
    assert validate_options(options) == {
        "num_ctx": 4096,
        "temperature": 1.0,
        "stop": ["a"],
        "mine": "x",
    }


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"num_predict": "10"}, 'option "num_predict" must be of type integer'),
        ({"num_ctx": True}, 'option "num_ctx" must be of type integer'),
        ({"temperature": "hot"}, 'option "temperature" must be of type float32'),
        ({"use_mmap": "true"}, 'option "use_mmap" must be of type boolean'),
        ({"stop": "\n"}, 'option "stop" must be of type array'),
        ({"stop": ["a", 1]}, 'option "stop" must be of an array of strings'),
    ],
)
def test_option_type_errors(options: dict, message: str) -> None:
    with pytest.raises(OptionError) as info:
        validate_options(options)
    assert str(info.value) == message


def test_modelfile_parameters_sit_under_request_options() -> None:
    params = 'num_predict 300\nstop "<|user|>"\nstop "###"\ntemperature 0.6'
    assert parse_parameters(params) == {
        "num_predict": 300,
        "stop": ["<|user|>", "###"],
        "temperature": 0.6,
    }
    card = ModelCard("m", "f", "1M", "F16", 1, "0" * 64, parameters=params, context_length=8192)
    assert model_options(card, {"num_predict": 5})["num_predict"] == 5
    assert model_options(card, {})["num_ctx"] == 4096
    assert model_options(card, {"num_ctx": 1})["num_ctx"] == 4
    assert model_options(card, {"num_ctx": 100_000})["num_ctx"] == 8192
    vision = ModelCard("v", "f", "1M", "F16", 1, "0" * 64, capabilities=("completion", "vision"))
    assert model_options(vision, {"num_ctx": 512})["num_ctx"] == 2048


# -- stop strings --------------------------------------------------------------------------------


def test_stop_filter_holds_back_possible_starts_and_cuts_at_the_match() -> None:
    stop = StopFilter(["<|user|>"])
    assert stop.push("Hello <|") == ("Hello ", False)
    assert stop.push("us") == ("", False)
    assert stop.push("er|> more") == ("", True)
    other = StopFilter(["END"])
    assert other.push("the EN") == ("the ", False)
    assert other.push("d") == ("ENd", False)
    assert other.flush() == ""


# -- the llama engine's reasoning split (pure: no model needed) ----------------------------------

THINK_OUTPUT = "<think>\nThe sum of two and two. It is four.\n</think>\n\nThe answer is 4."


def split_think_output(pieces: list[str]) -> tuple[list[Token], list[Token]]:
    """Tokens from feeding ``pieces``, and those from the flush at the end."""
    think_tokens = _ThinkTokens()
    fed = [token for piece in pieces for token in think_tokens.feed(piece)]
    return fed, think_tokens.flush()


@given(st.lists(st.integers(0, len(THINK_OUTPUT)), max_size=12))
def test_think_tokens_split_the_same_for_any_chunking(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(THINK_OUTPUT)]
    pieces = [THINK_OUTPUT[a:b] for a, b in itertools.pairwise(bounds)]
    fed, flushed = split_think_output(pieces)
    tokens = fed + flushed
    assert "".join(t.thinking for t in tokens) == "The sum of two and two. It is four."
    assert "".join(t.response for t in tokens) == "The answer is 4."
    assert all(bool(t.thinking) != bool(t.response) for t in tokens)  # one kind per token
    first_answer = next(i for i, t in enumerate(tokens) if t.response)
    assert not any(t.thinking for t in tokens[first_answer:])


def test_think_tokens_hold_back_trailing_space_of_the_reasoning() -> None:
    fed, _ = split_think_output(["<think>\nHmm.", "\n"])
    assert fed == [Token(thinking="Hmm.")]  # the "\n" may be the one before </think>
    fed, flushed = split_think_output(["<think>\nHmm.", "\n", "More.\n", "</think>"])
    assert fed == [Token(thinking="Hmm."), Token(thinking="\nMore.")] and flushed == []


def test_think_tokens_when_the_output_stops_inside_the_reasoning() -> None:
    fed, flushed = split_think_output(["<think>\nHalf a thou", "ght </th"])
    assert "".join(t.thinking for t in fed + flushed) == "Half a thought </th"
    assert not any(t.response for t in fed + flushed)


def test_think_tokens_without_the_opening_tag_stream_as_answer() -> None:
    assert split_think_output(["Plain", " answer"]) == (
        [Token(response="Plain"), Token(response=" answer")],
        [],
    )
    # A bare </think> later cannot take back what was streamed: only the text right before it
    # becomes reasoning (the grammar's forced <think> rules this out for the demo model).
    fed, _ = split_think_output(["Plain", " answer", " more</think>\n\nafter"])
    assert fed == [
        Token(response="Plain"),
        Token(response=" answer"),
        Token(thinking=" more"),
        Token(response="after"),
    ]
