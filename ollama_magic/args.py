"""The ``%%ollama`` line: flags in, a ``/api/generate`` request body out. Pure: no I/O, no IPython.

Every value a user can type is checked here, before any request, so a typo costs one short
message and not a round trip. Names in the user's namespace (``--format``, ``--image``,
``--context``) are resolved from a plain mapping handed in by the magic.
"""

from __future__ import annotations

import argparse
import array
import base64
import json
import math
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .common.gotime import parse_duration
from .fields import MAX_SECONDS, seconds

if TYPE_CHECKING:
    from .notebook import History

THINK_LEVELS = ("low", "medium", "high", "max")
DEFAULT_CONVERSATION = "default"  # the one conversation per notebook that --chat continues

#: Alternatives per token for ``--logprobs`` without a number (Ollama allows 0-20).
DEFAULT_TOP_LOGPROBS = 5


#: Flags that go into ``options``, under their own name (``--num-ctx`` is ``num_ctx``).
OPTION_FLAGS = (
    "temperature",
    "num_ctx",
    "num_predict",
    "seed",
    "top_k",
    "top_p",
    "min_p",
    "repeat_penalty",
)


class ArgsError(ValueError):
    """A bad flag or value; the message says what to write instead."""


class Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are :class:`ArgsError` (one line, no exit)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ArgsError(message)


def build_parser(prog: str = "%%ollama") -> argparse.ArgumentParser:
    """The one definition of the magic's flags; ``%%ollama?`` shows its help."""
    p = Parser(
        prog=prog,
        add_help=False,
        allow_abbrev=False,
        usage="%(prog)s [MODEL] [flags]\n<prompt: the rest of the cell>",
        description=(
            "Send the cell body as the prompt to Ollama's POST /api/generate and stream the "
            "answer into the cell, with the model's reasoning shown apart from it. {name} in the "
            "body is replaced by the variable's value when such a variable exists; other braces "
            "stay as written."
        ),
    )
    p.add_argument("model", nargs="?", help="model name (default: %%config OllamaMagics.model)")
    req = p.add_argument_group("request fields")
    req.add_argument("-s", "--system", help="system prompt (overrides the Modelfile's)")
    req.add_argument("--suffix", help="text after the answer (fill-in-the-middle models)")
    req.add_argument("--template", help='prompt template, e.g. "{{ .System }} {{ .Prompt }}"')
    req.add_argument("--raw", action="store_true", help="send the prompt with no template")
    req.add_argument(
        "--format",
        metavar="FORMAT",
        help="'json', a JSON schema object, or the name of a variable holding a schema dict "
        "or a pydantic model class (the result's .data is then parsed)",
    )
    req.add_argument(
        "-i",
        "--image",
        action="append",
        default=[],
        metavar="PATH",
        help="image file, or a variable holding bytes (repeatable)",
    )
    req.add_argument(
        "-k",
        "--keep-alive",
        metavar="DURATION",
        help="how long the model stays loaded: seconds (300), a duration (10m, 1h30m), "
        "negative for forever, 0 to unload at once",
    )
    req.add_argument("--no-stream", action="store_true", help="wait for the whole answer")
    think = req.add_mutually_exclusive_group()
    think.add_argument(
        "--think",
        nargs="?",
        const=True,
        metavar="LEVEL",
        help="ask a thinking model to reason (optional level: low, medium, high, max)",
    )
    think.add_argument("--no-think", action="store_true", help="ask the model not to reason")
    req.add_argument(
        "--logprobs",
        nargs="?",
        const=str(DEFAULT_TOP_LOGPROBS),
        metavar="N",
        help="token probabilities, with the N likeliest alternatives of each (0-20, default "
        f"{DEFAULT_TOP_LOGPROBS}); shown as shading, alternatives on hover",
    )
    req.add_argument(
        "--no-truncate",
        action="store_true",
        help="refuse an over-long prompt (an error) instead of letting the server cut it",
    )
    req.add_argument(
        "--no-shift",
        action="store_true",
        help="stop when the context fills, instead of dropping its older half and going on",
    )
    req.add_argument(
        "--context",
        metavar="VAR",
        help="continue from a variable holding a result or its .context token list",
    )
    req.add_argument(
        "-c", "--continue", dest="cont", action="store_true", help="continue the previous answer"
    )
    opts = p.add_argument_group("options (sent inside 'options')")
    opts.add_argument("--temperature", type=float, metavar="T")
    opts.add_argument("--num-ctx", type=int, metavar="N", help="context window in tokens")
    opts.add_argument("--num-predict", type=int, metavar="N", help="most tokens to generate")
    opts.add_argument("--seed", type=int, metavar="N")
    opts.add_argument("--top-k", type=int, metavar="K")
    opts.add_argument("--top-p", type=float, metavar="P")
    opts.add_argument("--min-p", type=float, metavar="P")
    opts.add_argument("--repeat-penalty", type=float, metavar="R")
    opts.add_argument(
        "--stop", action="append", default=[], metavar="TEXT", help="stop sequence (repeatable)"
    )
    opts.add_argument(
        "-O",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other option; VALUE is read as JSON when it is JSON (repeatable)",
    )
    chat = p.add_argument_group("chat mode (POST /api/chat, with memory)")
    chat.add_argument(
        "--chat",
        action="store_true",
        help="send the cell as the next message of a conversation; earlier turns go with it "
        "(answers only, never the reasoning)",
    )
    chat.add_argument(
        "--conversation",
        metavar="NAME",
        help="which conversation (implies --chat; default: one per notebook). -s sets its "
        "system prompt; %%ollama history / reset NAME show or clear it",
    )
    tools = p.add_argument_group("tool calling (chat mode)")
    tools.add_argument(
        "--tools",
        metavar="F,G",
        help="Python functions the model may call: names, or a variable holding a list of "
        "functions (implies --chat). Each call runs here, in the kernel; its result goes back "
        "to the model until it answers",
    )
    tools.add_argument(
        "--max-tool-rounds",
        type=int,
        metavar="N",
        help="most rounds of tool calls in one turn (default 5)",
    )
    tools.add_argument(
        "--confirm",
        nargs="?",
        const="",
        metavar="FUNC",
        help="ask before each call (or let FUNC(call) -> bool decide)",
    )
    run = p.add_argument_group("this cell")
    run.add_argument("-o", "--out", metavar="NAME", help="store the result in this variable")
    run.add_argument(
        "--host",
        action="append",
        metavar="URL",
        help="Ollama server (default: $OLLAMA_HOST); repeat it with --map to use several",
    )
    run.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="longest wait for the next piece"
    )
    run.add_argument(
        "--literal", action="store_true", help="send the body as written: no {name} filling"
    )
    run.add_argument("--hide-thinking", action="store_true", help="do not show the reasoning")
    run.add_argument("-q", "--quiet", action="store_true", help="show nothing; use with -o")
    batch = p.add_argument_group("over a dataset")
    batch.add_argument(
        "--map",
        metavar="VAR",
        help="send the prompt once per item of VAR (a list, a pandas Series: {item}; a "
        "DataFrame: {column}); results in input order, or a copy of the DataFrame with answers",
    )
    batch.add_argument(
        "--parallel",
        type=int,
        metavar="N",
        help="with --map: requests in flight per host (default: %%config OllamaMagics.parallel)",
    )
    batch.add_argument(
        "--no-cache",
        action="store_true",
        help="with --map: ask the server for every item, neither reading nor writing the cache "
        "of finished answers",
    )
    notebook = p.add_argument_group("notebook ({In[3]}, {Out[3]}, {_} and {Err} fill the body)")
    notebook.add_argument(
        "--fix",
        action="store_true",
        help="explain the last error and correct its cell; the body, if any, adds your words "
        "(also: %%ollama fix)",
    )
    notebook.add_argument(
        "--code",
        action="store_true",
        help="put the answer's code block (the first Python one) into a new cell below, not run",
    )
    return p


PARSER = build_parser()


def parse_line(line: str) -> argparse.Namespace:
    """Split the magic line like a shell would and parse it.

    >>> ns = parse_line("llama3.2 --num-predict 5 --stop 'The end' -k 10m")
    >>> ns.model, ns.num_predict, ns.stop, ns.keep_alive
    ('llama3.2', 5, ['The end'], '10m')
    """
    tokens = split_line(line)
    return PARSER.parse_args(attach_dash_values(tokens, PARSER))


def split_line(line: str) -> list[str]:
    """Split a magic line like a shell would; a stray quote is an :class:`ArgsError`."""
    try:
        return shlex.split(line)
    except ValueError as exc:
        raise ArgsError(f"cannot split the magic line: {exc}") from None


def attach_dash_values(tokens: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """Let values that start with ``-`` follow their flag: ``-k -1m`` means ``-k=-1m``.

    >>> attach_dash_values(["-k", "-1m", "--stop", "--", "-q"], PARSER)
    ['-k=-1m', '--stop=--', '-q']
    """
    actions = parser._option_string_actions
    out: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        action = actions.get(token)
        takes_value = action is not None and action.nargs is None and action.const is None
        if takes_value and i + 1 < len(tokens):
            following = tokens[i + 1]
            if following.startswith("-") and following not in actions:
                out.append(f"{token}={following}")
                i += 2
                continue
        out.append(token)
        i += 1
    return out


@dataclass
class GenerateCall:
    """Everything one ``%%ollama`` cell will do, resolved and checked."""

    body: dict[str, Any]
    stream: bool
    out: str | None = None
    host: str | None = None
    timeout: float | None = None
    schema_model: Any = None  # a pydantic model class for .data, if one was given
    show_thinking: bool = True
    quiet: bool = False
    system: str | None = None  # chat mode: the -s flag, which becomes the conversation's prompt
    hosts: list[str] = field(default_factory=list)  # every --host, in order (several: --map only)
    code: bool = False  # --code: the answer's code block goes into a new cell below
    fix: bool = False  # --fix: the prompt is the last error's fix request (the magic builds it)
    tools: dict[str, Any] | None = None  # --tools: {name: function}
    max_tool_rounds: int = 5
    confirm: Any = None  # --confirm: "" asks (buttons or input()), else a function (call) -> bool


@dataclass(frozen=True)
class Defaults:
    """Values from ``%config OllamaMagics`` that flags override."""

    model: str = ""
    system: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    keep_alive: str = ""
    think: str = ""
    interpolate: bool = True
    show_thinking: bool = True


_NAME = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def fill_prompt(
    text: str, namespace: Mapping[str, Any], history: History | None = None
) -> str:
    """Replace ``{name}`` where ``name`` is a variable; leave every other brace alone. With the
    session's ``history``, ``{In[N]}``, ``{Out[N]}`` and ``{Err}`` are filled too.

    >>> fill_prompt("Sort {xs} in {lang}: def f(): return {}", {"xs": [3, 1]})
    'Sort [3, 1] in {lang}: def f(): return {}'
    """
    if history is not None:
        from .notebook import fill_references

        return fill_references(text, namespace, history)

    def swap(match: re.Match[str]) -> str:
        name = match.group(1)
        return str(namespace[name]) if name in namespace else match.group(0)

    return _NAME.sub(swap, text)


def keep_alive_value(text: str) -> int | float | str:
    """A keep_alive flag as it must go on the wire: numbers as JSON numbers, durations as strings.

    >>> keep_alive_value("300"), keep_alive_value("-1"), keep_alive_value("10m")
    (300, -1, '10m')
    >>> keep_alive_value("1d")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ollama_magic.args.ArgsError: --keep-alive 1d: time: unknown unit "d" in duration "1d"; ...
    """
    value = text.strip()
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(number) or abs(number) > 9e9:
            raise ArgsError(f"--keep-alive {text}: too large; use -1 to keep the model forever")
        return int(number) if number.is_integer() else number
    try:
        parse_duration(value)
    except ValueError as exc:
        raise ArgsError(
            f"--keep-alive {text}: {exc}; use seconds (300), a duration with s/m/h (10m, 24h), "
            "-1 for forever or 0 to unload"
        ) from None
    return value


def top_logprobs_value(text: str) -> int:
    """``--logprobs N``: how many alternatives to ask for each token.

    >>> top_logprobs_value("3"), top_logprobs_value("0")
    (3, 0)
    """
    try:
        number = int(text)
    except ValueError:
        number = -1
    if not 0 <= number <= 20:
        raise ArgsError(
            f"--logprobs {text}: use a whole number of alternatives from 0 to 20, "
            f"or no number for {DEFAULT_TOP_LOGPROBS}"
        )
    return number


def think_value(text: str | bool) -> bool | str:
    """``--think`` with no level is ``true``; levels are checked before sending."""
    if isinstance(text, bool):
        return text
    lowered = text.strip().lower()
    if lowered in ("true", "on", "yes"):
        return True
    if lowered in ("false", "off", "no"):
        return False
    if lowered in THINK_LEVELS:
        return lowered
    raise ArgsError(f"--think {text}: use no value, or one of {', '.join(THINK_LEVELS)}")


_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\"}


def unescape(text: str) -> str:
    r"""Let ``--stop '\n\n'`` mean two newlines (only ``\n``, ``\t`` and ``\\`` are read).

    >>> unescape(r"\n\n"), unescape(r"a\\n"), unescape("你好")
    ('\n\n', 'a\\n', '你好')
    """
    return re.sub(r"\\([nt\\])", lambda m: _ESCAPES[m.group(1)], text)


def option_pair(text: str) -> tuple[str, Any]:
    """``-O KEY=VALUE``: the value is a JSON literal when it parses as one, else a string.

    >>> option_pair("num_gpu=0"), option_pair("stop=[\\"a\\"]"), option_pair("x=hello")
    (('num_gpu', 0), ('stop', ['a']), ('x', 'hello'))
    """
    key, sep, raw = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key:
        raise ArgsError(f"-O {text}: write KEY=VALUE, e.g. -O num_gpu=0")
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw


def build_call(
    ns: argparse.Namespace,
    cell: str,
    namespace: Mapping[str, Any],
    defaults: Defaults,
    previous_context: list[int] | None = None,
    history: History | None = None,
) -> GenerateCall:
    """Resolve a parsed line and the cell body into the request body and cell settings.

    ``history`` (the session's cells) lets the body refer to ``{In[N]}``, ``{Out[N]}`` and
    ``{Err}``; with ``--fix`` the body is the user's words added to the fix request, which the
    magic builds (so here the body may be empty)."""
    model = ns.model or defaults.model
    if not model:
        raise ArgsError(
            "no model given: write %%ollama MODEL on the first line, "
            "or set one with %config OllamaMagics.model = 'llama3.2'"
        )
    chat = conversation_name(ns) is not None
    cell = cell.rstrip("\n")  # IPython ends every cell body with a newline the user never typed
    prompt = (
        cell if ns.literal or not defaults.interpolate else fill_prompt(cell, namespace, history)
    )
    if not prompt.strip() and not ns.fix:
        raise ArgsError("the cell is empty: write the prompt below the %%ollama line")
    stream = not ns.no_stream
    body: dict[str, Any] = {"model": model, "prompt": prompt}
    if ns.suffix is not None:
        body["suffix"] = ns.suffix
    images = [_image(ref, namespace) for ref in ns.image]
    if images:
        body["images"] = images
    schema_model = None
    if ns.format is not None:
        body["format"], schema_model = _format(ns.format, namespace)
    options = dict(defaults.options)
    for key in OPTION_FLAGS:
        value = getattr(ns, key)
        if value is not None:
            options[key] = value
    if ns.stop:
        options["stop"] = [unescape(s) for s in ns.stop]
    for pair in ns.option:
        key, value = option_pair(pair)
        options[key] = value
    if options:
        body["options"] = options
    system = ns.system if ns.system is not None else defaults.system
    if system:
        body["system"] = system
    if ns.template is not None:
        body["template"] = ns.template
    body["stream"] = stream
    if ns.raw:
        body["raw"] = True
        for name in ("template", "system"):
            if ns.raw and getattr(ns, name) is not None:
                raise ArgsError(f"--raw sends the prompt as is, so it cannot take --{name}")
        body.pop("system", None)
    keep_alive = ns.keep_alive if ns.keep_alive is not None else defaults.keep_alive
    if keep_alive:
        body["keep_alive"] = keep_alive_value(keep_alive)
    context = _context(ns, namespace, previous_context)
    if context is not None:
        if ns.raw:
            raise ArgsError("--raw cannot continue a conversation (--context/--continue)")
        body["context"] = context
    if ns.logprobs is not None:
        body["logprobs"] = True
        top = top_logprobs_value(ns.logprobs)
        if top:
            body["top_logprobs"] = top
    if ns.no_truncate:
        body["truncate"] = False
    if ns.no_shift:
        body["shift"] = False
    if ns.no_think:
        body["think"] = False
    elif ns.think is not None:
        body["think"] = think_value(ns.think)
    elif defaults.think:
        body["think"] = think_value(defaults.think)
    system_flag = None
    if chat:
        body.pop("system", None)
        system_flag = ns.system
    tools, rounds, confirm = _tool_settings(ns, namespace)
    return GenerateCall(
        tools=tools,
        max_tool_rounds=rounds,
        confirm=confirm,
        system=system_flag,
        body=body,
        stream=stream,
        out=identifier(ns.out, "-o/--out") if ns.out else None,
        host=_one_host(ns),
        hosts=list(ns.host or []),
        timeout=None if ns.timeout is None else timeout_value(ns.timeout, "--timeout"),
        schema_model=schema_model,
        show_thinking=defaults.show_thinking and not ns.hide_thinking,
        quiet=ns.quiet,
        code=ns.code,
        fix=ns.fix,
    )


def _one_host(ns: argparse.Namespace) -> str | None:
    """The cell's ``--host``; several are for ``--map`` only."""
    hosts = ns.host or []
    if len(hosts) > 1 and getattr(ns, "map", None) is None:
        raise ArgsError("--host once per cell; several hosts share the work only with --map VAR")
    return hosts[-1] if hosts else None


def _tool_settings(
    ns: argparse.Namespace, namespace: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, int, Any]:
    """``--tools``, ``--max-tool-rounds`` and ``--confirm``, checked."""
    from .tools import DEFAULT_MAX_ROUNDS, ToolError, resolve_tools

    if ns.tools is None:
        for flag, used in (("--max-tool-rounds", ns.max_tool_rounds), ("--confirm", ns.confirm)):
            if used is not None:
                raise ArgsError(f"{flag} goes with --tools: name the functions the model may call")
        return None, DEFAULT_MAX_ROUNDS, None
    try:
        tools = resolve_tools(ns.tools, namespace)
    except ToolError as exc:
        raise ArgsError(str(exc)) from None
    rounds = DEFAULT_MAX_ROUNDS if ns.max_tool_rounds is None else ns.max_tool_rounds
    if not 1 <= rounds <= 100:
        raise ArgsError(f"--max-tool-rounds {rounds}: use a whole number from 1 to 100")
    confirm: Any = ns.confirm
    if confirm:
        confirm = namespace.get(confirm)
        if not callable(confirm):
            raise ArgsError(
                f"--confirm {ns.confirm}: no such function; write --confirm alone to be asked, "
                "or give a function that takes the call and returns True or False"
            )
    return tools, rounds, confirm


def conversation_name(ns: argparse.Namespace) -> str | None:
    """The conversation a chat-mode cell continues, or ``None`` for a single prompt."""
    if not ns.chat and ns.conversation is None and ns.tools is None:
        return None
    for flag, used in (
        ("--suffix", ns.suffix is not None),
        ("--template", ns.template is not None),
        ("--raw", ns.raw),
        ("--context", ns.context is not None),
        ("--continue", ns.cont),
    ):
        if used:
            raise ArgsError(
                f"{flag} is for single prompts; a --chat conversation keeps its own memory"
            )
    name = (ns.conversation or DEFAULT_CONVERSATION).strip()
    if not name:
        raise ArgsError("--conversation needs a name, e.g. --conversation french")
    return name


def identifier(name: str, flag: str) -> str:
    """A variable name the user gave with ``flag``, checked before anything is stored in it.

    >>> identifier("r2", "-o")
    'r2'
    >>> identifier("2r", "-o")
    Traceback (most recent call last):
    ...
    ollama_magic.args.ArgsError: -o 2r: not a valid Python variable name
    """
    if not name.isidentifier():
        raise ArgsError(f"{flag} {name}: not a valid Python variable name")
    return name


def timeout_value(value: Any, setting: str) -> float:
    """A timeout as a user set it (``--timeout nan``, ``%config OllamaMagics.timeout = -1``),
    checked before it reaches a socket.

    >>> timeout_value(0.5, "--timeout")
    0.5
    >>> timeout_value(float("nan"), "--timeout")  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    ollama_magic.args.ArgsError: --timeout nan: use a number of seconds above 0 and at most
    1000000, e.g. --timeout 600
    """
    checked = seconds(value)
    if checked is None:
        example = "600" if "connect" not in setting else "5"
        joiner = " = " if setting.startswith("%config") else " "
        raise ArgsError(
            f"{setting}{joiner}{value}: use a number of seconds above 0 and at most {MAX_SECONDS}, "
            f"e.g. {setting}{joiner}{example}"
        )
    return checked


def _image(ref: str, namespace: Mapping[str, Any]) -> str:
    value = namespace.get(ref)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    path = Path(ref).expanduser()
    if path.is_file():
        return base64.b64encode(path.read_bytes()).decode()
    raise ArgsError(f"--image {ref}: no such file, and no variable {ref!r} holding bytes")


def _format(ref: str, namespace: Mapping[str, Any]) -> tuple[str | dict[str, Any], Any]:
    text = ref.strip()
    if text == "json":
        return "json", None
    if text.startswith("{"):
        try:
            schema = json.loads(text)
        except ValueError as exc:
            raise ArgsError(f"--format: the JSON schema does not parse: {exc}") from None
        return schema, None
    if text not in namespace:
        raise ArgsError(
            f"--format {ref}: use 'json', a JSON schema object, or the name of a variable "
            "holding a schema dict or a pydantic model class"
        )
    value = namespace[text]
    if isinstance(value, dict):
        return value, None
    schema_of = getattr(value, "model_json_schema", None)
    if isinstance(value, type) and callable(schema_of):
        return schema_of(), value
    raise ArgsError(
        f"--format {ref}: {ref} is a {type(value).__name__}; it must be a schema dict "
        "or a pydantic model class"
    )


def _context(
    ns: argparse.Namespace, namespace: Mapping[str, Any], previous: list[int] | None
) -> list[int] | None:
    if ns.cont and ns.context:
        raise ArgsError("use either --continue or --context, not both")
    if ns.cont:
        if not previous:
            raise ArgsError("--continue: no previous answer with a context in this session yet")
        return list(previous)
    if not ns.context:
        return None
    if ns.context not in namespace:
        raise ArgsError(f"--context {ns.context}: no such variable")
    value = namespace[ns.context]
    value = getattr(value, "context", value)
    if not isinstance(value, (list, tuple, array.array)) or not all(
        isinstance(t, int) for t in value
    ):
        raise ArgsError(
            f"--context {ns.context}: expected a result (from -o) or a list of token ids"
        )
    return list(value)
