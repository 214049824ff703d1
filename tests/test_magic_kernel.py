"""``%%ollama`` end to end: a real kernel, the package's own server, real HTTP.

Each test asserts what the server received, what the cell displayed, and what was bound.
"""

from __future__ import annotations

import re
import threading
import time

import pytest

from .helpers import Kernel, bodies, error_line, flatten, interrupt_after_first_words, until


def test_streams_markdown_and_binds_the_result(kernel: Kernel, ollama) -> None:
    run = kernel.run(
        "%%ollama echo -o r --num-predict 50\nHello {who}, brace {kept}.\n".replace(
            "{who}", "{name}"
        ),
        timeout=30,
    )
    assert run.ok, run.error
    # the request, as sent
    (body,) = bodies(ollama)
    assert body["model"] == "echo" and body["stream"] is True
    assert body["options"] == {"num_predict": 50}
    assert body["prompt"] == "Hello {name}, brace {kept}."  # no such variables: unchanged
    # live updates happened, and the final rendering is one output after empty slots
    assert run.of_type("update_display_data")
    shown = [o for o in run.notebook_outputs() if o]
    assert len(shown) == 1
    assert "Echo:" in shown[0]["text/html"] and "done: stop" in shown[0]["text/plain"]
    assert flatten(run.nbval_outputs()) == flatten(run.notebook_outputs())
    assert kernel.value("r.done_reason") == "stop"
    assert kernel.value("r.answer.startswith('Echo:')") is True
    assert kernel.value("type(r.context).__name__") == "list"
    assert kernel.value("r.tokens_per_second > 0") is True
    assert kernel.value("r.raw['done']") is True


def test_variables_fill_the_prompt_and_line_text_arrives_intact(kernel: Kernel, ollama) -> None:
    kernel.run("topic = 'tides'")
    run = kernel.run(
        "%%ollama echo --template '{{ .Prompt }}' -s 'Be {brief}' -q\nTell me about {topic}."
    )
    assert run.ok, run.error
    (body,) = bodies(ollama)
    assert body["template"] == "{{ .Prompt }}"
    assert body["system"] == "Be {brief}"
    assert body["prompt"] == "Tell me about tides."
    assert run.notebook_outputs() == []  # --quiet


def test_inline_reasoning_is_split_and_collapsed(kernel: Kernel, ollama) -> None:
    run = kernel.run("%%ollama reasoner -o r\nWhy is the sky blue?")
    assert run.ok, run.error
    assert kernel.value("'<think>' in r.response") is True
    assert kernel.value("'<think>' in r.answer or '</think>' in r.answer") is False
    assert kernel.value("len(r.thinking) > 10 and len(r.answer) > 10") is True
    final = run.final_html()
    assert final.startswith('<div class="mathjax_ignore om-answer"><details><summary>')
    # while streaming, reasoning was shown open before it collapsed
    live = [
        m["content"]["data"].get("text/html", "") for m in run.of_type("update_display_data")
    ]
    assert any("Thinking…" in text for text in live)


def test_thinking_field_and_think_flags(kernel: Kernel, ollama) -> None:
    run = kernel.run("%%ollama thinker --think high -o r\nPlan a picnic.")
    assert run.ok, run.error
    assert bodies(ollama)[-1]["think"] == "high"
    assert kernel.value("bool(r.thinking) and '<think>' not in r.response") is True
    run = kernel.run("%%ollama thinker --no-think -o r\nPlan a picnic.")
    assert bodies(ollama)[-1]["think"] is False
    assert kernel.value("r.thinking") == ""


def test_reasoning_cut_by_num_predict(kernel: Kernel, ollama) -> None:
    run = kernel.run("%%ollama reasoner --num-predict 6 -o r\n请生成一个关于人工智能的简短介绍。")
    assert run.ok, run.error
    assert kernel.value("(r.done_reason, r.answer)") == ("length", "")
    assert kernel.value("len(r.thinking) > 0") is True
    assert "raise --num-predict" in run.notebook_outputs()[-1]["text/plain"]


def test_chinese_split_across_reads(kernel: Kernel, ollama) -> None:
    run = kernel.run("%%ollama chinese -o r\n介绍一下人工智能")
    assert run.ok, run.error
    answer = kernel.value("r.answer")
    assert "人工智能" in answer and "\ufffd" not in answer


def test_no_stream_shows_one_final_output(kernel: Kernel, ollama) -> None:
    run = kernel.run("%%ollama echo --no-stream -o r\nhi")
    assert run.ok, run.error
    assert bodies(ollama)[-1]["stream"] is False
    assert not run.of_type("update_display_data")
    assert len(run.notebook_outputs()) == 1
    assert kernel.value("r.answer.startswith('Echo:')") is True


def test_json_format_and_pydantic_data(kernel: Kernel, ollama) -> None:
    kernel.run(
        "from pydantic import BaseModel\n"
        "class City(BaseModel):\n    name: str\n    population: int\n"
    )
    run = kernel.run("%%ollama echo --format City -o r -q\nA city, please.")
    assert run.ok, run.error
    body = bodies(ollama)[-1]
    assert body["format"]["properties"]["population"]["type"] == "integer"
    assert kernel.value("type(r.data).__name__") == "City"
    run = kernel.run("%%ollama echo --format json -o r -q\nJSON please.")
    assert kernel.value("isinstance(r.data, dict)") is True


def test_continue_sends_the_previous_context(kernel: Kernel, ollama) -> None:
    kernel.run("%%ollama echo -o first -q\nRemember the number 7.")
    run = kernel.run("%%ollama echo -c -o second -q\nWhat number?")
    assert run.ok, run.error
    first_context = kernel.value("first.context")
    assert bodies(ollama)[-1]["context"] == first_context
    run = kernel.run("%%ollama echo --context first -q\nAgain?")
    assert bodies(ollama)[-1]["context"] == first_context


@pytest.mark.parametrize(("flag", "wire"), [("300", 300), ("10m", "10m"), ("-1", -1), ("0", 0)])
def test_keep_alive_forms_on_the_wire(kernel: Kernel, ollama, flag: str, wire: object) -> None:
    run = kernel.run(f"%%ollama echo -k {flag} -q\nhi")
    assert run.ok, run.error
    assert bodies(ollama)[-1]["keep_alive"] == wire


@pytest.mark.parametrize(
    "line", ["echo -k 1d", "echo --think extreme", "echo --temperature hot", "--bogus"]
)
def test_bad_flag_values_fail_before_any_request(kernel: Kernel, ollama, line: str) -> None:
    run = kernel.run(f"%%ollama {line}\nhi")
    assert error_line(run)
    assert bodies(ollama) == []
    assert kernel.run("1 + 1").ok  # the kernel still works


def test_unknown_model_names_it_and_suggests(kernel: Kernel, ollama) -> None:
    run = kernel.run("%%ollama ecoh\nhi")
    text = error_line(run)
    assert "Model 'ecoh' is not installed" in text
    assert "%ollama pull ecoh" in text and "echo:latest" in text


def test_server_unreachable_names_the_url(kernel: Kernel, ollama) -> None:
    run = kernel.run("%%ollama echo --host http://127.0.0.1:9\nhi")
    text = error_line(run)
    assert "Cannot reach Ollama at http://127.0.0.1:9" in text and "ollama serve" in text


def test_think_on_a_model_without_the_capability_names_models_that_have_it(
    kernel: Kernel, ollama
) -> None:
    run = kernel.run("%%ollama reasoner --think\nhi")
    text = error_line(run)
    assert text.startswith("reasoner cannot reason on request: it lacks the 'thinking'")
    assert "Drop --think, or use a model that has it: thinker:latest." in text
    assert [r.path for r in ollama.requests] == ["/api/generate", "/api/tags"]
    run = kernel.run("%%ollama thinker --think high\nhi")  # the suggestion works
    assert run.ok, run.error


def test_http_error_carries_the_server_message(kernel: Kernel, ollama) -> None:
    run = kernel.run("%%ollama echo -O temperature='\"hot\"'\nhi")
    assert 'Ollama answered 500: option "temperature" must be of type float32' in error_line(run)


def test_error_mid_stream_keeps_the_partial_answer(kernel: Kernel, ollama) -> None:
    run = kernel.run("%%ollama broken -o r\nhi")
    text = error_line(run)
    assert "The model failed mid-answer" in text and "scripted failure" in text
    assert "kept above and in r" in text
    assert kernel.value("r.done_reason") == "error"
    assert kernel.value("len(r.answer) > 0") is True
    shown = [o for o in run.notebook_outputs() if o]
    assert shown and "tokens so far" in shown[-1]["text/plain"]
    assert "cut short by an error" in shown[-1]["text/plain"]  # the reason: once, below


def test_dropped_connection_keeps_the_partial_answer(kernel: Kernel, ollama) -> None:
    run = kernel.run("%%ollama dropper -o r\nhi")
    text = error_line(run)
    assert "The connection closed before the answer was finished" in text
    assert kernel.value("(r.done_reason, len(r.answer) > 0)") == ("error", True)


def test_interrupt_closes_the_stream_and_keeps_the_partial_answer(kernel: Kernel, ollama) -> None:
    watch, updates = interrupt_after_first_words(kernel)
    run = kernel.run("%%ollama slow -o r --num-predict 400\nCount slowly.", on_message=watch)
    assert updates.is_set()  # stopped mid-answer, not before it began
    # The user's stop ends the cell as Ctrl-C ends a Python cell (so Run All stops there),
    # with one line; the footer says once that the answer is partial, with the tokens so far.
    assert error_line(run) == "Interrupted: the answer above is partial (kept in r)."
    assert not run.stdout
    assert kernel.value("r.done_reason") == "interrupted"
    assert kernel.value("0 < len(r.answer)") is True
    shown = [o for o in run.notebook_outputs() if o]
    footer = shown[-1]["text/plain"].splitlines()[-1]
    assert re.fullmatch(
        r"\[\d+ tokens so far · [\d.]+ tokens/s · stopped: the answer above is partial\]", footer
    ), footer
    (request,) = [r for r in ollama.requests if r.path == "/api/generate"]
    assert request.finished.wait(5) and request.disconnected_at is not None
    assert kernel.run("1 + 1").ok


def test_run_all_stops_at_an_interrupted_cell(kernel: Kernel, ollama) -> None:
    """Run All sends every cell at once with ``stop_on_error``: the interrupted cell fails,
    so ipykernel aborts the queued one, as after an interrupted Python cell."""
    first = kernel.kc.execute("%%ollama slow --num-predict 400\nCount slowly.", stop_on_error=True)
    second = kernel.kc.execute("%%ollama echo\nThe next cell.", stop_on_error=True)
    until(lambda: bodies(ollama), timeout=20)
    time.sleep(0.3)
    kernel.interrupt()
    replies: dict[str, dict] = {}
    while len(replies) < 2:
        msg = kernel.kc.get_shell_msg(timeout=30)
        replies[msg["parent_header"]["msg_id"]] = msg["content"]
    assert (replies[first]["status"], replies[first]["ename"]) == ("error", "UsageError")
    assert replies[first]["traceback"] == []
    assert replies[second]["status"] == "aborted"
    assert kernel.run("1 + 1").ok  # anything the second cell sent would have arrived by now
    assert [b["prompt"] for b in bodies(ollama)] == ["Count slowly."]
    assert not [r for r in ollama.requests if "The next cell" in str(r.json)]


def test_help_shows_every_flag(kernel: Kernel) -> None:
    run = kernel.run("%%ollama?\n")
    (page,) = run.reply["content"]["payload"]
    text = page["data"]["text/plain"]
    assert "usage: %%ollama [MODEL] [flags]" in text
    for flag in ("--num-predict", "--keep-alive", "--format", "--think", "--literal"):
        assert flag in text


def test_config_defaults(kernel: Kernel, ollama) -> None:
    run = kernel.run(
        "%config OllamaMagics.model = 'echo'\n%config OllamaMagics.options = {'num_ctx': 1024}\n"
    )
    assert run.ok, run.error
    run = kernel.run("%%ollama -q\nhi")
    assert run.ok, run.error
    body = bodies(ollama)[-1]
    assert body["model"] == "echo" and body["options"] == {"num_ctx": 1024}
    kernel.run("%config OllamaMagics.model = ''\n%config OllamaMagics.options = {}")


@pytest.mark.parametrize("payload", ['<img src=x onerror="alert(1)">', "<script>alert(1)</script>"])
def test_model_html_shows_as_text(kernel: Kernel, ollama, payload: str) -> None:
    run = kernel.run(f"%%ollama echo --raw\n{payload}")
    assert run.ok, run.error
    for m in run.of_type("display_data", "update_display_data"):
        markdown = m["content"]["data"].get("text/html", "")
        assert payload not in markdown
    assert "&lt;" in run.final_html()


def test_non_json_http_error_is_reported_verbatim(kernel: Kernel, ollama) -> None:
    run = kernel.run(f"%%ollama echo --host {ollama.url}/not/ollama\nhi")
    assert error_line(run) == "Ollama answered 404: 404 page not found"


def test_interrupt_before_any_answer_says_so(kernel: Kernel, ollama) -> None:
    sent = threading.Event()

    def interrupt_once_sent() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(
            r.path == "/api/generate" for r in ollama.requests
        ):
            time.sleep(0.01)
        time.sleep(0.3)
        sent.set()
        kernel.interrupt()

    threading.Thread(target=interrupt_once_sent, daemon=True).start()
    run = kernel.run("%%ollama slow -O scripted_delay=5 -o r\nWait for it.")
    assert sent.is_set()
    assert error_line(run) == "Interrupted before the model sent anything."
    assert not run.stdout
    assert kernel.value("(r.done_reason, r.answer)") == ("interrupted", "")
    assert [o for o in run.notebook_outputs() if o] == []


LONG_PROMPT = "The secret word is MANGO. " + " ".join(f"Fact {i} is true." for i in range(600))


@pytest.mark.parametrize("version", ["current", "0.12.6"])
def test_a_cut_prompt_is_never_silent(kernel: Kernel, version: str) -> None:
    """Current Ollama keeps about half the window and tells the client nothing; 0.12 kept
    exactly num_ctx. Either way the footer says so, and ``r.prompt_cut`` is true."""
    from ollama_magic.server import OllamaServer

    options = {} if version == "current" else {"version": version}
    with OllamaServer(**options) as server:
        kernel.run(f"long_prompt = {LONG_PROMPT!r}")
        run = kernel.run(
            f"%%ollama echo --num-ctx 2048 --num-predict 8 --host {server.url} -o r\n"
            "{long_prompt}"
        )
        assert run.ok, run.error
        kept = kernel.value("r.prompt_eval_count")
        assert kept == (2048 if version == "0.12.6" else 2048 - (2048 - 4) // 2)
        assert kernel.value("(r.prompt_cut, r.num_ctx)") == (True, 2048)
        footer = [o for o in run.notebook_outputs() if o][-1]["text/plain"]
        assert f"the prompt was longer than num_ctx=2048, so the server cut it to {kept}" in footer
        # a prompt that fits says nothing of the kind, and the server's window is asked once
        server.clear()
        run = kernel.run(
            f"%%ollama echo --num-ctx 8192 --num-predict 8 --host {server.url} -o r\n"
            "{long_prompt}"
        )
        assert run.ok and kernel.value("(r.prompt_cut, r.num_ctx)") == (False, 8192)
        assert "cut it" not in [o for o in run.notebook_outputs() if o][-1]["text/plain"]
        assert [r.path for r in server.requests].count("/api/ps") == 1


def test_logprobs_are_asked_for_kept_and_drawn(kernel: Kernel, ollama) -> None:
    run = kernel.run("%%ollama echo --logprobs 3 --num-predict 6 -o r\nWhy is the sky blue?")
    assert run.ok, run.error
    (body,) = bodies(ollama)
    assert body["logprobs"] is True and body["top_logprobs"] == 3
    tokens = kernel.value("[(t.token, len(t.alternatives)) for t in r.logprobs]")
    assert len(tokens) == 6 and all(n == 3 for _, n in tokens)
    assert "".join(token for token, _ in tokens) == kernel.value("r.response")
    final = [o for o in run.notebook_outputs() if o][-1]
    assert "<summary>Token probabilities</summary>" in final["text/html"]
    assert final["text/html"].count(" title=") == 6
    assert "token probabilities: 6 tokens, mean probability" in final["text/plain"]
