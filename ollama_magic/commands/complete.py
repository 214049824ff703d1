"""Tab completion on a ``%ollama`` or ``%%ollama`` line. Pure: the model names come from a
callable that is only called when they are wanted (it asks the server)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..present import short_name
from .apps import UI_APPS
from .base import APP, COMMAND, CONVERSATION, MODEL
from .registry import ALIASES, COMMANDS, canonical


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
        if cell:
            flags = list(cell_flags)
        else:
            name = canonical(before[0]) if before else None
            flags = COMMANDS[name].flags() if name else []
        return [flag for flag in flags if flag.startswith(typing)]
    if cell:
        positional = [w for w in before if not w.startswith("-")]
        return _matching(models(), typing) if not positional else []
    if not before:
        return [name for name in [*COMMANDS, *ALIASES] if name.startswith(typing)]
    name = canonical(before[0])
    if name is None:
        return []
    first = COMMANDS[name].first
    if first == APP:  # %ollama ui: the app, or a model after -m
        if before[-1] in ("-m", "--model"):
            return _matching(models(), typing)
        return [app for app in UI_APPS if app.startswith(typing)] if len(before) == 1 else []
    if first == MODEL and (len(before) == 1 or before[-1] == "--from"):
        return _matching(models(), typing)
    if len(before) > 1:
        return []
    if first == CONVERSATION:
        return _matching(list(conversations), typing)
    if first == COMMAND:
        return [name for name in COMMANDS if name.startswith(typing)]
    return []


def _matching(names: Sequence[str], typing: str) -> list[str]:
    """Names starting with ``typing``, written as people type them (no ``:latest``)."""
    out: list[str] = []
    for name in names:
        short = short_name(name)
        if short.startswith(typing) and short not in out:
            out.append(short)
    return out
