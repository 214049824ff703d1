"""``%ollama`` line commands and ``%%ollama --chat`` in a real kernel against the local server.

Each test checks the requests the server received, what the cell showed, and what was bound.
The module has its own server (pull, copy, create and delete change what it holds).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import pytest

from ollama_magic.server import OllamaServer, ScriptedEngine

from .helpers import Kernel, bodies, error_line, flatten, magic_kernel


@pytest.fixture(scope="module")
def own() -> Iterator[OllamaServer]:
    with OllamaServer([ScriptedEngine()], pull_speed=2_000_000_000) as server:
        yield server


@pytest.fixture()
def srv(own: OllamaServer) -> OllamaServer:
    own.clear()
    return own


@pytest.fixture(scope="module")
def kernel(own: OllamaServer) -> Iterator[Kernel]:
    with magic_kernel(own.url) as k:
        yield k


def magic(line: str) -> str:
    """A line command as an expression, for ``kernel.value``."""
    return f"get_ipython().run_line_magic('ollama', {line!r})"


def shown(run) -> list[dict]:
    return [o for o in run.notebook_outputs() if o]


# -- help ------------------------------------------------------------------------------------


def test_help_lists_every_command_and_each_has_its_own(kernel: Kernel, srv) -> None:
    run = kernel.run("%ollama")
    assert run.ok and "  pull     download a model, with progress" in run.stdout
    run = kernel.run("%ollama pull -h")
    assert run.ok and run.stdout.startswith("usage: %ollama pull [-h] [--insecure]")
    assert srv.requests == []  # help never talks to the server
    text = error_line(kernel.run("%ollama frob"))
    assert text.startswith("unknown command 'frob'") and "%%ollama MODEL" in text


# -- models, ps, show ------------------------------------------------------------------------


def test_models_is_a_table_in_html_and_text_and_can_be_kept(kernel: Kernel, srv) -> None:
    run = kernel.run("models = %ollama models\nmodels")
    assert run.ok, run.error
    (output,) = shown(run)
    assert output["text/html"].count("<tr>") == 1 + 8  # header and the eight scripted models
    header, first = output["text/plain"].splitlines()[:2]
    assert header.split()[:3] == ["NAME", "SIZE", "FAMILY"]
    assert first.startswith("echo:latest") and "8.0 MB" in first
    assert "completion, insert, vision" in first
    assert kernel.value("models.names[:2]") == ["echo:latest", "reasoner:latest"]
    assert [(r.method, r.path) for r in srv.requests] == [("GET", "/api/tags")]


def test_show_has_capabilities_parameters_and_parts(kernel: Kernel, srv) -> None:
    run = kernel.run("%ollama show thinker -o info")
    assert run.ok, run.error
    text = shown(run)[0]["text/plain"]
    assert "Capabilities" in text and "    thinking" in text
    assert "temperature    0.6" in text and "context length    32768" in text
    assert kernel.value("info.capabilities") == ["completion", "thinking"]
    assert bodies(srv, "/api/show") == [{"model": "thinker"}]
    run = kernel.run("%ollama show echo --template")
    assert run.ok and run.stdout.startswith("{{ if .System }}") and not shown(run)
    text = error_line(kernel.run("%ollama show thinkr"))
    assert "Model 'thinkr' is not installed" in text and "thinker:latest" in text


def test_load_ps_and_stop_follow_keep_alive(kernel: Kernel, srv) -> None:
    run = kernel.run("%ollama load thinker -k 10m --num-ctx 2048")
    assert run.ok, run.error
    assert bodies(srv, "/api/generate") == [
        {"model": "thinker", "keep_alive": "10m", "options": {"num_ctx": 2048}}
    ]
    assert run.stdout.startswith("Loaded thinker in ")
    assert "(9.5 MB in memory); it unloads in 10 min." in run.stdout
    run = kernel.run("%ollama ps")
    row = shown(run)[0]["text/plain"].splitlines()[1]
    assert row.split()[0] == "thinker:latest" and "2048" in row and row.endswith("in 10 min")
    run = kernel.run("%ollama load thinker -k -1")
    assert "it stays loaded forever" in run.stdout
    assert kernel.value(magic("ps") + ".names") == ["thinker:latest"]
    srv.clear()
    run = kernel.run("%ollama stop thinker")
    assert run.ok and run.stdout == "Unloaded thinker (9.5 MB freed).\n"
    assert bodies(srv, "/api/generate") == [{"model": "thinker", "keep_alive": 0}]
    assert kernel.value(f"len({magic('ps')})") == 0
    run = kernel.run("%ollama stop thinker")
    assert run.stdout == "thinker was not loaded.\n"
    assert "stop which model?" in error_line(kernel.run("%ollama stop"))


def test_stop_all_and_bad_keep_alive(kernel: Kernel, srv) -> None:
    kernel.run("%ollama load echo\n%ollama load slow")
    run = kernel.run("%ollama stop --all")
    assert sorted(run.stdout.splitlines()) == [
        "Unloaded echo:latest (8.0 MB freed).",
        "Unloaded slow:latest (8.0 MB freed).",
    ]
    text = error_line(kernel.run("%ollama load echo -k 1d"))
    assert 'unknown unit "d"' in text and "-1 for forever" in text


def test_load_unknown_and_embedding_models(kernel: Kernel, srv) -> None:
    text = error_line(kernel.run("%ollama load ech"))
    assert "Get it with `%ollama pull ech`, or use one you have: echo:latest." in text


# -- embed -----------------------------------------------------------------------------------


def test_embed_text_and_lists(kernel: Kernel, srv) -> None:
    assert kernel.run("%ollama pull embedder").ok  # since Ollama 0.30 only embedding models embed
    srv.clear()
    try:
        run = kernel.run(
            "v = %ollama embed embedder The sky is blue\nv.shape, round(float(v @ v), 4)"
        )
        assert run.ok, run.error
        assert run.stdout == "1 vector of 64 dimensions from embedder (4 tokens).\n"
        assert shown(run)[0]["text/plain"] == "((64,), 1.0)"
        assert bodies(srv, "/api/embed") == [{"model": "embedder", "input": "The sky is blue"}]
        texts = ["a cat", "a cat", "stock markets fell"]
        run = kernel.run(f"texts = {texts!r}\n%ollama embed embedder --var texts -o m")
        assert run.ok and run.stdout.startswith("3 vectors of 64 dimensions") and not shown(run)
        assert bodies(srv, "/api/embed")[-1] == {"model": "embedder", "input": texts}
        assert kernel.value("bool((m[0] == m[1]).all() and (m[0] != m[2]).any())") is True
        run = kernel.run("%ollama embed embedder --var texts --dimensions 8 -o m8")
        assert kernel.value("m8.shape") == (3, 8)
        assert "a string or a list of strings" in error_line(
            kernel.run("n = 3\n%ollama embed embedder --var n")
        )
        assert "embed what?" in error_line(kernel.run("%ollama embed embedder"))
    finally:
        kernel.run("%ollama rm embedder")  # later tests pull it afresh


def test_embed_with_a_chat_model_names_embedding_models(kernel: Kernel, srv) -> None:
    """The server plays Ollama 0.32: a chat model is loaded, then refused with llama-server's 501
    (llama-server without --embeddings), which the magic explains."""
    text = error_line(kernel.run("v = 1\n%ollama embed echo hi -o v"))
    assert text == (
        "echo gives no vectors: since 0.30 Ollama embeds only with embedding models. Pull one"
        " with `%ollama pull all-minilm` (or nomic-embed-text, embeddinggemma,"
        " mxbai-embed-large) and embed with it."
    )
    assert [r.status for r in srv.requests if r.path == "/api/embed"] == [501]
    assert kernel.value("v") == 1  # nothing bound, the kernel goes on


# -- use, host, version ----------------------------------------------------------------------


def test_use_sets_the_default_model(kernel: Kernel, srv) -> None:
    run = kernel.run("%ollama use chinese")
    assert run.ok and run.stdout == "Later %%ollama cells use chinese.\n"
    run = kernel.run("%%ollama --num-predict 3\nhi")
    assert run.ok, run.error
    assert bodies(srv, "/api/generate")[-1]["model"] == "chinese"
    text = error_line(kernel.run("%ollama use nosuch"))
    assert "%ollama pull nosuch" in text
    kernel.run("%config OllamaMagics.model = ''")


def test_host_and_version(kernel: Kernel, srv) -> None:
    run = kernel.run("%ollama version")
    assert run.stdout.startswith("ollama-magic ") and f"Ollama 0.32.15 at {srv.url}." in run.stdout
    run = kernel.run("%ollama host http://127.0.0.1:9")
    assert run.ok
    assert run.stdout.startswith("Ollama server: http://127.0.0.1:9 (from %config")
    assert "no answer (connection refused)" in run.stdout
    run = kernel.run(f"%ollama host {srv.url}")
    assert run.ok and "Ollama 0.32.15" in run.stdout
    text = error_line(kernel.run("%ollama host http://x:port"))
    assert text.startswith("%ollama host 'http://x:port' is not a server address: the port must")
    kernel.run("%config OllamaMagics.host = ''")


# -- pull, push, create, cp, rm --------------------------------------------------------------


def test_pull_shows_progress_then_one_line_and_the_model_works(kernel: Kernel, srv) -> None:
    srv.pull_speed = 200_000_000
    run = kernel.run("%ollama pull haiku", timeout=60)
    assert run.ok, run.error
    assert bodies(srv, "/api/pull") == [{"model": "haiku", "stream": True}]
    updates = [m["content"]["data"] for m in run.of_type("update_display_data")]
    assert any("<progress" in u.get("text/html", "") for u in updates)
    assert updates[-1] == {}  # the live view ends empty ...
    assert flatten(run.nbval_outputs()) == flatten(run.notebook_outputs()) == {}
    assert run.stdout.startswith("Pulled haiku: ") and " MB in " in run.stdout  # ... and says it
    assert "haiku:latest" in kernel.value(magic("models") + ".names")
    run = kernel.run("%%ollama haiku\nautumn")
    assert run.ok, run.error


def test_pull_unknown_model_is_one_line(kernel: Kernel, srv) -> None:
    text = error_line(kernel.run("%ollama pull no-such-model"))
    assert text.startswith("Cannot pull no-such-model: pull model manifest: file does not exist")


def test_interrupting_a_pull_keeps_the_kernel_and_installs_nothing(kernel: Kernel, srv) -> None:
    srv.pull_speed = 2_000_000  # tens of seconds for the whole model
    started = threading.Event()

    def on_message(msg: dict) -> None:
        if msg["msg_type"] == "update_display_data" and not started.is_set():
            started.set()
            threading.Timer(0.3, kernel.interrupt).start()

    run = kernel.run("%ollama pull embedder", timeout=60, on_message=on_message)
    text = error_line(run)
    assert text.startswith("Interrupted: the pull of embedder stopped at ")
    assert "Run the same command again to continue." in text
    srv.pull_speed = 2_000_000_000
    assert "embedder:latest" not in kernel.value(magic("models") + ".names")
    assert kernel.run("1 + 1").ok


def test_copy_create_and_delete(kernel: Kernel, srv) -> None:
    run = kernel.run("%ollama cp echo parrot")
    assert run.ok and run.stdout == "Copied echo to parrot.\n"
    assert bodies(srv, "/api/copy") == [{"source": "echo", "destination": "parrot"}]
    run = kernel.run(
        "%ollama create pirate --from echo -s 'Talk like a pirate.' -p num_predict=12 "
        "-p stop=END -p stop=FIN"
    )
    assert run.ok, run.error
    assert bodies(srv, "/api/create") == [
        {
            "model": "pirate",
            "from": "echo",
            "system": "Talk like a pirate.",
            "parameters": {"num_predict": 12, "stop": ["END", "FIN"]},
            "stream": True,
        }
    ]
    assert run.stdout.splitlines()[-1].startswith("Created pirate in ")
    run = kernel.run("%%ollama pirate -o r\nAhoy")
    assert kernel.value("r.eval_count") == 12
    assert kernel.value("'Talk like a pirate.' in r.answer") is True
    run = kernel.run("%ollama rm parrot pirate")
    assert run.stdout == "Deleted parrot.\nDeleted pirate.\n"
    assert [b["model"] for b in bodies(srv, "/api/delete")] == ["parrot", "pirate"]
    assert [r.method for r in srv.requests if r.path == "/api/delete"] == ["DELETE", "DELETE"]
    text = error_line(kernel.run("%ollama rm parrot"))
    assert text.startswith("Model 'parrot' is not installed")
    text = error_line(kernel.run("%ollama cp nosuch other"))
    assert text.startswith("Model 'nosuch' is not installed")


def test_push_shows_progress(kernel: Kernel, srv) -> None:
    kernel.run("%ollama cp echo me/echo")
    run = kernel.run("%ollama push me/echo")
    assert run.ok, run.error
    assert run.stdout.startswith("Pushed me/echo: ")
    assert bodies(srv, "/api/push") == [{"model": "me/echo", "stream": True}]
    kernel.run("%ollama rm me/echo")
    run = kernel.run("%ollama pull me/echo")  # the registry has it now
    assert run.ok and run.stdout.startswith("Pulled me/echo: ")
    kernel.run("%ollama rm me/echo")


# -- capabilities ----------------------------------------------------------------------------


def test_image_on_a_model_without_vision_is_refused_before_generating(
    kernel: Kernel, srv, tmp_path
) -> None:
    image = tmp_path / "dot.png"
    image.write_bytes(b"\x89PNG\r\n")
    text = error_line(kernel.run(f"%%ollama thinker -i {image}\nWhat is this?"))
    assert text.startswith("thinker cannot see images: it lacks the 'vision' capability")
    assert "use a model that has it: echo:latest" in text
    assert bodies(srv, "/api/generate") == []  # refused before generating
    run = kernel.run(f"%%ollama echo -i {image}\nWhat is this?")
    assert run.ok and "[image 1: 6 bytes]" in run.final_html()


# -- chat ------------------------------------------------------------------------------------


def test_chat_remembers_answers_but_not_reasoning(kernel: Kernel, srv) -> None:
    kernel.run("%ollama reset --all")
    run = kernel.run("%%ollama --chat thinker -s 'Be brief.'\nWhat is a tide?")
    assert run.ok, run.error
    assert "<details><summary>Thinking" in run.final_html()
    run = kernel.run("%%ollama --chat -o r\nAnd a wave?")
    assert run.ok, run.error
    first, second = bodies(srv, "/api/chat")
    assert first["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is a tide?"},
    ]
    assert second["model"] == "thinker"  # the conversation remembers its model
    _system, _user, assistant, follow_up = second["messages"]
    assert assistant["role"] == "assistant" and set(assistant) == {"role", "content"}
    assert assistant["content"].startswith("**What is a tide**")  # the answer only
    assert follow_up == {"role": "user", "content": "And a wave?"}
    assert kernel.value("r.thinking != '' and r.answer.startswith('**And a wave**')") is True


def test_inline_think_tags_are_not_sent_back_either(kernel: Kernel, srv) -> None:
    kernel.run("%ollama reset")
    kernel.run("%%ollama --chat reasoner\nExplain tides")
    kernel.run("%%ollama --chat\nShorter")
    second = bodies(srv, "/api/chat")[-1]
    answer = second["messages"][1]["content"]
    assert "<think>" not in answer and answer.startswith("## Explain tides")


def test_named_conversations_history_and_reset(kernel: Kernel, srv) -> None:
    kernel.run("%ollama reset --all")
    kernel.run("%%ollama --conversation fr echo -s 'En français.'\nBonjour")
    kernel.run("%%ollama --chat echo\nHello")
    run = kernel.run("%ollama history fr")
    text = shown(run)[0]["text/plain"]
    title = r"Conversation 'fr': 1 turn, about \d+ tokens of context"
    assert re.fullmatch(title, text.splitlines()[0])
    assert text.splitlines()[1:3] == [
        "system: En français.",
        "you: Bonjour",
    ]
    assert "Hello" not in text
    assert "<b>you:</b> Bonjour" in shown(run)[0]["text/html"]
    assert kernel.run("%ollama reset fr").stdout == "Forgot conversation 'fr' (1 turn).\n"
    assert kernel.run("%ollama reset fr").stdout == "Conversation 'fr' was already empty.\n"
    assert kernel.value(f"len({magic('history')})") == 1  # the default one is untouched


def test_chat_warns_before_num_ctx_is_full(kernel: Kernel, srv) -> None:
    kernel.run("%ollama reset")
    run = kernel.run("%%ollama --chat chinese --num-ctx 280\nhi")
    assert run.ok and "context tokens" not in run.stdout
    run = kernel.run("%%ollama --chat chinese --num-ctx 280\nmore")  # about 90 tokens a turn
    assert (
        "Conversation 'default' now fills" in run.stdout and "of 280 context tokens" in run.stdout
    )
    assert "%ollama reset, or raise --num-ctx" in run.stdout
    run = kernel.run("%%ollama --chat chinese --num-ctx 280\nmore")  # past the window
    assert "has filled its context window (num_ctx=280)" in run.stdout, run.stdout


def test_failed_turn_is_not_remembered_and_single_prompt_flags_are_refused(
    kernel: Kernel, srv
) -> None:
    kernel.run("%ollama reset")
    text = error_line(kernel.run("%%ollama --chat broken\nhi"))
    assert text.endswith("This turn is not added to the conversation.")
    assert kernel.value(f"len({magic('history')})") == 0
    text = error_line(kernel.run("%%ollama --chat echo --suffix x\nhi"))
    assert text == "--suffix is for single prompts; a --chat conversation keeps its own memory"
    text = error_line(kernel.run("%%ollama --chat nosuch\nhi"))
    assert "Model 'nosuch' is not installed" in text


def test_suffix_and_generate_capabilities_are_explained(kernel: Kernel, srv) -> None:
    text = error_line(kernel.run("%%ollama thinker --suffix ' end'\nbegin"))
    assert text.startswith("thinker cannot fill in the middle: it lacks the 'insert' capability")
    assert "Drop --suffix, or use a model that has it: echo:latest." in text
    kernel.run("%ollama pull embedder")
    try:
        text = error_line(kernel.run("%%ollama embedder\nhi"))
        assert text.startswith("embedder cannot generate text (it is an embedding model)")
        assert "Use %ollama embed" in text
        run = kernel.run("%ollama embed embedder hello -o e")
        assert run.ok and kernel.value("len(e)") == 64
    finally:
        kernel.run("%ollama rm embedder")


def complete(kernel: Kernel, code: str) -> tuple[list[str], int]:
    kernel.kc.complete(code, len(code))
    reply = kernel.kc.get_shell_msg(timeout=10)
    return reply["content"]["matches"], reply["content"]["cursor_start"]


def test_tab_completes_commands_models_flags_and_conversations(kernel: Kernel, srv) -> None:
    assert complete(kernel, "%ollama pu") == (["pull", "push"], 8)
    assert complete(kernel, "%ollama show thi") == (["thinker"], 13)  # asked the server
    assert srv.requests[-1].path == "/api/tags"
    assert complete(kernel, "%%ollama chi") == (["chinese"], 9)
    assert complete(kernel, "%%ollama echo --num-") == (["--num-ctx", "--num-predict"], 14)
    assert complete(kernel, "%ollama load echo --k") == (["--keep-alive"], 18)
    kernel.run("%ollama cp echo me/echo:v2")
    try:
        # IPython's token starts after ':', so only the rest is offered there
        assert complete(kernel, "%ollama show me/echo:") == (["v2"], 21)
    finally:
        kernel.run("%ollama rm me/echo:v2")
    kernel.run("%%ollama --conversation lab echo\nhi")
    assert complete(kernel, "%ollama history l") == (["lab"], 16)
    # Python completion is untouched elsewhere, including a %%ollama cell's body
    assert complete(kernel, "%%ollama echo\nprin")[0] == ["print"]
    assert complete(kernel, "prin")[0] == ["print"]


def test_command_mistakes_are_one_line_that_says_what_to_do(kernel: Kernel, srv) -> None:
    text = error_line(kernel.run("%ollama show"))
    assert text == (
        "%ollama show: the following arguments are required: NAME (see %ollama help show)"
    )
    assert error_line(kernel.run("%ollama push nosuch")).startswith(
        "Model 'nosuch' is not installed on"
    )
    text = error_line(kernel.run("%ollama create m2 --from nosuch"))
    assert text.startswith("Cannot create m2: pull model manifest: file does not exist.")
    assert text.endswith("Check --from nosuch: the server must have it or be able to pull it.")
    assert error_line(kernel.run("%ollama pull 'a b'")) == "Cannot pull a b: invalid model name."
    text = error_line(kernel.run("%ollama models --host http://127.0.0.1:9"))
    assert text.startswith("Cannot reach Ollama at http://127.0.0.1:9 (connection refused)")
    assert "m2:latest" not in kernel.value(magic("models") + ".names")
