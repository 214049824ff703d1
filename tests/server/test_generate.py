"""/api/generate on the wire: framing, final chunk, load/unload, checks in Ollama's order."""

from __future__ import annotations

import base64
import json
import time

import pytest
import requests
from pydantic import BaseModel

from ollama_magic.server import OllamaServer, tokenizer

from .helpers import CREATED_AT, METRIC_KEYS, answer, exchange, ndjson, post

JSON = "application/json; charset=utf-8"
THINK_CHOICES = '("high", "medium", "low", "max", true, or false)'
FINAL_KEYS = ["model", "created_at", "response", "done", "done_reason", "context", *METRIC_KEYS]


def generate(srv: OllamaServer, **body: object) -> list[dict]:
    reply = post(srv, "/api/generate", body)
    assert reply.status_code == 200, reply.text
    return ndjson(reply)


def test_stream_is_one_json_line_per_chunk(srv: OllamaServer) -> None:
    reply = exchange(srv, "POST", "/api/generate", {"model": "echo", "prompt": "hi"})
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/x-ndjson"
    assert reply.headers["transfer-encoding"] == "chunked" and reply.terminated
    assert reply.chunks and all(c.endswith(b"\n") and c.count(b"\n") == 1 for c in reply.chunks)
    lines = reply.lines
    *tokens, final = lines
    assert all(list(line) == ["model", "created_at", "response", "done"] for line in tokens)
    assert all(line["model"] == "echo" and line["done"] is False for line in tokens)
    assert all(CREATED_AT.match(line["created_at"]) for line in lines)
    assert answer(lines) == "Echo: <|user|>hi\n<|assistant|>"
    assert list(final) == FINAL_KEYS
    assert (final["response"], final["done"], final["done_reason"]) == ("", True, "stop")
    assert final["eval_count"] == len(tokens)
    assert all(isinstance(final[k], int) and final[k] > 0 for k in METRIC_KEYS)
    assert final["total_duration"] >= final["load_duration"]
    assert b"\\u003c" in reply.body and b"<" not in reply.body  # Go escapes < and >


def test_model_is_echoed_verbatim(srv: OllamaServer) -> None:
    for name in ("echo", "echo:latest", "library/echo", "registry.ollama.ai/library/echo:latest"):
        lines = generate(srv, model=name, prompt="x", stream=False)
        assert lines[0]["model"] == name


def test_non_stream_is_one_object_with_everything(srv: OllamaServer) -> None:
    reply = post(srv, "/api/generate", {"model": "thinker", "prompt": "Why?", "stream": False})
    assert reply.headers["Content-Type"] == JSON
    body = reply.json()
    assert list(body) == [*FINAL_KEYS[:3], "thinking", *FINAL_KEYS[3:]]
    assert body["thinking"].startswith("Okay, the user wants to know about Why")
    assert body["response"].startswith("**Why** in brief:")
    echo = post(srv, "/api/generate", {"model": "echo", "prompt": "x", "stream": False}).json()
    assert "thinking" not in echo  # omitempty


@pytest.mark.parametrize("stream", [True, False])
def test_load_and_unload_are_single_objects(fresh: OllamaServer, stream: bool) -> None:
    reply = post(fresh, "/api/generate", {"model": "echo", "stream": stream})
    assert reply.headers["Content-Type"] == JSON
    load = reply.json()
    assert list(load) == ["model", "created_at", "response", "done", "done_reason"]
    assert (load["model"], load["response"], load["done"], load["done_reason"]) == (
        "echo",
        "",
        True,
        "load",
    )
    unload = post(fresh, "/api/generate", {"model": "echo", "keep_alive": 0, "stream": stream})
    assert unload.json()["done_reason"] == "unload"
    assert CREATED_AT.match(unload.json()["created_at"])


def test_images_or_system_without_prompt_only_load(srv: OllamaServer) -> None:
    image = base64.b64encode(b"\x89PNG").decode()
    for body in ({"images": [image]}, {"system": "Be brief."}, {"prompt": ""}):
        reply = post(srv, "/api/generate", {"model": "echo", **body})
        assert reply.json()["done_reason"] == "load"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"prompt": "hi"}, 404, "model '' not found"),
        ({"model": "  ", "prompt": "hi"}, 404, "model '  ' not found"),
        ({"model": "nope", "prompt": "hi"}, 404, "model 'nope' not found"),
        (
            {"model": "echo", "prompt": "hi", "top_logprobs": 21},
            400,
            "top_logprobs must be between 0 and 20",
        ),
        (
            {"model": "echo", "prompt": "hi", "raw": True, "system": "s"},
            400,
            "raw mode does not support template, system, or context",
        ),
        (
            {"model": "echo", "prompt": "hi", "raw": True, "context": [1]},
            400,
            "raw mode does not support template, system, or context",
        ),
        (
            {"model": "reasoner", "prompt": "hi", "think": True},
            400,
            '"reasoner" does not support thinking',
        ),
        (
            {"model": "reasoner:latest", "prompt": "hi", "think": "high"},
            400,
            '"reasoner:latest" does not support thinking',
        ),
        (
            {"model": "reasoner", "prompt": "def f(", "suffix": ")"},
            400,
            "registry.ollama.ai/library/reasoner:latest does not support insert",
        ),
        (
            {"model": "echo", "prompt": "hi", "think": "extreme"},
            400,
            'invalid think value: "extreme" (must be ' + THINK_CHOICES[1:],
        ),
        (
            {"model": "echo", "prompt": "hi", "think": 1},
            400,
            "think must be a boolean or string " + THINK_CHOICES,
        ),
        (
            {"model": "echo", "prompt": "hi", "template": "{{ .Prompt"},
            500,
            "template: :1: unclosed action",
        ),
    ],
)
def test_errors(srv: OllamaServer, body: dict, status: int, message: str) -> None:
    reply = post(srv, "/api/generate", body)
    assert reply.status_code == status
    assert reply.headers["Content-Type"] == JSON
    assert reply.content == json.dumps({"error": message}, separators=(",", ":")).encode()


def test_unknown_model_beats_unload(srv: OllamaServer) -> None:
    reply = post(srv, "/api/generate", {"model": "nope", "keep_alive": 0})
    assert (reply.status_code, reply.json()) == (404, {"error": "model 'nope' not found"})


def test_unload_comes_before_the_other_checks(srv: OllamaServer) -> None:
    body = {"model": "reasoner", "keep_alive": "0s", "raw": True, "system": "x", "think": True}
    assert post(srv, "/api/generate", body).json()["done_reason"] == "unload"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"temperature": "hot"}, 'option "temperature" must be of type float32'),
        ({"num_predict": "10"}, 'option "num_predict" must be of type integer'),
        ({"use_mmap": "yes"}, 'option "use_mmap" must be of type boolean'),
        ({"stop": "\n"}, 'option "stop" must be of type array'),
        ({"stop": ["a", 1]}, 'option "stop" must be of an array of strings'),
    ],
)
def test_option_types_are_500s(srv: OllamaServer, options: dict, message: str) -> None:
    reply = post(srv, "/api/generate", {"model": "echo", "prompt": "hi", "options": options})
    assert (reply.status_code, reply.json()) == (500, {"error": message})
    # checked while scheduling, so even a load-only request fails
    assert post(srv, "/api/generate", {"model": "echo", "options": options}).status_code == 500


def test_unknown_and_null_options_are_ignored(srv: OllamaServer) -> None:
    options = {"bogus": [1], "mirostat": 2, "temperature": None, "num_predict": 3.9}
    final = generate(srv, model="echo", prompt="hi", options=options)[-1]
    assert (final["eval_count"], final["done_reason"]) == (3, "length")  # 3.9 truncates to 3


def test_system_template_raw_suffix_and_images_show_in_echo(srv: OllamaServer) -> None:
    def echo(**body: object) -> dict:
        return post(srv, "/api/generate", {"model": "echo", "stream": False, **body}).json()

    assert echo(prompt="hi", system="Be brief.")["response"] == (
        "Echo: <|system|>Be brief.\n<|user|>hi\n<|assistant|>"
    )
    templated = echo(prompt="hi", system="S", template="{{ .System }}|{{ .Prompt }}|{{ .Nope }}")
    assert templated["response"] == "Echo: S|hi|<no value>"
    raw = echo(prompt="<raw>", raw=True)
    assert raw["response"] == "Echo: <raw>" and "context" not in raw
    assert echo(prompt="def f(", suffix="):")["response"] == (
        "Echo: <|fim_prefix|>def f(<|fim_suffix|>):<|fim_middle|>"
    )
    image = base64.b64encode(b"\x89PNG\r\n").decode()
    assert echo(prompt="look", images=[image, image])["response"] == (
        "Echo: <|user|>look\n<|assistant|> [image 1: 6 bytes] [image 2: 6 bytes]"
    )


def test_context_round_trip(srv: OllamaServer) -> None:
    first = generate(srv, model="echo", prompt="My name is Ada.", stream=False)[0]
    second = generate(srv, model="echo", prompt="Name?", context=first["context"], stream=False)[0]
    turn1 = "<|user|>My name is Ada.\n<|assistant|>"
    assert first["response"] == "Echo: " + turn1
    assert (
        second["response"] == "Echo: " + turn1 + "Echo: " + turn1 + "<|user|>Name?\n<|assistant|>"
    )
    new_turn = tokenizer.split("<|user|>Name?\n<|assistant|>")
    assert second["prompt_eval_count"] == len(first["context"]) + len(new_turn)
    assert second["context"][: len(first["context"])] == first["context"]


def test_reasoner_writes_think_tags_inline_cut_mid_tag(srv: OllamaServer) -> None:
    lines = generate(srv, model="reasoner", prompt="Why is the sky blue?")
    pieces = [line["response"] for line in lines[:-1]]
    assert pieces[:3] == ["<thi", "nk>", "\n"]
    assert "</th" in pieces and "ink>" in pieces
    text = answer(lines)
    reasoning, _, markdown = text.partition("\n</think>\n\n")
    assert reasoning.startswith("<think>\nThe user asks about Why is the sky blue.")
    assert markdown.startswith("## Why is the sky blue\n\n") and "- **What:**" in markdown
    assert all("thinking" not in line for line in lines)
    assert len(tokenizer.split(reasoning)) >= 40 and len(tokenizer.split(markdown)) >= 40
    assert (
        answer(generate(srv, model="reasoner", prompt="Why is the sky blue?", think=False)) == text
    )


def test_thinker_streams_reasoning_in_the_thinking_field(srv: OllamaServer) -> None:
    lines = generate(srv, model="thinker", prompt="Plan a picnic.")[:-1]
    thinking = [line for line in lines if "thinking" in line]
    answering = [line for line in lines if "thinking" not in line]
    assert thinking and answering and lines.index(answering[0]) == len(thinking)
    assert all(line["response"] == "" for line in thinking)
    assert answer(lines) == (
        "**Plan a picnic** in brief:\n\n1. What it is: a clear definition.\n"
        "2. Why it matters: it shows up in practice.\n3. Where next: try a small example yourself."
    )
    assert "<think>" not in answer(lines)
    assert answer(lines, "thinking").endswith("That covers it; time to write the answer.")
    without = generate(srv, model="thinker", prompt="Plan a picnic.", think=False)
    assert answer(without, "thinking") == "" and answer(without) == answer(lines)


def test_think_levels_reason_longer(srv: OllamaServer) -> None:
    lengths = [
        len(answer(generate(srv, model="thinker", prompt="x", think=level), "thinking"))
        for level in ("low", "medium", "high", "max")
    ]
    assert lengths == sorted(lengths) and len(set(lengths)) == 4
    default = answer(generate(srv, model="thinker", prompt="x"), "thinking")
    assert len(default) == lengths[1]  # think absent = true = medium


def test_num_predict_counts_reasoning_tokens(srv: OllamaServer) -> None:
    lines = generate(srv, model="thinker", prompt="x", options={"num_predict": 10})
    final = lines[-1]
    assert (final["done_reason"], final["eval_count"]) == ("length", 10)
    assert answer(lines) == "" and len(lines) == 11


def test_num_predict_zero_generates_nothing(srv: OllamaServer) -> None:
    final = generate(srv, model="echo", prompt="x", options={"num_predict": 0})[-1]
    assert final["done_reason"] == "length"
    assert "eval_count" not in final and "eval_duration" not in final  # omitempty


def test_stop_strings_cut_the_answer(srv: OllamaServer) -> None:
    lines = generate(srv, model="echo", prompt="hi", options={"stop": ["|>hi"]})
    assert answer(lines) == "Echo: <|user"
    assert lines[-1]["done_reason"] == "stop"
    assert answer(generate(srv, model="echo", prompt="hi", options={"stop": ["zzz"]})) == (
        "Echo: <|user|>hi\n<|assistant|>"
    )


def test_an_over_long_prompt_is_cut_to_about_half_the_window(srv: OllamaServer) -> None:
    """Ollama ≥ 0.30.11: num_keep (4) tokens plus the last ones, num_ctx − (num_ctx − 4) / 2."""
    prompt = " ".join(f"w{i}" for i in range(50))
    final = generate(srv, model="reasoner", prompt=prompt, options={"num_ctx": 8})[-1]
    assert final["prompt_eval_count"] == 6  # 8 − (8 − 4) / 2
    lines = generate(srv, model="slow", prompt=prompt, options={"num_ctx": 6, "scripted_delay": 0})
    assert lines[-1]["prompt_eval_count"] == 5  # 6 − max((6 − 4) / 2, 1)
    # echo is a vision model: Ollama never gives those less than 2048 tokens of context
    long_prompt = " ".join(f"w{i}" for i in range(2100))
    echo = generate(srv, model="echo", prompt=long_prompt, options={"num_ctx": 8}, stream=False)[0]
    assert echo["prompt_eval_count"] == 1026  # 4 + 1022: 2048 − (2048 − 4) / 2
    # the first num_keep (4) tokens stay ("<", "|", "user", "|"), then the end of the prompt
    assert echo["response"].startswith("Echo: <|user| w1084 w1085")
    assert echo["response"].endswith(" w2098 w2099\n<|assistant|>")
    options = {"num_ctx": 8, "num_keep": 0}
    kept = generate(srv, model="echo", prompt=long_prompt, options=options, stream=False)
    assert kept[0]["prompt_eval_count"] == 1024
    assert kept[0]["response"].startswith("Echo:  w1082 w1083")


def test_the_cut_is_logged_as_ollama_logs_it(srv: OllamaServer, caplog) -> None:
    prompt = " ".join(f"w{i}" for i in range(50))
    with caplog.at_level("WARNING", logger="ollama_magic.server"):
        generate(srv, model="reasoner", prompt=prompt, options={"num_ctx": 8})
    assert "truncating input prompt limit=6 prompt=61 keep=4 new=6" in caplog.messages


def test_num_keep_minus_one_keeps_the_start(srv: OllamaServer) -> None:
    long_prompt = " ".join(f"w{i}" for i in range(2100))
    options = {"num_ctx": 8, "num_keep": -1}
    echo = generate(srv, model="echo", prompt=long_prompt, options=options, stream=False)[0]
    assert echo["prompt_eval_count"] == 2047  # num_ctx − 1, all from the start
    assert echo["response"].startswith("Echo: <|user|>w0 w1 w2")


def test_truncate_false_passes_on_llama_servers_refusal(srv: OllamaServer) -> None:
    prompt = " ".join(f"w{i}" for i in range(50))
    body = {"model": "reasoner", "prompt": prompt, "options": {"num_ctx": 8}, "truncate": False}
    reply = post(srv, "/api/generate", body)
    assert reply.status_code == 400
    assert reply.json() == {
        "error": '{"error":{"code":400,"message":"request (61 tokens) exceeds the available '
        'context size (8 tokens), try increasing it","type":"exceed_context_size_error",'
        '"n_prompt_tokens":61,"n_ctx":8}}'
    }
    # a prompt that fits is sent whole
    assert post(srv, "/api/generate", dict(body, options={"num_ctx": 64})).status_code == 200


def test_shift_false_refuses_an_over_long_prompt(srv: OllamaServer) -> None:
    prompt = " ".join(f"w{i}" for i in range(50))
    for stream in (True, False):
        body = {"model": "reasoner", "prompt": prompt, "options": {"num_ctx": 8}, "shift": False}
        reply = post(srv, "/api/generate", dict(body, stream=stream))
        assert (reply.status_code, reply.json()) == (
            400,
            {
                "error": "the prompt is longer than the context length currently available to "
                "the model; shorten the prompt, adjust the context length in settings, or use "
                "a model with a longer context length"
            },
        )


def test_legacy_server_cuts_to_exactly_num_ctx(legacy: OllamaServer) -> None:
    """Ollama 0.12 (the Go runner): the first num_keep tokens, then the end, num_ctx in all."""
    assert requests.get(legacy.url + "/api/version", timeout=5).json() == {"version": "0.12.6"}
    prompt = " ".join(f"w{i}" for i in range(50))
    final = generate(legacy, model="reasoner", prompt=prompt, options={"num_ctx": 8})[-1]
    assert final["prompt_eval_count"] == 8
    options = {"num_ctx": 6, "scripted_delay": 0}
    assert generate(legacy, model="slow", prompt=prompt, options=options)[-1][
        "prompt_eval_count"
    ] == 6
    long_prompt = " ".join(f"w{i}" for i in range(2100))
    echo = generate(legacy, model="echo", prompt=long_prompt, options={"num_ctx": 8}, stream=False)
    assert echo[0]["prompt_eval_count"] == 2048
    assert echo[0]["response"].startswith("Echo: <|user| w62 w63")
    assert echo[0]["response"].endswith("<|assistant|>")
    options = {"num_ctx": 8, "num_keep": 0}
    kept = generate(legacy, model="echo", prompt=long_prompt, options=options, stream=False)
    assert kept[0]["response"].startswith("Echo:  w")
    # shift false changes nothing about the cut in that era
    body = {"model": "reasoner", "prompt": prompt, "options": {"num_ctx": 8}, "shift": False}
    assert ndjson(post(legacy, "/api/generate", body))[-1]["prompt_eval_count"] == 8


def test_legacy_server_refuses_with_the_old_text(legacy: OllamaServer) -> None:
    prompt = " ".join(f"w{i}" for i in range(50))
    body = {"model": "reasoner", "prompt": prompt, "options": {"num_ctx": 8}, "truncate": False}
    reply = post(legacy, "/api/generate", body)
    assert reply.status_code == 400
    assert reply.json() == {"error": "the input length exceeds the context length"}
    chat = {"model": "echo", "messages": [{"role": "user", "content": prompt}]}
    chat |= {"options": {"num_ctx": 2048}, "truncate": False, "stream": False}
    assert post(legacy, "/api/chat", chat).status_code == 200  # fits: 2048 for vision models


def test_legacy_truncation_can_be_chosen_apart_from_the_version() -> None:
    with OllamaServer(legacy_truncation=True) as server:
        assert requests.get(server.url + "/api/version", timeout=5).json()["version"] == "0.32.15"
        prompt = " ".join(f"w{i}" for i in range(50))
        final = generate(server, model="reasoner", prompt=prompt, options={"num_ctx": 8})[-1]
        assert final["prompt_eval_count"] == 8
    with OllamaServer(version="0.12.6", legacy_truncation=False) as server:
        final = generate(server, model="reasoner", prompt=prompt, options={"num_ctx": 8})[-1]
        assert final["prompt_eval_count"] == 6


def test_format_json_wraps_the_answer(srv: OllamaServer) -> None:
    lines = generate(srv, model="echo", prompt="hi", format="json")
    assert len(lines) > 3
    assert json.loads(answer(lines)) == {"answer": "Echo: <|user|>hi\n<|assistant|>"}
    thinker = generate(srv, model="thinker", prompt="x", format="json", stream=False)[0]
    assert "thinking" not in thinker  # generate constrains reasoning away
    assert json.loads(thinker["response"])["answer"].startswith("**x** in brief")


class City(BaseModel):
    name: str
    population: int
    districts: list[str]


def test_format_schema_gives_a_valid_instance(srv: OllamaServer) -> None:
    body = generate(
        srv, model="echo", prompt="A city", format=City.model_json_schema(), stream=False
    )
    city = City.model_validate_json(body[0]["response"])
    assert city == City(name="name", population=42, districts=["districts"])


@pytest.mark.parametrize(("fmt", "quoted"), [('"xml"', '"\\"xml\\""'), ("[1, 2]", '"[1, 2]"')])
def test_bad_format_is_a_500_after_loading(srv: OllamaServer, fmt: str, quoted: str) -> None:
    message = f'invalid format: {quoted}; expected "json" or a valid JSON Schema object'
    body = f'{{"model":"echo","prompt":"hi","stream":false,"format":{fmt}}}'
    reply = post(srv, "/api/generate", body)
    assert (reply.status_code, reply.headers["Content-Type"]) == (500, JSON)
    assert reply.json() == {"error": message}
    streamed = post(srv, "/api/generate", body.replace('"stream":false', '"stream":true'))
    # inside a stream Ollama sets the content type without charset
    assert (streamed.status_code, streamed.headers["Content-Type"]) == (500, "application/json")
    assert streamed.json() == {"error": message}
    loaded = post(srv, "/api/generate", {"model": "echo", "format": "xml"})
    assert loaded.json()["done_reason"] == "load"


@pytest.mark.parametrize("fmt", ["", None])
def test_empty_format_means_none(srv: OllamaServer, fmt: str | None) -> None:
    body = generate(srv, model="echo", prompt="hi", format=fmt, stream=False)[0]
    assert body["response"] == "Echo: <|user|>hi\n<|assistant|>"


def test_lorem_is_endless_markdown_cut_by_num_predict(srv: OllamaServer) -> None:
    lines = generate(srv, model="lorem", prompt="go")
    assert (lines[-1]["eval_count"], lines[-1]["done_reason"]) == (300, "length")
    text = answer(lines)
    for marker in ("# Lorem ipsum", "- Ut enim", "1. Sunt", "```python", "if a < b:", "| alpha |"):
        assert marker in text
    started = time.perf_counter()
    reply = post(
        srv, "/api/generate", {"model": "lorem", "prompt": "go", "options": {"num_predict": 20000}}
    )
    elapsed = time.perf_counter() - started
    lines = ndjson(reply)
    assert len(lines) == 20001 and lines[-1]["eval_count"] == 20000
    assert elapsed < 5, f"20,000 tokens took {elapsed:.1f} s"


def test_slow_waits_between_tokens_and_counts_on_when_asked(srv: OllamaServer) -> None:
    started = time.perf_counter()
    lines = generate(srv, model="slow", prompt="go", options={"num_predict": 5})
    assert time.perf_counter() - started >= 0.2
    assert answer(lines) == "This is a slow answer"
    fast = generate(
        srv, model="slow", prompt="go", options={"num_predict": 60, "scripted_delay": 0}
    )
    counted = answer(fast).split("That is all.")[1]
    assert counted == "".join(f" {n}" for n in range(1, len(counted.split()) + 1))
    assert (fast[-1]["eval_count"], fast[-1]["done_reason"]) == (60, "length")
