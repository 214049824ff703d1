"""The magic line: flags to request body, every refusal before any request, and the help text."""

from __future__ import annotations

import pytest

from ollama_magic.args import PARSER, ArgsError, Defaults, build_call, parse_line


def call(line: str, cell: str = "Hi", ns: dict | None = None, **defaults):
    return build_call(parse_line(line), cell, ns or {}, Defaults(**defaults))


def test_minimal_body_sends_stream_explicitly() -> None:
    assert call("m").body == {"model": "m", "prompt": "Hi", "stream": True}


def test_every_field_lands_where_the_api_wants_it(tmp_path) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(b"\x89PNG")
    c = call(
        "llava -s 'Be brief.' --suffix END --template '{{ .System }} {{ .Prompt }}' "
        f"--format json -i {image} -i raw_bytes -k 10m --think high --temperature 0.2 "
        "--num-ctx 8192 --num-predict 64 --seed 7 --top-k 20 --top-p 0.9 --min-p 0.05 "
        "--repeat-penalty 1.1 --stop '\\n\\n' --stop END -O num_gpu=0 -O mirostat=2 "
        "--no-stream -o r --host http://h:1 --timeout 9",
        ns={"raw_bytes": b"abc"},
    )
    assert c.body == {
        "model": "llava",
        "prompt": "Hi",
        "suffix": "END",
        "images": ["iVBORw==", "YWJj"],
        "format": "json",
        "options": {
            "temperature": 0.2,
            "num_ctx": 8192,
            "num_predict": 64,
            "seed": 7,
            "top_k": 20,
            "top_p": 0.9,
            "min_p": 0.05,
            "repeat_penalty": 1.1,
            "stop": ["\n\n", "END"],
            "num_gpu": 0,
            "mirostat": 2,
        },
        "system": "Be brief.",
        "template": "{{ .System }} {{ .Prompt }}",
        "stream": False,
        "keep_alive": "10m",
        "think": "high",
    }
    assert (c.out, c.host, c.timeout, c.stream) == ("r", "http://h:1", 9.0, False)


@pytest.mark.parametrize(
    ("flag", "wire"),
    [
        ("300", 300),
        ("-1", -1),
        ("0", 0),
        ("42.5", 42.5),
        ("10m", "10m"),
        ("1h30m", "1h30m"),
        ("-1m", "-1m"),
        ("0", 0),
    ],
)
def test_keep_alive_numbers_are_numbers_and_durations_strings(flag: str, wire) -> None:
    assert call(f"m -k {flag}").body["keep_alive"] == wire
    assert type(call(f"m -k {flag}").body["keep_alive"]) is type(wire)


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("m -k 1d", 'unknown unit "d"'),
        ("m -k abc", "invalid duration"),
        ("m --think extreme", "use no value, or one of low, medium, high, max"),
        ("m --temperature hot", "invalid float value: 'hot'"),
        ("m --num-predict 1.5", "invalid int value"),
        ("m --bogus", "unrecognized arguments: --bogus"),
        ("m -O novalue", "write KEY=VALUE"),
        ("m --raw -s x", "--raw sends the prompt as is"),
        ("m --format nothere", "use 'json', a JSON schema object"),
        ("m --format n", "n is a int; it must be a schema dict"),
        ("m --format '{bad'", "the JSON schema does not parse"),
        ("m -i nofile.png", "no such file, and no variable 'nofile.png'"),
        ("m -o 1x", "not a valid Python variable name"),
        ("m --timeout 0", "--timeout 0.0: use a number of seconds above 0"),
        ("m --timeout -3", "--timeout -3.0: use a number of seconds above 0"),
        ("m --timeout nan", "--timeout nan: use a number of seconds above 0"),
        ("m --timeout inf", "--timeout inf: use a number of seconds above 0"),
        ("m --timeout 1e7", "at most 1000000, e.g. --timeout 600"),
        ("m --context nothere", "no such variable"),
        ("m --context n", "expected a result (from -o) or a list of token ids"),
        ("m -c", "no previous answer"),
        ("m --think --no-think", "not allowed with argument"),
        ("m 'unclosed", "cannot split the magic line"),
    ],
)
def test_bad_values_are_refused_before_any_request(line: str, says: str) -> None:
    with pytest.raises(ArgsError, match=None) as info:
        call(line, ns={"n": 3})
    assert says in str(info.value)


def test_no_model_anywhere_says_how_to_set_one() -> None:
    with pytest.raises(ArgsError, match=r"%config OllamaMagics\.model"):
        call("")
    assert call("", model="llama3.2").body["model"] == "llama3.2"


def test_empty_cell_is_refused() -> None:
    with pytest.raises(ArgsError, match="the cell is empty"):
        call("m", cell="  \n")


def test_braces_fill_only_existing_names() -> None:
    cell = 'Explain {code} in {lang}. JSON: {"a": {x}}'
    assert call("m", cell, ns={"code": "f()", "x": 1}).body["prompt"] == (
        'Explain f() in {lang}. JSON: {"a": 1}'
    )
    assert call("m --literal", cell, ns={"code": "f()"}).body["prompt"] == cell
    assert call("m", cell, ns={"code": "f()"}, interpolate=False).body["prompt"] == cell


def test_defaults_from_config_are_overridden_by_flags() -> None:
    c = call(
        "m --num-ctx 2048",
        options={"num_ctx": 8192, "temperature": 0},
        system="S",
        keep_alive="5m",
        think="low",
    )
    assert c.body["options"] == {"num_ctx": 2048, "temperature": 0}
    assert (c.body["system"], c.body["keep_alive"], c.body["think"]) == ("S", "5m", "low")
    assert call("m --no-think", think="low").body["think"] is False


def test_context_from_a_result_or_a_list() -> None:
    class R:
        def __init__(self) -> None:
            self.context = [1, 2, 3]

    assert call("m --context r", ns={"r": R()}).body["context"] == [1, 2, 3]
    assert call("m --context ids", ns={"ids": [4, 5]}).body["context"] == [4, 5]
    c = build_call(parse_line("m -c"), "more", {}, Defaults(), previous_context=[9])
    assert c.body["context"] == [9]


def test_format_from_a_schema_dict_and_a_pydantic_class() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Pet(pydantic.BaseModel):
        name: str
        age: int

    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    assert call("m --format s", ns={"s": schema}).body["format"] == schema
    c = call("m --format Pet", ns={"Pet": Pet})
    assert c.body["format"]["properties"]["age"] == {"title": "Age", "type": "integer"}
    assert c.schema_model is Pet
    assert call('m --format \'{"type": "object"}\'').body["format"] == {"type": "object"}


def test_template_braces_reach_the_body_unchanged() -> None:
    assert call("m --template '{{ .Prompt }}'").body["template"] == "{{ .Prompt }}"


def test_help_lists_every_flag() -> None:
    text = PARSER.format_help()
    for flag in (
        "--system",
        "--suffix",
        "--template",
        "--raw",
        "--format",
        "--image",
        "--keep-alive",
        "--no-stream",
        "--think",
        "--no-think",
        "--temperature",
        "--num-ctx",
        "--num-predict",
        "--seed",
        "--top-k",
        "--top-p",
        "--min-p",
        "--repeat-penalty",
        "--stop",
        "--option",
        "--context",
        "--continue",
        "--out",
        "--host",
        "--timeout",
        "--literal",
    ):
        assert flag in text, flag


@pytest.mark.parametrize(
    ("flags", "fields"),
    [
        ("--logprobs", {"logprobs": True, "top_logprobs": 5}),
        ("--logprobs 3", {"logprobs": True, "top_logprobs": 3}),
        ("--logprobs 0", {"logprobs": True}),
        ("--no-truncate --no-shift", {"truncate": False, "shift": False}),
    ],
)
def test_logprobs_truncate_and_shift_are_request_fields(flags: str, fields: dict) -> None:
    assert call(f"m {flags}").body == {"model": "m", "prompt": "Hi", "stream": True, **fields}


@pytest.mark.parametrize("value", ["21", "-1", "many", "2.5"])
def test_logprobs_outside_0_to_20_is_one_line(value: str) -> None:
    with pytest.raises(ArgsError, match=rf"--logprobs {value}: use a whole number .* 0 to 20"):
        call(f"m --logprobs={value}")
