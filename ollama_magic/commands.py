"""The ``%ollama`` line commands: one argparse sub-parser each. Pure: no I/O, no IPython.

``%ollama help`` lists them, ``%ollama help CMD`` (or ``%ollama CMD -h``) shows one. The names
follow the ``ollama`` CLI (``list``, ``ps``, ``pull``, ``show``, ``stop``, ``cp``, ``rm``,
``create``, ``push``) so what a user learns here works in a terminal too.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .args import DEFAULT_CONVERSATION, ArgsError, Parser, attach_dash_values, split_line


@dataclass(frozen=True)
class Command:
    """A parsed line: the command's canonical name and its arguments."""

    name: str
    args: argparse.Namespace


#: name -> (aliases, one-line summary); the order of ``%ollama help``.
SUMMARIES: dict[str, tuple[tuple[str, ...], str]] = {
    "models": (("list", "ls"), "list the installed models"),
    "ps": ((), "list the loaded models, their memory and when each unloads"),
    "pull": ((), "download a model, with progress"),
    "push": ((), "upload a model to a registry, with progress"),
    "show": ((), "a model's capabilities, parameters, template and license"),
    "load": ((), "load a model into memory now (and keep it for --keep-alive)"),
    "stop": ((), "unload a model now (keep_alive 0), like `ollama stop`"),
    "cp": (("copy",), "copy a model under a new name"),
    "rm": (("delete",), "delete models"),
    "create": ((), "create a model from another with a new system prompt or parameters"),
    "embed": ((), "embedding vectors for a text or a list of texts"),
    "use": ((), "set the model for later %%ollama cells"),
    "host": ((), "show or set the Ollama server"),
    "version": ((), "versions of ollama-magic and of the server"),
    "history": ((), "show a --chat conversation"),
    "reset": ((), "forget a --chat conversation"),
    "ui": ((), "apps in the notebook: a Playground, a model manager, a side-by-side comparison"),
    "help": ((), "this list, or one command's help"),
}

_ALIASES = {alias: name for name, (aliases, _) in SUMMARIES.items() for alias in aliases}

#: The apps ``%ollama ui`` opens (the first is the default).
UI_APPS = ("playground", "models", "compare")


def _server(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", metavar="URL", help="Ollama server (default: the configured one)")
    p.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="longest wait for the server's next answer (default: %%config OllamaMagics.timeout)",
    )


def _out(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--out", metavar="NAME", help="also store the answer in this variable")


def _keep_alive(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-k",
        "--keep-alive",
        metavar="DURATION",
        help="how long it stays loaded: seconds (300), a duration (10m, 24h), -1 for forever",
    )


def _build(name: str) -> argparse.ArgumentParser:
    aliases, summary = SUMMARIES[name]
    p = Parser(prog=f"%ollama {name}", add_help=False, allow_abbrev=False, description=summary)
    p.add_argument("-h", "--help", action="store_true", help="show this help")
    if aliases:
        p.epilog = "Also: " + ", ".join(f"%ollama {a}" for a in aliases)
    if name in ("models", "ps"):
        _out(p)
    elif name in ("pull", "push"):
        p.add_argument("model", metavar="NAME", help="e.g. llama3.2 or qwen3:8b")
        p.add_argument("--insecure", action="store_true", help="allow a registry without TLS")
    elif name == "show":
        p.add_argument("model", metavar="NAME")
        part = p.add_mutually_exclusive_group()
        for field in ("modelfile", "template", "parameters", "system", "license"):
            part.add_argument(f"--{field}", action="store_true", help=f"print only the {field}")
        _out(p)
    elif name == "load":
        p.add_argument("model", metavar="NAME")
        _keep_alive(p)
        p.add_argument("--num-ctx", type=int, metavar="N", help="context window to load with")
    elif name == "stop":
        p.add_argument("model", metavar="NAME", nargs="?")
        p.add_argument("--all", action="store_true", help="unload every loaded model")
    elif name == "cp":
        p.add_argument("source", metavar="SOURCE")
        p.add_argument("destination", metavar="DESTINATION")
    elif name == "rm":
        p.add_argument("models", metavar="NAME", nargs="+")
    elif name == "create":
        p.add_argument("model", metavar="NAME", help="the new model's name")
        p.add_argument(
            "--from", dest="base", required=True, metavar="BASE", help="model to start from"
        )
        p.add_argument("-s", "--system", metavar="TEXT", help="its system prompt")
        p.add_argument("--template", metavar="TEMPLATE", help="its prompt template")
        p.add_argument(
            "-p",
            "--param",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="a default option, e.g. temperature=0.2 or num_ctx=8192 (repeatable; "
            "stop=TEXT repeats)",
        )
        p.add_argument("--license", metavar="TEXT", help="its license text")
    elif name == "embed":
        p.add_argument("model", metavar="MODEL")
        p.add_argument("text", metavar="TEXT", nargs="*", help="the text (the rest of the line)")
        p.add_argument(
            "--var", metavar="NAME", help="embed a variable: a string or list of strings"
        )
        p.add_argument("--dimensions", type=int, metavar="N", help="shorten the vectors to N")
        _keep_alive(p)
        _out(p)
    elif name == "use":
        p.add_argument("model", metavar="NAME", nargs="?", help="omit to see the current one")
    elif name == "host":
        p.add_argument("url", metavar="URL", nargs="?", help="omit to see the current one")
    elif name == "history":
        p.add_argument("conversation", metavar="NAME", nargs="?", default=DEFAULT_CONVERSATION)
        _out(p)
    elif name == "reset":
        p.add_argument("conversation", metavar="NAME", nargs="?", default=DEFAULT_CONVERSATION)
        p.add_argument("--all", action="store_true", help="forget every conversation")
    elif name == "ui":
        p.add_argument(
            "app",
            metavar="APP",
            nargs="?",
            default=UI_APPS[0],
            choices=UI_APPS,
            help="playground (the default: try a model), models (pull, load, unload, delete, "
            "see what is loaded) or compare (one prompt, two to four models)",
        )
        p.add_argument(
            "-m",
            "--model",
            action="append",
            default=[],
            metavar="NAME",
            help="model to start with; for compare, one per column (repeatable), with flags "
            "if you like: -m 'qwen3 --think low'",
        )
        p.add_argument("-o", "--out", metavar="NAME", help="also keep the app in this variable")
        p.epilog = (
            "The apps need ipywidgets (pip install 'ollama-magic[widgets]') and a notebook. "
            "In Python: from ollama_magic.widgets import Playground, ModelManager, Compare"
        )
    elif name == "help":
        p.add_argument("command", metavar="COMMAND", nargs="?")
    if name not in ("use", "history", "reset", "help"):
        _server(p)
    return p


PARSERS: dict[str, argparse.ArgumentParser] = {name: _build(name) for name in SUMMARIES}


def canonical(name: str) -> str | None:
    """The command a name or alias means, or ``None``."""
    name = name.strip().lower()
    return name if name in PARSERS else _ALIASES.get(name)


def parse_command(line: str) -> Command:
    """Parse ``%ollama`` line text.

    >>> c = parse_command("load thinker -k -1 --num-ctx 8192")
    >>> c.name, c.args.model, c.args.keep_alive, c.args.num_ctx
    ('load', 'thinker', '-1', 8192)
    >>> parse_command("list").name, parse_command("").name
    ('models', 'help')
    """
    tokens = split_line(line)
    if not tokens:
        return Command("help", PARSERS["help"].parse_args([]))
    name = canonical(tokens[0])
    if name is None:
        raise ArgsError(
            f"unknown command {tokens[0]!r}. Commands: {', '.join(SUMMARIES)}. "
            "For a prompt, use the cell magic: %%ollama MODEL, then the prompt below it"
        )
    parser = PARSERS[name]
    if "-h" in tokens[1:] or "--help" in tokens[1:]:
        return Command("help", argparse.Namespace(command=name, help=False))
    try:
        return Command(name, parser.parse_args(attach_dash_values(tokens[1:], parser)))
    except ArgsError as exc:
        raise ArgsError(f"%ollama {name}: {exc} (see %ollama help {name})") from None


def overview() -> str:
    """``%ollama help``: every command with its summary."""
    width = max(len(name) for name in SUMMARIES)
    lines = [
        "%ollama COMMAND [args]: manage models and conversations "
        "(%%ollama MODEL with a prompt below it generates).",
        "",
    ]
    for name, (aliases, summary) in SUMMARIES.items():
        also = f" (also: {', '.join(aliases)})" if aliases else ""
        lines.append(f"  {name.ljust(width)}  {summary}{also}")
    lines += ["", "%ollama help COMMAND (or %ollama COMMAND -h) shows a command's arguments."]
    return "\n".join(lines)


def command_help(name: str) -> str:
    """One command's full help."""
    command = canonical(name)
    if command is None:
        raise ArgsError(f"unknown command {name!r}. Commands: {', '.join(SUMMARIES)}")
    return PARSERS[command].format_help().rstrip()


#: Commands whose first argument is an installed model.
_TAKES_MODEL = {"push", "show", "load", "stop", "cp", "rm", "embed", "use", "create"}


def completions(
    line: str,
    models: Callable[[], Sequence[str]],
    conversations: Sequence[str] = (),
    cell_flags: Sequence[str] = (),
) -> list[str]:
    """Tab-completion candidates for the word being typed at the end of ``line``.

    ``line`` is the magic's line up to the cursor; ``models`` is only called when model names
    are wanted (it asks the server).

    >>> names = lambda: ["qwen3:8b", "llama3.2:latest"]
    >>> completions("%ollama pu", names)
    ['pull', 'push']
    >>> completions("%ollama show ", names)
    ['qwen3:8b', 'llama3.2']
    >>> completions("%%ollama ll", names)
    ['llama3.2']
    >>> completions("%%ollama qwen3:8b --num-c", names, cell_flags=["--num-ctx", "--seed"])
    ['--num-ctx']
    >>> completions("%ollama ui c", names), completions("%ollama ui compare -m q", names)
    (['compare'], ['qwen3:8b'])
    """
    words = line.split()
    typing = "" if line.endswith((" ", "\t")) or not words else words[-1]
    before = words[1:-1] if typing else words[1:]  # words after the magic, before this one
    cell = bool(words) and words[0].startswith("%%")
    if typing.startswith("-"):
        flags = cell_flags if cell else _command_flags(before[0] if before else "")
        return [flag for flag in flags if flag.startswith(typing)]
    if cell:
        positional = [w for w in before if not w.startswith("-")]
        return _matching(models(), typing) if not positional else []
    if not before:
        return [name for name in [*SUMMARIES, *_ALIASES] if name.startswith(typing)]
    command = canonical(before[0])
    if command in ("history", "reset") and len(before) == 1:
        return _matching(list(conversations), typing)
    if command == "help" and len(before) == 1:
        return [name for name in SUMMARIES if name.startswith(typing)]
    if command == "ui":
        if before[-1] in ("-m", "--model"):
            return _matching(models(), typing)
        if len(before) == 1:
            return [app for app in UI_APPS if app.startswith(typing)]
        return []
    if command in _TAKES_MODEL and (len(before) == 1 or before[-1] == "--from"):
        return _matching(models(), typing)
    return []


def _command_flags(name: str) -> list[str]:
    command = canonical(name)
    if command is None:
        return []
    return [s for a in PARSERS[command]._actions for s in a.option_strings if s.startswith("--")]


def _matching(names: Sequence[str], typing: str) -> list[str]:
    """Names starting with ``typing``, written as people type them (no ``:latest``)."""
    out: list[str] = []
    for name in names:
        short = name.removesuffix(":latest")
        if short.startswith(typing) and short not in out:
            out.append(short)
    return out
