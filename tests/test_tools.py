"""The pure side of tool calling (``ollama_magic.tools``): schemas as the official client builds
them, calls read from untrusted replies, calls run with their errors caught, the loop, and the
escaped display."""

# No ``from __future__ import annotations``: the official client cannot read string hints of
# a module's own names, and its schemas are the reference here.
from typing import Any, Literal, Optional, Union

import pytest
from ollama._utils import convert_function_to_tool

from ollama_magic.tools import (
    DECLINED,
    DECLINED_TEXT,
    FAILED,
    INTERRUPTED,
    OK,
    ToolCall,
    ToolError,
    call_html,
    chat_with_tools,
    read_calls,
    resolve_tools,
    run_call,
    tool_schema,
)


def get_weather(city: str, unit: str = "C", days: Optional[int] = None) -> str:  # noqa: UP045
    """The weather in a city.

    It is always sunny here.

    Args:
        city: The city's name,
            as people write it.
        unit (str): C or F.
        days: How many days ahead.

    Returns:
        A sentence.
    """
    return f"Sunny in {city}"


def every_type(
    a: int,
    b: float,
    flags: list[int],
    table: dict[str, int],
    ok: bool,
    choice: Literal["x", "y"],
    maybe: str | None,
    untyped,
) -> None:
    pass


def no_doc(x):
    pass


def one_of(x: Union[int, str]) -> None:  # noqa: UP007
    """Either."""


@pytest.mark.parametrize("func", [get_weather, every_type, no_doc])
def test_schema_is_the_official_clients(func: Any) -> None:
    official = convert_function_to_tool(func).model_dump(exclude_none=True)
    assert tool_schema(func) == official


def test_a_union_lists_its_types_in_order() -> None:
    official = convert_function_to_tool(one_of).model_dump(exclude_none=True)
    ours = tool_schema(one_of)
    kinds = ours["function"]["parameters"]["properties"]["x"]["type"]
    assert kinds == "integer, string"  # the official client's order is a set's: it varies
    assert set(kinds.split(", ")) == set(
        official["function"]["parameters"]["properties"]["x"]["type"].split(", ")
    )


def test_resolve_tools_by_name_or_list() -> None:
    ns = {"get_weather": get_weather, "no_doc": no_doc, "tools": [get_weather, no_doc], "n": 5}
    assert list(resolve_tools("get_weather, no_doc", ns)) == ["get_weather", "no_doc"]
    assert list(resolve_tools("tools", ns)) == ["get_weather", "no_doc"]
    with pytest.raises(ToolError, match="no such function"):
        resolve_tools("missing", ns)
    with pytest.raises(ToolError, match="not a function but a int"):
        resolve_tools("n", ns)


HOSTILE = [
    "not a list",
    [5],
    [{"function": "x"}],
    [{"function": {"name": 7, "arguments": {}}}],
    [{"function": {"name": "f", "arguments": [1, 2]}}],
    [{"function": {"name": "<b>x</b>" * 10_000, "arguments": {"<i>": "<script>"}}}],
    [{"id": ["x"], "function": {"index": "1", "name": "f", "arguments": "{}"}}],
]


@pytest.mark.parametrize("value", HOSTILE)
def test_any_reply_reads_without_raising(value: Any) -> None:
    calls = read_calls(value)
    for call in calls:
        assert isinstance(call.name, str) and isinstance(call.arguments, dict)
        assert isinstance(call.id, str) and isinstance(call.index, int)
        html = call_html(run_call(call, {"f": no_doc}))
        assert "<script" not in html and "<b>x" not in html and "<i>" not in html
        assert len(call.signature()) < 500


def test_run_call_outcomes() -> None:
    def boom(n: int) -> int:
        raise ValueError(f"no {n}\nsecond line")

    functions = {"get_weather": get_weather, "boom": boom}
    ok = run_call(ToolCall("get_weather", {"city": "Paris"}), functions)
    assert (ok.status, ok.content, ok.result) == (OK, "Sunny in Paris", "Sunny in Paris")
    failed = run_call(ToolCall("boom", {"n": 3}), functions)
    assert (failed.status, failed.error) == (FAILED, "ValueError: no 3")
    assert failed.content == "Error: ValueError: no 3"
    unknown = run_call(ToolCall("lookup", {}), functions)
    assert unknown.error == "unknown function 'lookup'; the tools are: get_weather, boom"
    bad = run_call(ToolCall("get_weather", {"town": "Paris"}), functions)
    assert bad.error == "bad arguments for get_weather: missing a required argument: 'city'"
    declined = run_call(ToolCall("boom", {"n": 1}), functions, approve=lambda call: False)
    assert (declined.status, declined.content) == (DECLINED, DECLINED_TEXT)
    broken = run_call(ToolCall("boom", {"n": 1}), functions, approve=lambda call: 1 / 0)
    assert broken.error == "the confirmation raised ZeroDivisionError: division by zero"
    assert run_call(ToolCall("add", {"x": 1}), {"add": lambda x: {"sum": x}}).content == (
        '{"sum": 1}'
    )


def test_interrupt_in_a_tool_escapes_marked() -> None:
    def stuck() -> None:
        raise KeyboardInterrupt

    call = ToolCall("stuck")
    with pytest.raises(KeyboardInterrupt):
        run_call(call, {"stuck": stuck})
    assert call.status == INTERRUPTED


def _reply(*calls: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"id": f"call_{i}", "function": {"name": n, "arguments": a}} for i, (n, a) in
            enumerate(calls)]


class Answer:
    def __init__(self, text: str) -> None:
        self.answer = text


def test_the_loop_runs_calls_and_sends_results_back() -> None:
    script = [_reply(("get_weather", {"city": "Oslo"}), ("nope", {})), []]
    sent: list[dict[str, Any]] = []

    def send(body: dict[str, Any], earlier: list[ToolCall], last: bool) -> Any:
        sent.append(body)
        return Answer("done" if len(sent) == 2 else ""), None, script[len(sent) - 1]

    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    turn = chat_with_tools(send, body, {"get_weather": get_weather})
    assert turn.result.answer == "done" and turn.stopped is None
    assert [c.status for c in turn.calls] == [OK, FAILED]
    second = sent[1]["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "tool", "tool"]
    assert second[1]["tool_calls"][0] == {
        "id": "call_0",
        "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Oslo"}},
    }
    assert second[2] == {
        "role": "tool",
        "content": "Sunny in Oslo",
        "tool_name": "get_weather",
        "tool_call_id": "call_0",
    }
    assert turn.steps == second[1:]


def test_the_loop_stops_at_the_round_limit() -> None:
    lasts: list[bool] = []

    def send(body: dict[str, Any], earlier: list[ToolCall], last: bool) -> Any:
        lasts.append(last)
        return Answer(""), None, _reply(("get_weather", {"city": "Oslo"}))

    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    turn = chat_with_tools(send, body, {"get_weather": get_weather}, max_rounds=2)
    assert lasts == [False, False, True]
    assert turn.stopped == "limit" and len(turn.calls) == 2 and len(turn.wanted) == 1


def test_a_call_shows_as_started_only_once_approved() -> None:
    events: list[str] = []

    class Log:
        def started(self, call: ToolCall) -> None:
            events.append(f"started {call.arguments['city']} {call.status}")

        def finished(self, call: ToolCall) -> None:
            events.append(f"finished {call.arguments['city']} {call.status}")

        def close(self) -> None:
            events.append("close")

    def approve(call: ToolCall) -> bool:
        events.append(f"asked {call.arguments['city']}")
        if call.arguments["city"] == "Rome":
            raise KeyboardInterrupt  # Ctrl-C while asked
        return call.arguments["city"] == "Oslo"

    script = [_reply(("get_weather", {"city": "Oslo"}), ("get_weather", {"city": "Bergen"}),
                     ("get_weather", {"city": "Rome"}))]

    def send(body: dict[str, Any], earlier: list[ToolCall], last: bool) -> Any:
        return Answer(""), None, script.pop(0) if script else []

    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    turn = chat_with_tools(send, body, {"get_weather": get_weather}, view=Log(), approve=approve)
    assert events == [
        "asked Oslo", "started Oslo pending", "finished Oslo ok",  # not "running" while asked
        "asked Bergen", "started Bergen declined", "finished Bergen declined",
        "asked Rome", "started Rome interrupted", "finished Rome interrupted",
        "close",
    ]
    assert turn.stopped == INTERRUPTED and turn.result is None


def test_a_kernel_without_a_way_to_take_clicks_gets_no_pump() -> None:
    pytest.importorskip("ipywidgets")
    from ollama_magic.widgets.confirm import ui_pump

    class Manager:
        def get_shell_channel_to_subshell_pair(self, subshell: None) -> Any:
            return type("Pair", (), {"to_socket": None})()

        def get_subshell_to_shell_channel_socket(self, subshell: None) -> None:
            return None

    class Odd:  # an ipykernel 7 shaped otherwise: --confirm falls back to input()
        shell_channel_thread = type("Thread", (), {"manager": Manager()})()

    for kernel in (object(), Odd()):
        with ui_pump(kernel) as pump:
            assert pump is None
