"""Tool calling for ``%%ollama --chat --tools``: Python functions the model may call. Pure logic.

What a chat turn with tools needs, apart from the HTTP stream and the display:

* :func:`tool_schema` turns a function into the ``tools[]`` entry Ollama expects, from its
  signature, type hints and Google-style docstring, exactly as the official ``ollama`` client's
  ``convert_function_to_tool`` does (so a function behaves the same with either);
* :func:`read_calls` reads the ``tool_calls`` a server sent (untrusted: any JSON) into
  :class:`ToolCall` objects, never raising;
* :func:`run_call` checks a call against the function's signature and runs it in the caller's
  thread (the kernel's), timing it and turning an exception into one line for the model;
* :func:`chat_with_tools` is the loop: ask, run the calls, send their results back as
  ``role: "tool"`` messages, until the model answers or the round limit is reached. The request
  itself, the display and the confirmation are passed in, so this module does no I/O.

Every name, argument and result shown is escaped here (:func:`calls_html`): model output and a
function's return value are both untrusted text.
"""

from __future__ import annotations

import html
import inspect
import json
import re
import time
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

#: ``ToolCall.status`` values.
PENDING, OK, FAILED, DECLINED, INTERRUPTED = "pending", "ok", "error", "declined", "interrupted"

#: What the model is told when the user says no to a call (``--confirm``).
DECLINED_TEXT = "The user declined to run this call."

#: How many rounds of tool calls a turn may take when ``--max-tool-rounds`` is not given.
DEFAULT_MAX_ROUNDS = 5

_SHOWN_NAME = 80  # characters of a name shown before "…" (a hostile server may send megabytes)
_SHOWN_VALUE = 300  # characters of one argument or result in a summary line
_SHOWN_BODY = 4000  # characters of a result in the opened details


class CannotAsk(Exception):
    """Raised by an ``approve`` that has nobody to ask: it ends the turn, not just one call."""


class ToolError(ValueError):
    """A ``--tools`` value that names no usable function; the message says what to write."""


# -- schemas ------------------------------------------------------------------------------


def _parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """The description and per-argument texts of a Google-style docstring, read as the official
    client reads it (``ollama/_utils.py``): text before ``Args:`` is the description, and
    ``Returns:``/``Yields:``/``Raises:`` sections are left out."""
    sections: dict[str, str] = {"": "", "args": ""}
    key = ""
    for line in (doc or "").splitlines():
        lowered = line.lower().strip()
        if lowered.startswith("args:"):
            key = "args"
        elif lowered.startswith(("returns:", "yields:", "raises:")):
            key = "_"
        else:
            sections[key] = sections.get(key, "") + f"{line.strip()}\n"
    arguments: dict[str, str] = {}
    last = None
    for line in sections["args"].splitlines():
        line = line.strip()
        if ":" in line:
            parts = re.split(r"(?:\(([^)]*)\)|:)\s*", line, maxsplit=1)
            last = parts[0].strip()
            described = parts[-1].strip()
            if len(parts) > 2 and parts[1]:
                described = parts[-1].split(":", 1)[-1].strip()
            arguments[last] = described
        elif last and line:
            arguments[last] += " " + line
    return inspect.cleandoc(sections[""]).strip("\n"), arguments


_JSON_TYPES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    tuple: "array",
    set: "array",
    frozenset: "array",
    dict: "object",
    type(None): "null",
}


def _json_types(annotation: Any) -> list[str]:
    """JSON Schema type names for a type hint, in order; ``string`` for what has none."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        found: list[str] = []
        for part in typing.get_args(annotation):
            for name in _json_types(part):
                if name not in found:
                    found.append(name)
        return found
    if origin is typing.Literal:
        names = [_JSON_TYPES.get(type(value), "string") for value in typing.get_args(annotation)]
        return list(dict.fromkeys(names)) if len(set(names)) == 1 else ["string"]
    if origin is typing.Annotated:
        return _json_types(typing.get_args(annotation)[0])
    base = origin or annotation
    for kind, name in _JSON_TYPES.items():
        if base is kind:
            return [name]
    return ["string"]


def tool_schema(func: Callable[..., Any]) -> dict[str, Any]:
    """The ``tools[]`` entry for ``func``, as the official client builds it.

    Every parameter is listed under ``required`` unless its type allows ``None`` (the official
    client's rule, kept so a function means the same to both); a parameter without a type hint
    is a string.

    >>> def get_weather(city: str, days: int | None = None) -> str:
    ...     '''The weather in a city.
    ...
    ...     Args:
    ...         city: The city's name.
    ...     '''
    >>> tool_schema(get_weather)["function"]["parameters"]  # doctest: +NORMALIZE_WHITESPACE
    {'type': 'object', 'required': ['city'],
     'properties': {'city': {'type': 'string', 'description': "The city's name."},
                    'days': {'type': 'integer', 'description': ''}}}
    """
    description, documented = _parse_docstring(inspect.getdoc(func))
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception:  # a hint that does not resolve: read it as written
        hints = {}
    properties: dict[str, dict[str, str]] = {}
    required: list[str] = []
    for name, parameter in inspect.signature(func).parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        annotation = hints.get(name, parameter.annotation)
        kinds = _json_types(str if annotation is inspect.Parameter.empty else annotation)
        if "null" in kinds:
            kinds.remove("null")
        else:
            required.append(name)
        properties[name] = {"type": ", ".join(kinds), "description": documented.get(name, "")}
    parameters: dict[str, Any] = {"type": "object"}
    if required:
        parameters["required"] = required
    parameters["properties"] = properties
    function = {"name": func.__name__, "description": description, "parameters": parameters}
    return {"type": "function", "function": function}


def is_tool(value: Any) -> bool:
    """Whether ``value`` can be offered as a tool: a plain function (or builtin) with a name."""
    return (inspect.isfunction(value) or inspect.isbuiltin(value)) and bool(
        getattr(value, "__name__", "").isidentifier()
    )


def resolve_tools(spec: str, namespace: Mapping[str, Any]) -> dict[str, Callable[..., Any]]:
    """``--tools f,g`` (names of functions) or ``--tools TOOLS`` (a variable holding a list of
    functions) as ``{name: function}``; a name that is no function is a :class:`ToolError`.

    >>> def f(): pass
    >>> list(resolve_tools("f", {"f": f})), list(resolve_tools("fs", {"fs": [f]}))
    (['f'], ['f'])
    """
    found: dict[str, Callable[..., Any]] = {}
    for name in (part.strip() for part in spec.split(",")):
        if not name:
            continue
        if name not in namespace:
            raise ToolError(f"--tools {name}: no such function or variable in this notebook")
        value = namespace[name]
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        for item in items:
            if not callable(item) or not getattr(item, "__name__", "").isidentifier():
                what = type(item).__name__
                raise ToolError(
                    f"--tools {name}: not a function but a {what}; give function names "
                    "(--tools f,g) or a variable holding a list of functions"
                )
            found[item.__name__] = item
    if not found:
        raise ToolError("--tools needs function names, e.g. --tools get_weather,add")
    return found


# -- calls --------------------------------------------------------------------------------


@dataclass
class ToolCall:
    """One call the model asked for, and what came of it.

    ``result`` is the function's return value (a Python object); ``content`` is the text that
    went back to the model (the result as text, or the error); ``status`` is ``ok``, ``error``,
    ``declined`` (``--confirm`` said no), ``interrupted`` (Ctrl-C) or ``pending``.
    """

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str = ""
    index: int = 0
    result: Any = None
    content: str = ""
    error: str | None = None
    status: str = PENDING
    seconds: float = 0.0
    round: int = 1

    @property
    def ok(self) -> bool:
        return self.status == OK

    def signature(self, limit: int = _SHOWN_VALUE) -> str:
        """``name(key='value', …)`` as Python would write the call, values shortened."""
        arguments = ", ".join(
            f"{key}={_short(repr(value), limit)}" for key, value in self.arguments.items()
        )
        return f"{_short(self.name, _SHOWN_NAME)}({arguments})"

    def outcome(self, limit: int = _SHOWN_VALUE) -> str:
        """What came of the call, in one line."""
        if self.status == OK:
            return _short(_one_line(self.content), limit)
        if self.status == PENDING:
            return "running…"
        return _short(_one_line(self.error or self.status), limit)

    def wire(self) -> dict[str, Any]:
        """The call as it goes back in the assistant message (Ollama's ``api.ToolCall``)."""
        function = {"index": self.index, "name": self.name, "arguments": dict(self.arguments)}
        return {"id": self.id, "function": function} if self.id else {"function": function}

    def message(self) -> dict[str, Any]:
        """The ``role: "tool"`` message carrying this call's result (or error) to the model."""
        out = {"role": "tool", "content": self.content, "tool_name": self.name}
        if self.id:
            out["tool_call_id"] = self.id
        return out

    def __repr__(self) -> str:
        return call_line(self)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def read_calls(value: Any, round_number: int = 1, first_index: int = 0) -> list[ToolCall]:
    """The ``tool_calls`` of a chat message, whatever a server sent: an entry that is not a
    well-formed call becomes a call already failed with the reason, which goes back to the model
    as its result (a model can correct itself; a traceback helps nobody).

    >>> [c.signature() for c in read_calls([{"function": {"name": "f", "arguments": {"x": 1}}}])]
    ['f(x=1)']
    >>> read_calls([{"function": {"name": "f", "arguments": "x=1"}}])[0].error
    'the arguments of f are not a JSON object'
    """
    if not isinstance(value, list):
        return []
    calls: list[ToolCall] = []
    for offset, item in enumerate(value):
        item = item if isinstance(item, dict) else {}
        function = item.get("function")
        function = function if isinstance(function, dict) else {}
        name = _text(function.get("name"))
        index = function.get("index")
        call = ToolCall(
            name=name or "?",
            id=_text(item.get("id")),
            index=index if type(index) is int and index >= 0 else first_index + offset,
            round=round_number,
        )
        arguments = function.get("arguments", {})
        if not name:
            call.error = "a tool call without a function name"
        elif isinstance(arguments, dict):
            call.arguments = arguments
        else:
            call.error = f"the arguments of {_short(name, _SHOWN_NAME)} are not a JSON object"
        if call.error:
            call.status, call.content = FAILED, call.error
        calls.append(call)
    return calls


def result_text(value: Any) -> str:
    """A function's return value as the text the model reads: strings as they are, JSON for
    what JSON can hold, ``str()`` for anything else.

    >>> result_text("18 °C"), result_text({"t": 18}), result_text(None), result_text(2.5)
    ('18 °C', '{"t": 18}', 'null', '2.5')
    """
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


Approve = Callable[[ToolCall], bool]


def run_call(
    call: ToolCall,
    functions: Mapping[str, Callable[..., Any]],
    approve: Approve | None = None,
    clock: Callable[[], float] = time.perf_counter,
    on_start: Callable[[ToolCall], None] | None = None,
) -> ToolCall:
    """Run one call in this thread and fill in its outcome; return it. ``on_start(call)`` is
    called once the call is checked and approved, just before the function runs.

    An unknown name, arguments that do not fit the signature, a ``no`` from ``approve`` and an
    exception in the function all end the same way: ``content`` says what happened, for the
    model to read. Only ``KeyboardInterrupt`` escapes (the call is then ``interrupted``).
    """
    if call.status != PENDING:
        return call
    func = functions.get(call.name)
    if func is None:
        known = ", ".join(functions) or "none"
        shown = _short(call.name, _SHOWN_NAME)
        return _failed(call, f"unknown function {shown!r}; the tools are: {known}")
    try:
        bound = inspect.signature(func).bind(**call.arguments)
    except TypeError as exc:
        return _failed(call, f"bad arguments for {call.name}: {exc}")
    except ValueError:  # a builtin without a readable signature: let the call itself check
        bound = None
    if approve is not None:
        try:
            approved = approve(call)
        except KeyboardInterrupt:  # Ctrl-C while asking: the call never ran
            call.status = INTERRUPTED
            call.error = call.content = "interrupted by the user"
            raise
        except CannotAsk:
            raise
        except Exception as exc:  # the user's own --confirm function: its error, not a traceback
            return _failed(call, f"the confirmation raised {type(exc).__name__}: {exc}")
        if not approved:
            call.status, call.content = DECLINED, DECLINED_TEXT
            return call
    if on_start is not None:
        on_start(call)
    started = clock()
    try:
        value = func(**call.arguments) if bound is None else func(*bound.args, **bound.kwargs)
    except KeyboardInterrupt:
        call.seconds = clock() - started
        call.status = INTERRUPTED
        call.error = call.content = "interrupted by the user"
        raise
    except Exception as exc:
        call.seconds = clock() - started
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return _failed(call, f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__)
    call.seconds = clock() - started
    call.result, call.content, call.status = value, result_text(value), OK
    return call


def _failed(call: ToolCall, message: str) -> ToolCall:
    call.status, call.error, call.content = FAILED, message, f"Error: {message}"
    return call


# -- the loop -----------------------------------------------------------------------------


class ToolView(Protocol):
    """Where calls are shown as they happen (the notebook's live lines, or a terminal)."""

    def started(self, call: ToolCall) -> None: ...

    def finished(self, call: ToolCall) -> None: ...

    def close(self) -> None: ...


class NullView:
    def started(self, call: ToolCall) -> None:
        pass

    def finished(self, call: ToolCall) -> None:
        pass

    def close(self) -> None:
        pass


#: One request of the loop, done by the caller: ``send(body, earlier_calls, last)`` streams
#: ``body`` and returns the result, the error (if any) and the raw ``tool_calls`` it brought.
Round = Callable[[dict[str, Any], list[ToolCall], bool], tuple[Any, Any, Any]]


@dataclass
class ToolTurn:
    """What a turn with tools did: the last request's result and error, every call, the
    messages to keep in the conversation (the assistant's calls and the tool results), and
    why the loop stopped early, if it did (``limit``, ``interrupted``)."""

    result: Any
    error: Any
    calls: list[ToolCall]
    steps: list[dict[str, Any]]
    stopped: str | None = None
    wanted: list[ToolCall] = field(default_factory=list)  # calls not run: the round limit


def chat_with_tools(
    send: Round,
    body: dict[str, Any],
    functions: Mapping[str, Callable[..., Any]],
    *,
    max_rounds: int = DEFAULT_MAX_ROUNDS,
    view: ToolView | None = None,
    approve: Approve | None = None,
    answered: Callable[[Any], bool] = lambda result: True,
) -> ToolTurn:
    """Ask, run the calls the model makes, send their results back, until it answers.

    ``send(body, earlier_calls, last)`` streams one request; ``last`` is true when no more
    calls will be run (the round limit), so the caller can show that round as the final one.
    ``answered(result)`` says whether the request finished normally (not cut, no error).
    ``max_rounds`` bounds the rounds of calls run; when the model still asks for more, the loop
    stops and ``stopped`` is ``"limit"``. A Ctrl-C during a call stops it too (``interrupted``).
    """
    view = view or NullView()
    running: set[int] = set()

    def start(call: ToolCall) -> None:  # shown once approved: not "running" while asked
        running.add(id(call))
        view.started(call)

    messages = list(body["messages"])
    calls: list[ToolCall] = []
    steps: list[dict[str, Any]] = []
    tools_round = 0
    try:
        while True:
            last = tools_round >= max_rounds
            result, error, raw_calls = send({**body, "messages": messages}, list(calls), last)
            asked = read_calls(raw_calls, tools_round + 1, 0)
            if error is not None or not answered(result) or not asked:
                return ToolTurn(result, error, calls, steps)
            if last:
                return ToolTurn(result, error, calls, steps, stopped="limit", wanted=asked)
            tools_round += 1
            assistant: dict[str, Any] = {
                "role": "assistant",
                "content": getattr(result, "answer", ""),
                "tool_calls": [call.wire() for call in asked],
            }
            messages.append(assistant)
            steps.append(assistant)
            for call in asked:
                calls.append(call)
                try:
                    run_call(call, functions, approve, on_start=start)
                finally:
                    if id(call) not in running:  # it never ran: refused, declined, stopped
                        view.started(call)
                    view.finished(call)
                messages.append(call.message())
                steps.append(call.message())
    except KeyboardInterrupt:
        return ToolTurn(None, None, calls, steps, stopped=INTERRUPTED)
    finally:
        view.close()


# -- how calls look -----------------------------------------------------------------------

_MARK = {OK: "✓", FAILED: "✗", DECLINED: "⊘", INTERRUPTED: "■", PENDING: "…"}
_CALL_STYLE = "border-left:3px solid #9ab;padding-left:0.6em;margin:0.2em 0"


def call_line(call: ToolCall) -> str:
    """One call as a terminal line: mark, call, outcome, time.

    >>> call_line(ToolCall("add", {"a": 1}, content="3", status=OK, seconds=0.01))
    '✓ add(a=1) → 3  (0.01 s)'
    """
    timing = f"  ({call.seconds:.2f} s)" if call.status in (OK, FAILED, INTERRUPTED) else ""
    return f"{_MARK.get(call.status, '?')} {call.signature()} → {call.outcome()}{timing}"


def call_html(call: ToolCall) -> str:
    """One call as collapsed HTML: the line as summary, the arguments and full result inside.
    Everything is escaped: names and arguments come from the model, results from code."""
    summary = html.escape(call_line(call), quote=False)
    arguments = html.escape(
        _short(json.dumps(call.arguments, ensure_ascii=False, indent=1, default=str), _SHOWN_BODY),
        quote=False,
    )
    said = call.content if call.status == OK else (call.error or call.content)
    body = html.escape(_short(said, _SHOWN_BODY), quote=False)
    label = "result" if call.status == OK else call.status
    return (
        f'<details class="ollama-tool-call"><summary>{summary}</summary>'
        f'<div style="{_CALL_STYLE}"><b>arguments</b><pre>{arguments}</pre>'
        f"<b>{label}</b><pre>{body}</pre></div></details>"
    )


def calls_html(calls: Sequence[ToolCall]) -> str:
    """Every call of a turn, in order, each collapsed."""
    return "".join(call_html(call) for call in calls)


def calls_text(calls: Sequence[ToolCall]) -> str:
    return "\n".join(call_line(call) for call in calls)


def limit_note(wanted: Sequence[ToolCall], max_rounds: int) -> str:
    """The line shown when the model still wanted tools after ``max_rounds`` rounds."""
    names = ", ".join(dict.fromkeys(_short(call.name, _SHOWN_NAME) for call in wanted))
    return (
        f"Stopped after {max_rounds} round{'s' if max_rounds != 1 else ''} of tool calls: the "
        f"model still wanted to call {names}. Raise --max-tool-rounds to let it go on."
    )
