"""The magic treats servers and settings as untrusted input, in a real kernel over real HTTP.

A hostile Ollama look-alike (:mod:`tests.hostile_server`) sends wrong types, shapes no Ollama
sends, or nothing at all; ``OLLAMA_HOST`` carries a password. Every case must end in a table
with ``?`` or in one short line, never a traceback; the kernel must keep working; and the
password must appear in no output at all.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator

import pytest

from .helpers import CellRun, Kernel, error_line, magic_kernel
from .hostile_server import HostileServer

PASSWORD = "s3cret-pw"


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileServer]:
    with HostileServer() as server:
        yield server


@pytest.fixture()
def srv(hostile: HostileServer) -> HostileServer:
    hostile.clear()
    return hostile


@pytest.fixture(scope="module")
def kernel(hostile: HostileServer) -> Iterator[Kernel]:
    with magic_kernel(hostile.url.replace("http://", f"http://ann:{PASSWORD}@")) as k:
        yield k


def checked(run: CellRun) -> CellRun:
    """No traceback and no password anywhere in what the cell sent back."""
    everything = json.dumps([m["content"] for m in run.messages] + [run.reply["content"]])
    assert "Traceback" not in everything and PASSWORD not in everything
    return run


def one_line(run: CellRun) -> str:
    text = error_line(checked(run))
    assert "\n" not in text and len(text) < 400, text
    return text


def still_works(kernel: Kernel) -> None:
    assert kernel.value("6 * 7") == 42


def table(run: CellRun) -> str:
    assert checked(run).ok, run.error
    shown = [o for o in run.notebook_outputs() if o]
    assert "<script" not in shown[-1]["text/html"]
    return shown[-1]["text/plain"]


# -- wrong types in replies --------------------------------------------------------------------

WEIRD = [None, "abc", 5, -7, 1e300, 10**30, [], [1, "x"], {"a": 1}, True, "<script>x</script>"]


def test_models_with_wrong_types_show_question_marks(kernel: Kernel, srv) -> None:
    rows = [{"name": "good:latest", "size": 8_000_000, "details": {"family": "llama"}}]
    rows += [
        {"name": w, "size": w, "details": w, "capabilities": w, "modified_at": w} for w in WEIRD
    ]
    srv.answer("/api/tags", {"models": [*rows, "not a row", 7]})
    text = table(kernel.run("%ollama models"))
    lines = text.splitlines()
    assert lines[1].startswith("good:latest") and "8.0 MB" in lines[1]
    assert lines[2].split() == ["?"]  # a name of null: no name, and an unknown size
    assert lines[3].split()[:2] == ["abc", "?"]
    assert len(lines) == 2 + len(WEIRD)  # the rows that are not objects are left out
    html = kernel.run("%ollama models").notebook_outputs()[-1]["text/html"]
    assert "&lt;script&gt;x&lt;/script&gt;" in html
    still_works(kernel)


@pytest.mark.parametrize("reply", [{"models": "abc"}, [1, 2], "just text", {"models": {"a": 1}}])
def test_a_model_list_that_is_not_one_is_one_line(kernel: Kernel, srv, reply: object) -> None:
    srv.answer("/api/tags", reply)
    text = one_line(kernel.run("%ollama models"))
    assert text.startswith("The server sent an unexpected ")
    assert f"is {srv.url} an Ollama server?" in text
    still_works(kernel)


def test_no_model_list_is_an_empty_one(kernel: Kernel, srv) -> None:
    srv.answer("/api/tags", {"models": None})
    assert "No models installed yet" in table(kernel.run("%ollama models"))
    still_works(kernel)


def test_ps_with_wrong_types(kernel: Kernel, srv) -> None:
    rows = [
        {"name": w, "size": w, "size_vram": w, "context_length": w, "expires_at": w}
        for w in WEIRD
    ]
    srv.answer("/api/ps", {"models": rows})
    text = table(kernel.run("%ollama ps"))
    assert len(text.splitlines()) == 1 + len(WEIRD)
    assert "?" in text.splitlines()[1]
    still_works(kernel)


def test_show_with_wrong_types(kernel: Kernel, srv) -> None:
    srv.answer(
        "/api/show",
        {
            "system": 5,
            "template": ["{{ .Prompt }}"],
            "license": {"MIT": True},
            "parameters": 7,
            "details": "llama",
            "model_info": [1, 2],
            "capabilities": "vision",
            "modelfile": None,
        },
    )
    assert "System" in table(kernel.run("%ollama show m"))  # 5 is shown as written
    run = checked(kernel.run("%ollama show m --template"))
    assert run.ok and run.stdout == "\n"
    srv.answer("/api/show", {"model_info": {"x.context_length": 10**40}, "license": "<b>L</b>"})
    html = checked(kernel.run("%ollama show m")).notebook_outputs()[-1]["text/html"]
    assert "&lt;b&gt;L&lt;/b&gt;" in html and "10000000000" not in html
    srv.answer("/api/show", ["a", "list"])
    assert "unexpected reply to /api/show" in one_line(kernel.run("%ollama show m"))
    still_works(kernel)


def test_version_of_the_wrong_type(kernel: Kernel, srv) -> None:
    srv.answer("/api/version", {"version": {"major": 0}})
    run = checked(kernel.run("%ollama version"))
    assert run.ok and "; Ollama ? at " in run.stdout
    srv.answer("/api/version", [0, 12])
    run = checked(kernel.run("%ollama version"))
    assert run.ok and "it answers, but not as Ollama" in run.stdout


def test_pull_progress_with_wrong_types_still_succeeds(kernel: Kernel, srv) -> None:
    digest = "sha256:" + "a" * 64
    lines = [
        {"status": "pulling manifest"},
        {"status": 5, "digest": digest, "total": 10**30, "completed": "abc"},
        {"status": "pulling aaaa", "digest": digest, "total": "1000", "completed": -5},
        {"status": ["x"], "digest": {"d": 1}, "total": 1e300},
        {"status": "pulling aaaa", "digest": digest, "total": 1000, "completed": 2000},
        {"status": "success"},
    ]
    srv.answer("/api/pull", lines=lines)
    run = checked(kernel.run("%ollama pull m"))
    assert run.ok and run.stdout.startswith("Pulled m: 1.0 KB in ")
    raw = b'{"status":"pulling","digest":"d","total":1e400,"completed":NaN}\n{"status":"success"}\n'
    srv.answer("/api/pull", raw=raw)
    run = checked(kernel.run("%ollama pull m"))
    assert run.ok and run.stdout.startswith("Pulled m in ")
    still_works(kernel)


def test_generate_chunks_with_wrong_types(kernel: Kernel, srv) -> None:
    srv.answer(
        "/api/generate",
        lines=[
            {"response": "Hello", "thinking": None, "done": "no"},
            {"response": " there", "done": 1},
            {
                "response": "",
                "done": True,
                "done_reason": ["stop"],
                "eval_count": "12",
                "eval_duration": -1,
                "prompt_eval_count": 1e300,
                "context": "abc",
                "model": {"name": "m"},
            },
        ],
    )
    run = checked(kernel.run("%%ollama m -o r\nhi"))
    assert run.ok, run.error
    assert kernel.value("(r.answer, r.eval_count, r.done_reason, r.context, r.model)") == (
        "Hello there",
        None,
        None,
        None,
        "m",
    )
    srv.answer("/api/generate", lines=[{"response": "Half"}, {"response": 5}])
    text = one_line(kernel.run("%%ollama m -o r\nhi"))
    assert text.startswith("The server sent an unexpected 'response' of type int;")
    assert text.endswith("The partial answer is kept above and in r.")
    assert kernel.value("(r.answer, r.done_reason)") == ("Half", "error")
    srv.answer("/api/generate", lines=[{"thinking": {"a": 1}}])
    assert "unexpected 'thinking' of type dict" in one_line(kernel.run("%%ollama m\nhi"))
    still_works(kernel)


def test_chat_chunks_with_wrong_types(kernel: Kernel, srv) -> None:
    srv.answer("/api/chat", lines=[{"message": "hello", "done": True}])
    text = one_line(kernel.run("%%ollama m --chat\nhi"))
    assert "unexpected 'message' in a chat chunk" in text
    assert text.endswith("This turn is not added to the conversation.")
    srv.answer(
        "/api/chat",
        lines=[{"message": {"content": "Hi"}}, {"done": True, "eval_count": "x", "context": 5}],
    )
    srv.answer("/api/ps", {"models": [{"name": "m:latest", "context_length": "abc"}]})
    run = checked(kernel.run("%%ollama m --chat\nhi"))
    assert run.ok, run.error
    kernel.run("%ollama reset --all")


@pytest.mark.parametrize("embeddings", [[["a"]], [[1.0], [1.0, 2.0]], "abc", [[float("inf")]]])
def test_embed_of_the_wrong_shape_is_one_line(kernel: Kernel, srv, embeddings: object) -> None:
    srv.answer("/api/embed", {"embeddings": embeddings})
    text = one_line(kernel.run("%ollama embed m hi"))
    assert text.startswith("The server sent an unexpected 'embeddings' (not a list of vectors)")
    still_works(kernel)


def test_embed_reads_odd_fields_as_far_as_they_go(kernel: Kernel, srv) -> None:
    srv.answer("/api/embed", {"embeddings": [[0.5, 1]], "model": 5, "prompt_eval_count": "3"})
    run = checked(kernel.run("%ollama embed m hi -o v"))
    assert run.ok and run.stdout == "1 vector of 2 dimensions from 5.\n"
    still_works(kernel)


def test_long_error_messages_are_one_short_line(kernel: Kernel, srv) -> None:
    srv.answer("/api/tags", {"error": "bad\n" * 500}, status=500)
    assert one_line(kernel.run("%ollama models")).startswith("Ollama answered 500: bad bad")
    srv.answer("/api/generate", lines=[{"response": "a"}, {"error": ["x"] * 300}])
    assert "The model failed mid-answer: ['x', " in one_line(kernel.run("%%ollama m\nhi"))


# -- a server that accepts and never answers -------------------------------------------------


@pytest.mark.parametrize("command", ["models", "ps", "show m"])
def test_timeout_on_a_silent_server_is_one_line_and_prompt(kernel: Kernel, srv, command) -> None:
    for path in ("/api/tags", "/api/ps", "/api/show"):
        srv.hang(path)
    started = time.monotonic()
    text = one_line(kernel.run(f"%ollama {command} --timeout 0.5"))
    assert time.monotonic() - started < 5
    assert text.startswith(f"Ollama at {srv.url} sent nothing for 0.5 s. Raise --timeout")
    assert "partial" not in text
    still_works(kernel)


@pytest.mark.parametrize("command", ["models", "ps", "show m"])
def test_ctrl_c_on_a_silent_server_is_one_line(kernel: Kernel, srv, command) -> None:
    for path in ("/api/tags", "/api/ps", "/api/show"):
        srv.hang(path)

    def interrupt_once_waiting() -> None:
        if srv.arrived.wait(20):
            time.sleep(0.2)
            kernel.interrupt()

    threading.Thread(target=interrupt_once_waiting, daemon=True).start()
    text = one_line(kernel.run(f"%ollama {command}", timeout=30))
    name = command.split()[0]
    assert text.startswith(f"Interrupted: %ollama {name} stopped waiting for {srv.url}.")
    assert "--timeout SECONDS" in text
    still_works(kernel)


def test_ctrl_c_before_the_stream_is_one_line(kernel: Kernel, srv) -> None:
    srv.hang("/api/show")  # a cell with an image checks the model's capabilities first
    kernel.run("img = b'\\x89PNG'")

    def interrupt_once_waiting() -> None:
        if srv.arrived.wait(20):
            time.sleep(0.2)
            kernel.interrupt()

    threading.Thread(target=interrupt_once_waiting, daemon=True).start()
    text = one_line(kernel.run("%%ollama m -i img\nwhat is it?", timeout=30))
    assert text.startswith(f"Interrupted: the cell stopped waiting for {srv.url}.")
    still_works(kernel)


# -- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["-1", "float('nan')", "float('inf')", "0"])
def test_bad_timeouts_in_config_are_one_line(kernel: Kernel, srv, value: str) -> None:
    srv.answer("/api/tags", {"models": []})
    for setting in ("timeout", "connect_timeout"):
        assert checked(kernel.run(f"%config OllamaMagics.{setting} = {value}")).ok
        for cell in ("%ollama models", "%%ollama m\nhi", "%ollama ui models"):
            text = one_line(kernel.run(cell))
            assert text.startswith(f"%config OllamaMagics.{setting} = ")
            assert "use a number of seconds above 0 and at most 1000000, e.g. %config " in text
        kernel.run(f"%config OllamaMagics.{setting} = {5.0 if 'connect' in setting else 600.0}")
    assert checked(kernel.run("%ollama models")).ok


@pytest.mark.parametrize("value", ["nan", "inf", "-3", "0"])
def test_bad_timeout_flags_are_one_line(kernel: Kernel, srv, value: str) -> None:
    for cell in (f"%ollama models --timeout {value}", f"%%ollama m --timeout {value}\nhi"):
        text = one_line(kernel.run(cell))
        assert f"--timeout {float(value)}: use a number of seconds above 0" in text
    assert srv.requests == []


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("http://", "no server after http://"),
        (":abc", "the port must be a number from 1 to 65535"),
        ("[::1", "an IPv6 address needs its closing ]"),
        ("http://my host:8080", "it contains a space"),
        ("ftp://example.com", "ftp:// is not supported"),
        (f"http://ann:{PASSWORD}@127.0.0.1:port", "the port must be a number"),
        (f"ann:{PASSWORD}@[::1", "an IPv6 address needs its closing ]"),
        ("http://exa<mple>.com", "'exa<mple>.com' is not a host name"),
    ],
)
def test_garbage_ollama_host_is_one_line(kernel: Kernel, srv, value: str, reason: str) -> None:
    kernel.run("import os\nsaved = os.environ['OLLAMA_HOST']")
    kernel.run(f"os.environ['OLLAMA_HOST'] = {value!r}")
    try:
        for cell in ("%ollama models", "%%ollama m\nhi", "%ollama host", "%ollama ui models"):
            text = one_line(kernel.run(cell))
            assert text.startswith("$OLLAMA_HOST '") and reason in text
            assert text.endswith("write it like http://127.0.0.1:11434 or HOST:PORT")
        text = one_line(kernel.run(f"%ollama models --host {value!r}"))
        assert text.startswith("--host '")
    finally:
        kernel.run("os.environ['OLLAMA_HOST'] = saved")
    assert srv.requests == []


# -- credentials in the address ----------------------------------------------------------------


def test_a_password_in_the_host_is_sent_but_never_shown(kernel: Kernel, srv) -> None:
    srv.answer("/api/tags", {"models": []})
    srv.answer("/api/version", {"version": "0.12.6"})
    assert checked(kernel.run("%ollama models")).ok
    expected = "Basic " + base64.b64encode(f"ann:{PASSWORD}".encode()).decode()
    assert srv.requests[-1].headers["Authorization"] == expected
    run = checked(kernel.run("%ollama host"))
    assert run.stdout.startswith(f"Ollama server: {srv.url} (from $OLLAMA_HOST); Ollama 0.12.6")
    refused = f"http://ann:{PASSWORD}@127.0.0.1:9"
    text = one_line(kernel.run(f"%ollama models --host {refused}"))
    assert text.startswith("Cannot reach Ollama at http://127.0.0.1:9 (connection refused)")
    text = one_line(kernel.run(f"%%ollama m --host {refused}\nhi"))
    assert "http://127.0.0.1:9" in text
    run = checked(kernel.run(f"%ollama host {refused}"))
    assert run.ok and "no answer (connection refused)" in run.stdout
    kernel.run("%config OllamaMagics.host = ''")
    run = checked(kernel.run("from ollama_magic.client import OllamaClient\nOllamaClient()"))
    assert run.ok and run.notebook_outputs()[-1]["text/plain"] == f"OllamaClient({srv.url!r})"
    run = checked(
        kernel.run(
            "import warnings\nfrom ollama_magic.widgets import ModelManager\n"
            "with warnings.catch_warnings(record=True) as seen:\n"
            "    mm = ModelManager(live=False)\n"
            "mm.close()\nprint(mm.title.value, mm.message.value, [str(w.message) for w in seen])"
        )
    )
    assert run.ok and f"<code>{srv.url}</code>" in run.stdout


def test_hostile_tool_calls_show_escaped_in_one_line_each(kernel: Kernel, srv) -> None:
    kernel.run("def f(x: int) -> int:\n    return x")
    calls = [
        {"function": {"name": "<img src=x onerror=alert(1)>" * 500, "arguments": {"x": 1}}},
        {"function": {"name": "f", "arguments": "<script>alert(1)</script>"}},
        {"function": {"name": "f", "arguments": {"x": "<b>1</b>", "y": [1] * 5000}}},
        "not a call",
        {"id": {"a": 1}, "function": {"index": -4, "name": None}},
    ]
    srv.answer(
        "/api/chat",
        lines=[{"message": {"content": "", "tool_calls": calls}}, {"done": True}],
    )
    run = checked(kernel.run("%%ollama m --tools f --max-tool-rounds 1 -o r\nhi"))
    assert run.ok, run.error
    final = [o for o in run.notebook_outputs() if o][-1]
    assert "<img" not in final["text/html"] and "<script" not in final["text/html"]
    assert "<b>1</b>" not in final["text/html"]
    assert final["text/html"].count('<details class="ollama-tool-call">') == 5
    assert all(len(line) < 1000 for line in final["text/plain"].splitlines())
    assert "Stopped after 1 round of tool calls" in run.stdout
    assert kernel.value("[c.status for c in r.tool_calls]") == ["error"] * 5
    kernel.run("%ollama reset --all")
    still_works(kernel)
