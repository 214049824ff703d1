"""The llama.cpp engine against the real SmolLM2-135M GGUF, without HTTP.

Expected texts are never hard-coded: each test derives them from another run of the model (same
seed, temperature 0) or checks a property a broken engine would violate.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ollama_magic.server.context import LEGACY
from ollama_magic.server.engine import ChatJob, Done, Event, Fail, GenerateJob, ModelCard, Token
from ollama_magic.server.gguf import read_header
from ollama_magic.server.llama import DEFAULT_MODEL, EMBED_MODEL, THINK_MODEL, LlamaEngine

pytestmark = pytest.mark.real_model

PROMPT = "Write one sentence about the sea."


@dataclass
class Run:
    response: str
    thinking: str
    tokens: list[Token]
    final: Event

    @property
    def done(self) -> Done:
        assert isinstance(self.final, Done), self.final
        return self.final


def collect(events: Iterable[Event]) -> Run:
    items = list(events)
    tokens = [event for event in items if isinstance(event, Token)]
    assert items, "no events"
    assert all(isinstance(event, Token) for event in items[:-1]), items
    return Run(
        response="".join(token.response for token in tokens),
        thinking="".join(token.thinking for token in tokens),
        tokens=tokens,
        final=items[-1],
    )


def generate(engine: LlamaEngine, card: ModelCard, prompt: str = PROMPT, **fields: Any) -> Run:
    options = {"temperature": 0, "num_predict": 16} | fields.pop("options", {})
    job = GenerateJob(model=card.name, card=card, prompt=prompt, options=options, **fields)
    return collect(engine.generate(job))


# -- metadata ------------------------------------------------------------------------------------


def test_cards_come_from_the_gguf_file(engine: LlamaEngine, card: ModelCard, gguf_path: Path):
    header = read_header(gguf_path)
    assert card.name == DEFAULT_MODEL
    assert card.family == header.metadata["general.architecture"] == "llama"
    assert card.quantization_level == "Q4_1"  # general.file_type 3
    assert card.parameter_size == "134.52M"  # Ollama's formatting of 134,515,008
    assert card.context_length == header.metadata["llama.context_length"]
    assert card.template == header.metadata["tokenizer.chat_template"]
    assert "<|im_start|>" in card.template
    assert card.size == gguf_path.stat().st_size
    assert card.digest == hashlib.sha256(gguf_path.read_bytes()).hexdigest()
    assert card.capabilities == ("completion",)
    assert card.license == "apache-2.0"
    info = card.model_info
    assert info["general.parameter_count"] == 134_515_008
    assert info["llama.block_count"] == 30
    assert info["tokenizer.ggml.tokens"] == []  # 49152 entries, cut like Ollama does
    assert info["general.languages"] == ["en"]  # short arrays stay


def test_think_variant_says_what_it_is(card: ModelCard, think_card: ModelCard):
    assert think_card.name == THINK_MODEL
    assert "NOT a reasoning model" in think_card.model_info["ollama_magic.note"]
    assert "thinking" in think_card.capabilities
    assert think_card.digest != card.digest
    assert think_card.size == card.size


def test_embedding_variant_is_embedding_only_and_says_what_it_is(card: ModelCard, cards):
    embedder = cards[EMBED_MODEL]
    assert embedder.capabilities == ("embedding",)  # as Ollama: pooling_type, no completion
    assert embedder.model_info["llama.pooling_type"] == 1  # mean
    note = embedder.model_info["ollama_magic.note"]
    assert "Local server only" in note and "NOT an Ollama library model" in note
    assert embedder.digest not in (card.digest, cards[THINK_MODEL].digest)
    assert (embedder.size, embedder.embedding_length) == (card.size, 576)


def test_models_reads_no_weights(gguf_path: Path):
    fresh = LlamaEngine({DEFAULT_MODEL: gguf_path})
    assert [card.name for card in fresh.models()] == [DEFAULT_MODEL, THINK_MODEL, EMBED_MODEL]
    assert fresh.loaded() == []


# -- generate --------------------------------------------------------------------------------


def test_num_predict_is_exact(engine: LlamaEngine, card: ModelCard):
    run = generate(engine, card, options={"num_predict": 7})
    done = run.done
    assert done.done_reason == "length"
    assert done.eval_count == 7
    assert done.context is not None
    assert len(done.context) == done.prompt_eval_count + 7
    assert done.prompt_eval_duration > 0 and done.eval_duration > 0
    assert run.response


def test_streamed_text_is_the_detokenized_context(engine: LlamaEngine, card: ModelCard):
    """Pieces join to the text of the context's answer tokens (multi-byte characters held whole)."""
    run = generate(
        engine,
        card,
        "Write the word 'cat' in Chinese, Japanese and Russian.",
        options={"num_predict": 32},
    )
    done = run.done
    assert done.context is not None
    generated = list(done.context[done.prompt_eval_count :])
    runner = engine._runners[card_path(engine)]
    assert runner.call("POST", "/detokenize", {"tokens": generated})["content"] == run.response
    assert "\ufffd" not in run.response
    assert any(ord(ch) > 127 for ch in run.response), run.response
    assert len(run.tokens) <= done.eval_count


def slots_idle_soon(runner: Any, seconds: float = 1.0) -> bool:
    """Whether llama-server's slots stop processing within ``seconds`` (a cancel is queued)."""
    deadline = time.monotonic() + seconds
    while any(slot["is_processing"] for slot in runner.call("GET", "/slots")):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def card_path(engine: LlamaEngine) -> Path:
    return next(iter(engine._runners))


def test_same_seed_same_text_other_seed_other_text(engine: LlamaEngine, card: ModelCard):
    options = {"temperature": 1.0, "top_k": 100, "top_p": 1.0, "num_predict": 24}
    first = generate(engine, card, options=options | {"seed": 1234}).response
    again = generate(engine, card, options=options | {"seed": 1234}).response
    other = generate(engine, card, options=options | {"seed": 4321}).response
    assert first == again
    assert first != other


def test_temperature_zero_repeats_across_other_requests(engine: LlamaEngine, card: ModelCard):
    first = generate(engine, card).response
    generate(engine, card, "Something else entirely, please.")
    assert generate(engine, card).response == first


def test_stop_sequence_cuts_before_it(engine: LlamaEngine, card: ModelCard):
    full = generate(engine, card, options={"num_predict": 24}).response
    words = full.split()
    assert len(words) >= 4, full
    stop = " " + words[3]
    expected = full[: full.index(stop)]
    run = generate(engine, card, options={"num_predict": 24, "stop": ["ZZZ-never", stop]})
    assert run.response == expected
    assert run.done.done_reason == "stop"
    assert stop not in run.response


def test_format_json_gives_valid_json(engine: LlamaEngine, card: ModelCard):
    run = generate(
        engine,
        card,
        "Give me a JSON object with the key 'color' set to a color.",
        format="json",
        options={"num_predict": 64},
    )
    assert run.done.done_reason == "stop"
    value = json.loads(run.response)
    assert isinstance(value, dict)


def test_format_schema_gives_a_matching_object(engine: LlamaEngine, card: ModelCard):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    run = generate(engine, card, "Invent a person.", format=schema, options={"num_predict": 32})
    value = json.loads(run.response)
    assert set(value) == {"name", "age"}
    assert isinstance(value["name"], str) and type(value["age"]) is int


def test_bad_schema_fails_with_400(engine: LlamaEngine, card: ModelCard):
    run = generate(engine, card, format={"type": "no-such-type"})
    assert isinstance(run.final, Fail) and run.final.status == 400, run.final
    assert run.tokens == []


def test_context_round_trip(engine: LlamaEngine, card: ModelCard):
    first = generate(engine, card, "My name is Ada.", options={"num_predict": 8}).done
    assert first.context is not None
    follow = "What is my name?"
    alone = generate(engine, card, follow)
    with_context = generate(engine, card, follow, context=first.context)
    done = with_context.done
    assert done.context is not None
    assert done.context[: len(first.context)] == first.context
    assert done.prompt_eval_count == len(first.context) + alone.done.prompt_eval_count
    assert with_context.response != alone.response


def test_invalid_context_token_is_a_400(engine: LlamaEngine, card: ModelCard):
    run = generate(engine, card, context=(1, 10**9))
    assert isinstance(run.final, Fail) and run.final.status == 400


def test_raw_prompt_is_verbatim_and_has_no_context(engine: LlamaEngine, card: ModelCard):
    raw = generate(engine, card, "The capital of France is", raw=True, options={"num_predict": 4})
    templated = generate(engine, card, "The capital of France is", options={"num_predict": 4})
    assert raw.done.context is None
    assert raw.done.prompt_eval_count < templated.done.prompt_eval_count


def test_system_prompt_changes_the_prompt(engine: LlamaEngine, card: ModelCard):
    default = generate(engine, card, options={"num_predict": 1}).done
    short = generate(engine, card, system="Be brief.", options={"num_predict": 1}).done
    assert short.prompt_eval_count < default.prompt_eval_count  # replaces SmolLM's long default


def test_request_go_template_replaces_the_chat_template(engine: LlamaEngine, card: ModelCard):
    go = (
        "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
        "<|im_start|>user\n{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n{{ .Response }}"
        "<|im_end|>\n"
    )
    jinja = generate(engine, card, system="Be brief.")
    custom = generate(engine, card, system="Be brief.", template=go)
    assert custom.response == jinja.response
    assert custom.done.prompt_eval_count == jinja.done.prompt_eval_count
    bare = generate(engine, card, template="{{ .Prompt }}", options={"num_predict": 1})
    assert bare.done.prompt_eval_count < 10  # just the prompt's own tokens


def test_a_prompt_longer_than_num_ctx_is_cut_to_about_half_like_ollama(
    engine: LlamaEngine, card: ModelCard
):
    """Ollama ≥ 0.30.11: num_keep (4, +1 if the tokenizer adds BOS: not SmolLM2's) tokens
    plus the last ones, num_ctx − (num_ctx − keep) / 2 in all."""
    options = {"num_ctx": 256, "num_predict": 8}
    run = generate(engine, card, "word " * 400 + "\nSay hello.", options=options)
    assert run.done.prompt_eval_count == 130  # 256 − (256 − 4) / 2
    assert run.done.context is not None and run.done.context[:4] == whole_start(engine, card)
    refused = generate(engine, card, "word " * 400, options=options, truncate=False)
    assert isinstance(refused.final, Fail) and refused.final.status == 400
    body = json.loads(refused.final.message)  # llama-server's own body, passed on as text
    assert body["error"]["type"] == "exceed_context_size_error"
    assert "exceeds the available context size (256 tokens)" in body["error"]["message"]
    no_shift = generate(engine, card, "word " * 400, options=options, shift=False)
    assert isinstance(no_shift.final, Fail) and no_shift.final.status == 400
    assert no_shift.final.message.startswith("the prompt is longer than the context length")


def test_the_legacy_cut_keeps_the_whole_window(engine: LlamaEngine, card: ModelCard):
    """Ollama 0.12: cut to the window (here one slot less, which llama-server needs)."""
    options = {"num_ctx": 256, "num_predict": 8}
    run = generate(engine, card, "word " * 400 + "\nSay hello.", options=options, truncation=LEGACY)
    assert run.done.prompt_eval_count == 255
    assert run.done.context is not None and run.done.context[:4] == whole_start(engine, card)
    refused = generate(
        engine, card, "word " * 400, options=options, truncate=False, truncation=LEGACY
    )
    assert isinstance(refused.final, Fail) and refused.final.status == 400
    assert refused.final.message == "the input length exceeds the context length"


def whole_start(engine: LlamaEngine, card: ModelCard) -> tuple[int, ...]:
    """The first num_keep (4) tokens of the untruncated prompt, which the cut keeps."""
    run = generate(engine, card, "word " * 400, options={"num_predict": 1})
    assert run.done.context is not None
    return run.done.context[:4]


def test_a_full_window_shifts_and_goes_on_unless_shift_is_off(
    engine: LlamaEngine, card: ModelCard
):
    prompt = "1, 2, 3, 4, 5, 6, 7, 8,"
    options = {"num_ctx": 256, "num_predict": -1, "repeat_penalty": 1.0}
    stopped = generate(engine, card, prompt, raw=True, options=options, shift=False)
    assert engine._runners[card_path(engine)].n_ctx == 256
    assert stopped.done.done_reason == "length"
    assert stopped.done.prompt_eval_count + stopped.done.eval_count == 256
    shifted = generate(engine, card, prompt, raw=True, options=dict(options, num_predict=300))
    assert shifted.done.done_reason == "length" and shifted.done.eval_count == 300
    assert shifted.response.startswith(stopped.response)  # the same until the window filled
    generate(engine, card, options={"num_predict": 1})  # back to the default context
    assert engine._runners[card_path(engine)].n_ctx == 4096


def test_a_long_chat_drops_its_oldest_messages_first(engine: LlamaEngine, card: ModelCard):
    long = "Tell me about rivers. " * 40
    messages = [{"role": "system", "content": "Answer in one word."}]
    for turn in range(4):
        messages += [{"role": "user", "content": f"{turn}: {long}"},
                     {"role": "assistant", "content": "Water."}]
    messages.append({"role": "user", "content": "Name a colour."})
    run = chat(engine, card, messages, options={"num_ctx": 512, "num_predict": 4})
    assert isinstance(run.final, Done)
    assert 0 < run.done.prompt_eval_count <= 512
    whole = chat(engine, card, messages, options={"num_ctx": 4096, "num_predict": 1})
    assert whole.done.prompt_eval_count > 512


def test_closing_the_stream_stops_generation(engine: LlamaEngine, card: ModelCard):
    runner = engine._runners[card_path(engine)]
    events = engine.generate(
        GenerateJob(model=card.name, card=card, prompt=PROMPT, options={"num_predict": 500})
    )
    for _ in range(3):
        assert isinstance(next(events), Token)
    assert runner.active == 1
    started = time.monotonic()
    events.close()
    while runner.active and time.monotonic() - started < 2:  # 500 tokens take ~6 s
        time.sleep(0.01)
    assert runner.active == 0
    assert slots_idle_soon(runner)
    assert generate(engine, card, options={"num_predict": 2}).done.eval_count == 2


def test_concurrent_requests_take_turns(engine: LlamaEngine, card: ModelCard):
    expected = generate(engine, card).response
    results: list[str] = []

    def worker() -> None:
        results.append(generate(engine, card).response)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == [expected, expected]


def test_logprobs_come_with_the_tokens(engine: LlamaEngine, card: ModelCard):
    run = generate(engine, card, top_logprobs=2, options={"num_predict": 4})
    entries = [entry for token in run.tokens for entry in token.logprobs]
    assert [entry["token"] for entry in entries] == [t.response for t in run.tokens]
    for entry in entries:
        assert entry["logprob"] <= 0 and bytes(entry["bytes"]).decode() == entry["token"]
        first, second = entry["top_logprobs"]
        assert first["logprob"] >= second["logprob"]
    assert generate(engine, card, options={"num_predict": 4}).tokens[0].logprobs == ()


def test_greedy_draws_the_first_choice_with_no_penalty_by_default(
    engine: LlamaEngine, card: ModelCard
):
    """Ollama 0.32.10 dropped the default repeat_penalty of 1.1 (1.0 is off), so at temperature 0
    every token is the likeliest one the logprobs list; a penalty makes it otherwise."""

    def first_choices(options: dict[str, Any]) -> list[bool]:
        run = generate(engine, card, "Name one fruit.", top_logprobs=1, options=options)
        entries = [entry for token in run.tokens for entry in token.logprobs]
        return [entry["token"] == entry["top_logprobs"][0]["token"] for entry in entries]

    assert all(first_choices({"num_predict": 24}))
    assert not all(first_choices({"num_predict": 24, "repeat_penalty": 1.3}))


# -- chat ------------------------------------------------------------------------------------


def chat(engine: LlamaEngine, card: ModelCard, messages: list[dict[str, Any]], **fields: Any):
    options = {"temperature": 0, "num_predict": 12} | fields.pop("options", {})
    job = ChatJob(model=card.name, card=card, messages=tuple(messages), options=options, **fields)
    return collect(engine.chat(job))


def test_chat_ignores_thinking_and_has_no_context(engine: LlamaEngine, card: ModelCard):
    history = [
        {"role": "user", "content": "Hi, I am Bob."},
        {"role": "assistant", "content": "Hello Bob!"},
        {"role": "user", "content": "What is my name?"},
    ]
    plain = chat(engine, card, history)
    with_thinking = [dict(m) for m in history]
    with_thinking[1]["thinking"] = "The user said their name is Bob, a long thought."
    assert chat(engine, card, with_thinking).response == plain.response
    assert plain.done.context is None
    assert 0 < plain.done.eval_count <= 12
    shorter = chat(engine, card, history[-1:])
    assert shorter.done.prompt_eval_count < plain.done.prompt_eval_count


def test_chat_matches_generate_for_one_user_message(engine: LlamaEngine, card: ModelCard):
    chatted = chat(engine, card, [{"role": "user", "content": PROMPT}])
    generated = generate(engine, card, options={"num_predict": 12})
    assert chatted.response == generated.response


# -- the reasoning demo ----------------------------------------------------------------------


def test_think_true_splits_thinking_out(engine: LlamaEngine, think_card: ModelCard):
    split = generate(engine, think_card, "What is 2 + 2?", think=True, options={"num_predict": 120})
    assert split.thinking.strip() and split.response.strip()
    assert "<think>" not in split.response and "</think>" not in split.thinking
    assert split.tokens[0].thinking and not split.tokens[0].response


def test_think_unset_thinks_as_ollama_does_since_0_12_4(
    engine: LlamaEngine, think_card: ModelCard
):
    unset = generate(engine, think_card, "What is 2 + 2?", options={"num_predict": 120})
    split = generate(engine, think_card, "What is 2 + 2?", think=True, options={"num_predict": 120})
    assert (unset.thinking, unset.response) == (split.thinking, split.response)


def test_think_false_answers_plainly(engine: LlamaEngine, card: ModelCard, think_card: ModelCard):
    plain = generate(engine, think_card, think=False)
    assert "<think>" not in plain.response and not plain.thinking
    assert plain.response == generate(engine, card).response


# -- embeddings and unload -------------------------------------------------------------------


def test_embeddings_are_unit_vectors(engine: LlamaEngine, card: ModelCard):
    before = generate(engine, card).response
    first, second, again = engine.embed(DEFAULT_MODEL, ["a cat", "stock markets", "a cat"], {})
    assert generate(engine, card).response == before  # the embedding context leaves it alone
    assert len(first) == 576  # llama.embedding_length
    for vector in (first, second):
        assert abs(sum(x * x for x in vector) - 1) < 1e-4
    assert first == pytest.approx(again, abs=1e-5)
    assert first != pytest.approx(second, abs=1e-3)


def test_unload_frees_and_generate_reloads(engine: LlamaEngine, card: ModelCard):
    engine.load(THINK_MODEL, {})
    assert engine.loaded() == sorted([DEFAULT_MODEL, THINK_MODEL])
    engine.unload(THINK_MODEL)
    assert engine.loaded() == [DEFAULT_MODEL]  # the shared file stays for the other name
    engine.unload(DEFAULT_MODEL)
    assert engine.loaded() == []
    assert engine._runners == {}
    assert generate(engine, card, options={"num_predict": 2}).done.eval_count == 2
    assert engine.loaded() == [DEFAULT_MODEL]


def test_a_schema_keeps_control_characters_out_of_strings(engine: LlamaEngine, card: ModelCard):
    """llama-cpp-python's string rule let this answer put a raw newline in a string; whitespace
    between the JSON's tokens is allowed, as in llama.cpp's own JSON grammar."""
    schema = {
        "type": "object",
        "properties": {k: {"type": "string"} for k in ("name", "city", "job")}
        | {"age": {"type": "integer"}},
        "required": ["name", "age", "city", "job"],
    }
    run = generate(
        engine, card, "从这句话中提取信息：张伟今年28岁，住在上海，是一名工程师。",
        format=schema, options={"seed": 42, "num_predict": 100},
    )
    value = json.loads(run.response)  # a raw control character in a string would not parse
    assert set(value) == {"name", "age", "city", "job"}
    assert not [c for text in value.values() if isinstance(text, str) for c in text if c < " "]
