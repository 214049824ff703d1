"""``%%ollama --tools`` end to end: a real kernel runs the functions the scripted ``agent`` model
calls, over real HTTP to the package's own server."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from jupyter_core.utils import ensure_event_loop

from ollama_magic.server import OllamaServer

from .helpers import CellRun, Kernel, bodies, error_line, magic_kernel, until

TOOLS = '''
import time

def get_weather(city: str) -> str:
    """The weather now in a city.

    Args:
        city: The city's name.
    """
    return f"Sunny, 18 °C in {city}"

def add(a: int, b: int) -> int:
    """Add two whole numbers."""
    return a + b

def divide(a: float, b: float) -> float:
    """Divide a by b."""
    return a / b

def wait(seconds: float) -> str:
    """Sleep, then say so."""
    time.sleep(seconds)
    return "awake"

def only_paris(call):
    return call.arguments.get("city") == "Paris"
'''


@pytest.fixture(scope="module")
def agent_server() -> Iterator[OllamaServer]:
    """A server of its own, with ``agent`` pulled (pulling changes the model list)."""
    with OllamaServer(pull_speed=1e12) as server:
        server_kernel_pull(server)
        yield server


def server_kernel_pull(server: OllamaServer) -> None:
    import requests

    reply = requests.post(server.url + "/api/pull", json={"model": "agent", "stream": False})
    assert reply.json() == {"status": "success"}


@pytest.fixture()
def srv(agent_server: OllamaServer) -> OllamaServer:
    agent_server.clear()
    return agent_server


@pytest.fixture(scope="module")
def kernel(agent_server: OllamaServer) -> Iterator[Kernel]:
    with magic_kernel(agent_server.url) as k:
        assert k.run(TOOLS).ok
        yield k


@pytest.fixture(autouse=True)
def fresh_conversation(kernel: Kernel) -> Iterator[None]:
    yield
    kernel.run("%ollama reset --all")


def shown(run: CellRun) -> dict[str, Any]:
    """The cell's one final output (live ones end empty), checked for tracebacks."""
    everything = json.dumps([m["content"] for m in run.messages])
    assert "Traceback" not in everything
    outputs = [o for o in run.notebook_outputs() if o]
    assert len(outputs) == 1, outputs
    return outputs[0]


def chats(srv: OllamaServer) -> list[dict[str, Any]]:
    return bodies(srv, "/api/chat")


def test_one_call_runs_in_the_kernel_and_shows_above_the_answer(kernel: Kernel, srv) -> None:
    run = kernel.run("%%ollama agent --tools get_weather -o r\nUse get_weather with city=Paris.")
    assert run.ok, run.error
    first, second = chats(srv)
    assert first["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather now in a city.",
                "parameters": {
                    "type": "object",
                    "required": ["city"],
                    "properties": {"city": {"type": "string", "description": "The city's name."}},
                },
            },
        }
    ]
    tool = second["messages"][-1]
    assert tool["role"] == "tool" and tool["tool_name"] == "get_weather"
    assert tool["content"] == "Sunny, 18 °C in Paris" and tool["tool_call_id"].startswith("call_")
    final = shown(run)
    html = final["text/html"]
    assert html.index('<details class="ollama-tool-call">') < html.index("Here is what")
    assert "get_weather(city=&#x27;Paris&#x27;)" in html or "get_weather(city='Paris')" in html
    assert final["text/plain"].startswith("✓ get_weather(city='Paris') → Sunny, 18 °C in Paris")
    # live: the call was shown while it ran, then emptied for the final rendering
    live = [m["content"]["data"].get("text/html", "") for m in run.of_type("update_display_data")]
    assert any("ollama-tool-call" in text for text in live)
    assert kernel.value("[(c.name, c.arguments, c.result) for c in r.tool_calls]") == [
        ("get_weather", {"city": "Paris"}, "Sunny, 18 °C in Paris")
    ]
    # kept in the conversation: history shows it, and the next turn sends it again
    history = kernel.run("%ollama history").notebook_outputs()[-1]["text/plain"]
    assert "calls get_weather(city='Paris')" in history and "get_weather → Sunny" in history
    kernel.run("%%ollama --chat agent\nThanks!")
    roles = [m["role"] for m in chats(srv)[-1]["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant", "user"]


def test_two_calls_in_one_turn(kernel: Kernel, srv) -> None:
    run = kernel.run(
        "%%ollama agent --tools get_weather,add -o r\n"
        "Use get_weather with city=Oslo and add(a=2, b=3)."
    )
    assert run.ok, run.error
    assert len(chats(srv)) == 2
    assert kernel.value("[c.result for c in r.tool_calls]") == ["Sunny, 18 °C in Oslo", 5]
    assert shown(run)["text/html"].count('<details class="ollama-tool-call">') == 2
    assert "- **add**: 5" in kernel.value("r.answer")


def test_a_list_variable_of_tools(kernel: Kernel, srv) -> None:
    kernel.run("my_tools = [get_weather, add]")
    run = kernel.run("%%ollama agent --tools my_tools -q\nadd(a=1, b=1)")
    assert run.ok, run.error
    assert [t["function"]["name"] for t in chats(srv)[0]["tools"]] == ["get_weather", "add"]


def test_a_tool_that_raises_sends_its_error_and_shows_one_line(kernel: Kernel, srv) -> None:
    run = kernel.run("%%ollama agent --tools divide -o r\nCall divide(a=1, b=0).")
    assert run.ok, run.error
    sent = chats(srv)[-1]["messages"][-1]["content"]
    assert sent == "Error: ZeroDivisionError: division by zero"
    text = shown(run)["text/plain"]
    assert text.startswith("✗ divide(a=1, b=0) → ZeroDivisionError: division by zero")
    assert "**divide** failed: ZeroDivisionError" in kernel.value("r.answer")
    assert kernel.value("r.tool_calls[0].status") == "error"


def test_unknown_function_and_bad_arguments_are_answered_too(kernel: Kernel, srv) -> None:
    run = kernel.run(
        "%%ollama agent --tools get_weather -o r\nRun lookup(symbol=ACME), get_weather(town=Rome)."
    )
    assert run.ok, run.error
    sent = [m["content"] for m in chats(srv)[-1]["messages"] if m["role"] == "tool"]
    assert sent == [
        "Error: unknown function 'lookup'; the tools are: get_weather",
        "Error: bad arguments for get_weather: missing a required argument: 'city'",
    ]
    assert "✗ lookup(symbol='ACME')" in shown(run)["text/plain"]


def test_the_round_limit_stops_the_loop(kernel: Kernel, srv) -> None:
    run = kernel.run(
        "%%ollama agent --tools add --max-tool-rounds 2 -o r\nCall add(a=1, b=2) forever."
    )
    assert run.ok, run.error
    assert len(chats(srv)) == 3  # two rounds of calls, then the request that asked for a third
    assert run.stdout.strip() == (
        "Stopped after 2 rounds of tool calls: the model still wanted to call add. "
        "Raise --max-tool-rounds to let it go on."
    )
    assert kernel.value("len(r.tool_calls)") == 2


def test_ctrl_c_during_a_tool_stops_and_keeps_what_was_shown(kernel: Kernel, srv) -> None:
    sent: list[bool] = []

    def interrupt_when_running(msg: dict[str, Any]) -> None:
        html = msg["content"].get("data", {}).get("text/html", "")
        if "wait(seconds=30) → running…" in html and not sent:
            sent.append(True)
            threading.Thread(target=kernel.interrupt).start()

    run = kernel.run(
        "%%ollama agent --tools wait,add -o r\nUse add(a=1, b=1), then wait(seconds=30).",
        timeout=25,
        on_message=interrupt_when_running,
    )
    # one line, and Run All stops here
    assert error_line(run) == "Interrupted at the call to wait(): the calls above show what ran."
    text = shown(run)["text/plain"]
    assert text.startswith("✓ add(a=1, b=1) → 2")
    assert "■ wait(seconds=30) → interrupted by the user" in text
    assert "this turn is not added to the conversation" in text
    assert kernel.value("r.done_reason") == "interrupted"
    history = kernel.run("%ollama history").notebook_outputs()[-1]["text/plain"]
    assert "0 turns" in history
    assert kernel.value("6 * 7") == 42


def answering(kernel: Kernel, reply: str, asked: list[str]) -> threading.Thread:
    """A thread that answers the kernel's ``input()`` once with ``reply``."""

    def answer() -> None:
        try:
            msg = kernel.kc.get_stdin_msg(timeout=20)
            asked.append(msg["content"]["prompt"])
            kernel.kc.input(reply)
        finally:  # jupyter_client's sync API left an event loop for this thread: close it
            ensure_event_loop().close()

    thread = threading.Thread(target=answer)
    thread.start()
    return thread


@pytest.mark.parametrize("reply, status", [("y", "ok"), ("n", "declined")])
def test_confirm_in_text_mode_asks_with_input(kernel: Kernel, srv, reply: str, status: str) -> None:
    asked: list[str] = []
    thread = answering(kernel, reply, asked)
    run = kernel.run(
        "%config OllamaMagics.display = 'text'\n"
        "get_ipython().run_cell_magic('ollama', 'agent --tools add --confirm -o r', "
        "'add(a=4, b=5)')\n"
        "%config OllamaMagics.display = 'auto'",
        timeout=30,
    )
    thread.join(5)
    assert run.ok, run.error
    assert not run.of_type("comm_open")  # no buttons: text mode asks in the text box
    assert asked == ["Run add(a=4, b=5)? [y/N] "]
    assert kernel.value("r.tool_calls[0].status") == status
    content = chats(srv)[-1]["messages"][-1]["content"]
    assert content == ("9" if reply == "y" else "The user declined to run this call.")


WIDGET = "application/vnd.jupyter.widget-view+json"


def clicking(kernel: Kernel, *labels: str) -> Callable[[dict[str, Any]], None]:
    """An ``on_message`` that clicks buttons as a front end does: for each set of buttons
    the cell shows, a ``comm_msg`` click on the one labelled with the next of ``labels``."""
    left = list(labels)

    def on_message(msg: dict[str, Any]) -> None:
        if msg["msg_type"] != "comm_open" or not left:
            return
        state = msg["content"]["data"]["state"]
        if state.get("_model_name") == "ButtonModel" and state.get("description") == left[0]:
            left.pop(0)
            click = {"method": "custom", "content": {"event": "click"}}
            comm = {"comm_id": msg["content"]["comm_id"], "data": click}
            kernel.kc.shell_channel.send(kernel.kc.session.msg("comm_msg", comm))

    return on_message


def decisions(run: CellRun) -> list[str]:
    """The lines that replaced the buttons, as the saved notebook keeps them."""
    lines = [o.get("text/plain", "") for o in run.notebook_outputs()]
    return [line for line in lines if line.startswith("Run ")]


@pytest.mark.parametrize("label, status", [("Run", "ok"), ("Skip", "declined")])
def test_confirm_in_a_notebook_shows_buttons(kernel: Kernel, srv, label: str, status: str) -> None:
    run = kernel.run(
        "%%ollama agent --tools add --confirm -o r\nadd(a=4, b=5)",
        timeout=30,
        on_message=clicking(kernel, label),
    )
    assert run.ok, run.error
    buttons = [
        m["content"]["data"]["state"]["description"]
        for m in run.of_type("comm_open")
        if m["content"]["data"]["state"]["_model_name"] == "ButtonModel"
    ]
    assert buttons == ["Run", "Skip", "Run all remaining"]
    assert kernel.value("r.tool_calls[0].status") == status
    content = chats(srv)[-1]["messages"][-1]
    assert content["role"] == "tool"
    assert content["content"] == ("9" if label == "Run" else "The user declined to run this call.")
    said = "run" if label == "Run" else "skipped"
    assert decisions(run) == [f"Run add(a=4, b=5)? → {said}"]
    shown = [o for o in run.notebook_outputs() if WIDGET in o]
    assert shown == []  # no dead buttons in the saved notebook
    closed = {m["content"]["comm_id"] for m in run.of_type("comm_close")}
    assert {m["content"]["comm_id"] for m in run.of_type("comm_open")} <= closed
    assert not run.stdout  # nothing asked with input()


def test_run_all_remaining_asks_once_and_a_cell_sent_meanwhile_waits(kernel: Kernel, srv) -> None:
    queued: list[str] = []

    def click_and_queue(msg: dict[str, Any]) -> None:
        if not queued and msg["msg_type"] == "comm_open":
            queued.append(kernel.kc.execute("after = len(r.tool_calls)"))  # sent while asking
        click(msg)

    click = clicking(kernel, "Run all remaining")
    run = kernel.run(
        "%%ollama agent --tools add --confirm -o r\nadd(a=1, b=2) and add(a=3, b=4)",
        timeout=30,
        on_message=click_and_queue,
    )
    assert run.ok, run.error
    assert kernel.value("[c.result for c in r.tool_calls]") == [3, 7]
    assert decisions(run) == ["Run add(a=1, b=2)? → run, and the turn's next calls too"]
    # the cell sent while the buttons waited ran after this one, as it would have without them
    assert until(lambda: kernel.value("after")) == 2


def test_ctrl_c_while_asking_stops_the_turn(kernel: Kernel, srv) -> None:
    sent: list[bool] = []

    def interrupt_when_asked(msg: dict[str, Any]) -> None:
        data = msg["content"].get("data", {})
        if msg["msg_type"] == "display_data" and WIDGET in data and not sent:
            sent.append(True)
            threading.Thread(target=kernel.interrupt).start()

    run = kernel.run(
        "%%ollama agent --tools add --confirm -o r\nadd(a=4, b=5)",
        timeout=30,
        on_message=interrupt_when_asked,
    )
    # one line, and Run All stops here
    assert error_line(run) == "Interrupted at the call to add(): the calls above show what ran."
    assert decisions(run) == ["Run add(a=4, b=5)? → stopped (Ctrl-C)"]
    text = shown_outputs(run)[-1]["text/plain"]
    assert "■ add(a=4, b=5) → interrupted by the user" in text
    assert kernel.value("r.tool_calls[0].status") == "interrupted"
    assert len(chats(srv)) == 1  # the model never heard of it
    assert kernel.value("6 * 7") == 42


def test_confirm_where_nobody_answers_is_one_line(kernel: Kernel, srv) -> None:
    kernel.kc.allow_stdin = False  # as nbval and nbclient run cells: unattended
    try:
        run = kernel.run("%%ollama agent --tools add --confirm\nadd(a=4, b=5)", timeout=30)
    finally:
        kernel.kc.allow_stdin = True
    text = error_line(run)
    assert "runs cells unattended" in text and "--confirm FUNC" in text
    assert not run.of_type("comm_open")  # no buttons that nobody would click
    assert chats(srv) == []  # told before the model is asked anything


def shown_outputs(run: CellRun) -> list[dict[str, Any]]:
    return [o for o in run.notebook_outputs() if o]


def test_confirm_with_a_function(kernel: Kernel, srv) -> None:
    run = kernel.run(
        "%%ollama agent --tools get_weather --confirm only_paris -o r -q\n"
        "get_weather(city=Paris) and get_weather(city=Rome)"
    )
    assert run.ok, run.error
    assert kernel.value("[c.status for c in r.tool_calls]") == ["ok", "declined"]


def test_flag_mistakes_and_a_model_without_tools_are_one_line(kernel: Kernel, srv) -> None:
    text = error_line(kernel.run("%%ollama agent --tools nope\nhi"))
    assert "no such function or variable" in text
    assert "goes with --tools" in error_line(kernel.run("%%ollama agent --confirm\nhi"))
    text = error_line(kernel.run("%%ollama echo --tools add\nadd(a=1, b=2)"))
    assert text.startswith("echo cannot call tools: it lacks the 'tools' capability")
    assert "Drop --tools, or use a model that has it: agent:latest" in text
    text = error_line(kernel.run("%%ollama agent --tools add --max-tool-rounds 0\nhi"))
    assert "use a whole number from 1 to 100" in text
    until(lambda: kernel.value("6 * 7") == 42)


TERMINAL = (
    "def add(a: int, b: int) -> int:\n"
    "    return a + b\n"
    "get_ipython().run_cell_magic('ollama', 'agent --tools add {flags} -o r', "
    "'Use add(a=2, b=40).')\n"
    "print('statuses', [c.status for c in r.tool_calls])"
)


@pytest.mark.parametrize(
    "flags, typed, status",
    [("", "", "ok"), ("--confirm", "y\n", "ok"), ("--confirm", "", "declined")],
)
def test_terminal_shows_calls_as_lines_and_confirm_reads_stdin(
    agent_server: OllamaServer, flags: str, typed: str, status: str
) -> None:
    import os
    import subprocess

    from .helpers import IPYTHON

    env = dict(os.environ, OLLAMA_HOST=agent_server.url)
    done = subprocess.run(
        [*IPYTHON, "-c", TERMINAL.format(flags=flags)],
        input=typed,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0 and "Traceback" not in done.stdout + done.stderr, done.stderr
    out = done.stdout
    assert "→ add(a=2, b=40)" in out
    if status == "ok":
        assert "✓ add(a=2, b=40) → 42" in out and "- **add**: 42" in out
    else:
        assert "⊘ add(a=2, b=40) → declined" in out
    assert f"statuses ['{status}']" in out
    assert ("Run add(a=2, b=40)? [y/N]" in out) == bool(flags)
