"""The ``%ollama`` line commands, one :class:`~.base.LineCommand` each: its parser, its typed
arguments and its run, in modules by family (``models``, ``transfer``, ``settings``,
``conversations``, ``apps``) and dispatched through the :data:`~.registry.COMMANDS` table.

``%ollama help`` lists them, ``%ollama help CMD`` (or ``%ollama CMD -h``) shows one. A command
runs in a :class:`~.base.Context` (the magic) and raises typed errors; it never sees IPython.
"""

from __future__ import annotations

from .base import CommandFailed, Context, LineCommand, ServerArgs
from .complete import completions
from .registry import COMMANDS, Command, canonical, command_help, overview, parse_command

__all__ = [
    "COMMANDS",
    "Command",
    "CommandFailed",
    "Context",
    "LineCommand",
    "ServerArgs",
    "canonical",
    "command_help",
    "completions",
    "overview",
    "parse_command",
]
