"""``%%ollama`` and ``%ollama``: thin glue from IPython to :mod:`ollama_magic.session` and
:mod:`ollama_magic.commands`.

The cell magic parses its line (``args``), resolves settings, runs the session and stores the
result; the line magic hands its line to the command table. The class holds what only IPython
has (configuration, the user's variables, the display, Tab completion) and turns a typed error
into a ``UsageError``: one line, no traceback, kernel still usable.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import closing
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from traitlets import Bool, Dict, Enum, Float, Int, List, Unicode

from . import lifecycle
from .args import (
    PARSER,
    ArgsError,
    Defaults,
    GenerateCall,
    build_call,
    conversation_name,
    parse_line,
    timeout_value,
)
from .cells import Cells
from .chat import Conversation, context_warning
from .commands import (
    Command,
    CommandFailed,
    ServerArgs,
    completions,
    overview,
    parse_command,
)
from .errors import ModelNotFound, OllamaError
from .live import FinalOnly, IPythonPublisher, LiveDisplay, NullSink, Sink, TextSink
from .messages import describe, interrupted, not_installed, outcome
from .present import ModelList
from .result import INTERRUPTED, GenerationResult
from .session import Pieces, attach_data, chat_pieces, generate_pieces, run

if TYPE_CHECKING:
    from .client import OllamaClient

DISPLAY_MODES = ("auto", "live", "final", "text", "none")


@magics_class
class OllamaMagics(Magics):
    """Magics for local models served by Ollama. Settings: ``%config OllamaMagics``."""

    model = Unicode("", help="Model used when a cell names none, e.g. 'llama3.2'.").tag(config=True)
    host = Unicode(
        "", help="Ollama server URL; empty means $OLLAMA_HOST, else http://127.0.0.1:11434."
    ).tag(config=True)
    options = Dict(
        help="Default request options, e.g. {'num_ctx': 8192}; flags override them."
    ).tag(config=True)
    system = Unicode("", help="Default system prompt.").tag(config=True)
    keep_alive = Unicode("", help="Default keep_alive, e.g. '10m' or '-1'.").tag(config=True)
    think = Unicode("", help="Default think value: '', 'true', 'false' or a level.").tag(
        config=True
    )
    display = Enum(
        DISPLAY_MODES,
        default_value="auto",
        help="How answers are shown: 'auto' (live in notebooks, text in terminals), 'live', "
        "'final' (only the finished answer), 'text' (plain streamed text) or 'none'.",
    ).tag(config=True)
    show_thinking = Bool(True, help="Show the model's reasoning (collapsed).").tag(config=True)
    interpolate = Bool(
        True, help="Fill {name} in the prompt from variables that exist (--literal turns it off)."
    ).tag(config=True)
    timeout = Float(600.0, help="Read timeout: longest silence (s) between two pieces.").tag(
        config=True
    )
    connect_timeout = Float(5.0, help="Seconds to wait for the server to accept.").tag(config=True)
    hosts = List(
        Unicode(),
        help="Servers that share a --map batch, e.g. ['http://gpu1:11434', 'http://gpu2:11434'] "
        "(--host flags override them); empty means the one configured server.",
    ).tag(config=True)
    parallel = Int(
        0,
        help="Requests in flight per host in a --map batch; 0 means 2 (Ollama does not say how "
        "many it serves at once; set it to OLLAMA_NUM_PARALLEL, or higher behind a proxy).",
    ).tag(config=True)
    cache_dir = Unicode(
        "",
        help="Where --map keeps finished answers (batch.sqlite); empty means "
        "$OLLAMA_MAGIC_CACHE_DIR, else $XDG_CACHE_HOME/ollama-magic, else ~/.cache/ollama-magic.",
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell, **kwargs)
        self.last_result: GenerationResult | None = None
        self.conversations: dict[str, Conversation] = {}
        self.cells = Cells(shell)  # In/Out, the last error, a new cell below
        completer = getattr(shell, "Completer", None)
        if completer is not None and hasattr(completer, "custom_matchers"):
            _install_matcher(completer, self._complete)

    def _complete(self, context: Any) -> dict[str, Any]:
        """Tab completion on a ``%ollama`` line or a ``%%ollama`` first line: commands, flags,
        conversation names and the server's models. Only these: Jedi's Python guesses are noise
        on a magic line, so they are suppressed there (and untouched everywhere else)."""
        from IPython.core.completer import SimpleCompletion

        line = context.text_until_cursor
        head = line.lstrip().split(None, 1)[0] if line.strip() else ""
        if head not in ("%ollama", "%%ollama") or (head == "%%ollama" and context.cursor_line):
            return {"completions": []}
        flags = [s for s in PARSER._option_string_actions if s.startswith("--")]
        found = completions(line.lstrip(), self._model_names, list(self.conversations), flags)
        word = "" if line.endswith((" ", "\t")) else line.split()[-1]
        cut = len(word) - len(context.token)  # the token may start inside the word (at ':')
        return {
            "completions": [SimpleCompletion(text=c[cut:], type="ollama") for c in found],
            "suppress": True,
        }

    def _model_names(self) -> list[str]:
        """Installed models, asked with short timeouts: a Tab press must never hang."""
        from .client import OllamaClient

        try:
            client = OllamaClient(self.host or None, connect_timeout=0.5, read_timeout=2.0)
        except ValueError:
            return []
        with closing(client):
            return ModelList(lifecycle.installed(client)).names

    @no_var_expand
    @line_cell_magic
    def ollama(self, line: str, cell: str | None = None) -> Any:
        if cell is None:
            return self._command(line)
        return self._cell(line, cell)

    def _cell(self, line: str, cell: str) -> Any:
        try:
            ns = parse_line(line)
            name = conversation_name(ns)
            conversation = None if name is None else self._conversation(name)
            defaults = self.defaults(conversation.model if conversation else "")
            call = build_call(
                ns,
                cell,
                self.namespace,
                defaults,
                self.last_result.context if self.last_result else None,
                self.cells.history(with_error="{Err}" in cell),
            )
        except ArgsError as exc:
            raise UsageError(str(exc)) from None
        if ns.map is not None:
            return self._map(ns, call, cell)
        if call.fix and not self.cells.ask_fix(call.body):
            return None
        try:
            if conversation is not None:
                self._chat(call, conversation)
            else:
                self._generate(call)
        except KeyboardInterrupt:  # outside the stream (which keeps its partial answer)
            raise UsageError(_interrupted("the cell", self._shown_host(call.host))) from None
        except OllamaError as exc:  # before or after the stream: a capability check, /api/ps
            raise UsageError(describe(exc)) from None
        return None

    # -- what commands use (the commands.Context protocol) -----------------------------------

    @property
    def namespace(self) -> dict[str, Any]:
        """The user's variables."""
        assert self.shell is not None  # a registered magic always has its shell
        user_ns: dict[str, Any] = self.shell.user_ns  # untyped in IPython
        return user_ns

    def defaults(self, model: str = "") -> Defaults:
        """What ``%config OllamaMagics`` sets, which flags override; ``model`` if given."""
        return Defaults(
            model=model or self.model,
            system=self.system,
            options=dict(self.options),
            keep_alive=self.keep_alive,
            think=self.think,
            interpolate=self.interpolate,
            show_thinking=self.show_thinking,
        )

    def client(
        self, host: str | None, timeout: float | None = None, *, setting: str = "--host"
    ) -> OllamaClient:
        """A client for ``host`` (else the configured server); a bad address or timeout is one
        line naming the setting it came from. ``timeout`` was checked with its flag."""
        from .client import HostError, OllamaClient  # imports requests: not at %load_ext time

        try:
            read = timeout or timeout_value(self.timeout, "%config OllamaMagics.timeout")
            connect = timeout_value(self.connect_timeout, "%config OllamaMagics.connect_timeout")
        except ArgsError as exc:
            raise UsageError(str(exc)) from None
        value, where = self._host_setting(host, setting)
        try:
            return OllamaClient(value, connect_timeout=connect, read_timeout=read)
        except HostError as exc:
            raise UsageError(f"{where} {exc}") from None

    def _host_setting(self, host: str | None, setting: str = "--host") -> tuple[str | None, str]:
        """The server address in use and where it was set, for a message about it."""
        if host:
            return host, setting
        if self.host:
            return self.host, "%config OllamaMagics.host"
        return os.environ.get("OLLAMA_HOST") or None, "$OLLAMA_HOST"

    def _shown_host(self, host: str | None) -> str:
        """The server's URL as it may be shown (no password), or a plain word if unreadable."""
        from .client import resolve_host

        try:
            return resolve_host(self._host_setting(host)[0])
        except ValueError:
            return "the server"

    def in_kernel(self) -> bool:
        return getattr(self.shell, "kernel", None) is not None

    def generate(self, line: str, cell: str) -> None:
        """``%ollama fix``: a ``%%ollama`` cell run from a line command."""
        self._cell(line, cell)

    # -- cells ----------------------------------------------------------------------------

    def _conversation(self, name: str) -> Conversation:
        """The named conversation, or a new empty one (stored once a turn succeeds)."""
        found = self.conversations.get(name)
        return Conversation(name) if found is None else found

    def _sink(self, call: GenerateCall) -> Sink:
        mode = self.display
        if call.quiet or mode == "none":
            return NullSink()
        if mode == "auto":
            mode = ("live" if call.stream else "final") if self.in_kernel() else "text"
        if mode == "text":
            return TextSink(show_thinking=call.show_thinking)
        publisher = IPythonPublisher()
        if mode == "final" or not call.stream:
            return FinalOnly(publisher, show_thinking=call.show_thinking)
        return LiveDisplay(publisher, show_thinking=call.show_thinking)

    def _generate(self, call: GenerateCall) -> None:
        with closing(self.client(call.host, call.timeout)) as client:
            result, problem = self._stream(client, call, "/api/generate", call.body)
            self.last_result = result if result.context else self.last_result
            if problem:
                raise UsageError(problem)

    def _chat(self, call: GenerateCall, conversation: Conversation) -> None:
        system = call.system
        if system is None and not conversation.turns:
            system = self.system  # %config OllamaMagics.system starts a new conversation
        body = conversation.request(call.body, system)
        with closing(self.client(call.host, call.timeout)) as client:
            steps: list[dict[str, Any]] = []
            if call.tools:
                result, problem, steps = self._tool_chat(client, call, body)
            else:
                result, problem = self._stream(client, call, "/api/chat", body, chat_pieces)
            if result.done_reason == INTERRUPTED:  # not remembered: its footer says so
                raise UsageError(problem or interrupted(result))  # so Run All stops here
            if problem:
                raise UsageError(
                    problem.rstrip(".") + ". This turn is not added to the conversation."
                )
            tokens = (result.prompt_eval_count or 0) + (result.eval_count or 0)
            conversation.record(body, result.answer, tokens or None, steps)
            self.conversations[conversation.name] = conversation
            window = result.num_ctx or lifecycle.context_window(client, body)  # asked once
            warning = context_warning(conversation.name, tokens, window)
        if warning:
            print(warning)

    def _tool_chat(
        self, client: OllamaClient, call: GenerateCall, body: dict[str, Any]
    ) -> tuple[GenerationResult, str | None, list[dict[str, Any]]]:
        """A turn with ``--tools`` (:mod:`ollama_magic.toolrun`): the result, the message for
        what went wrong, and the calls and results to keep in the conversation."""
        from .toolrun import ConfirmUnavailable, confirming, tool_turn
        from .tools import INTERRUPTED as TOOL_STOPPED
        from .tools import limit_note

        buttons = self.in_kernel() and self.display != "text"
        try:
            with confirming(call.confirm, buttons) as approve:
                result, error, turn = tool_turn(
                    client,
                    body,
                    call.tools or {},
                    lambda: self._sink(call),
                    self._tool_view(call),
                    approve,
                    max_rounds=call.max_tool_rounds,
                )
        except ConfirmUnavailable:
            raise UsageError(
                "--confirm needs someone to answer, and this front end runs cells unattended: "
                "give it a function that decides instead (--confirm FUNC, FUNC(call) -> True "
                "or False)."
            ) from None
        note = attach_data(result, call.schema_model) if "format" in body else None
        if call.out:
            self.namespace[call.out] = result
        kept = f" and in {call.out}" if call.out else ""
        problem = outcome(result, error, lambda: lifecycle.installed(client), kept=kept)
        if result.done_reason == INTERRUPTED:  # the user's stop: one line ends the cell
            if turn.stopped == TOOL_STOPPED:  # during a call, which the calls view shows
                where = (result.error or "").removeprefix("interrupted by the user")
                return result, f"Interrupted{where}: the calls above show what ran.", []
            return result, interrupted(result, call.out or ""), []
        if turn.stopped == "limit":
            print(limit_note(turn.wanted, call.max_tool_rounds))
        elif problem is None and note:
            print(note)
        return result, problem, turn.steps

    def _tool_view(self, call: GenerateCall) -> Any:
        """Where calls show while they run: live in a notebook, lines in a terminal."""
        from .toolrun import LiveCalls, TextCalls
        from .tools import NullView

        mode = self.display
        if call.quiet or mode in ("none", "final"):
            return NullView()
        if mode == "text" or (mode == "auto" and not self.in_kernel()):
            return TextCalls()
        return LiveCalls(IPythonPublisher())

    def _stream(
        self,
        client: OllamaClient,
        call: GenerateCall,
        path: str,
        body: dict[str, Any],
        pieces: Pieces = generate_pieces,
    ) -> tuple[GenerationResult, str | None]:
        """Run one streamed request; return the result and the message for what went wrong."""
        cannot_see = lifecycle.images_unsupported(client, body)
        if cannot_see:
            raise UsageError(cannot_see)
        result, error = run(client, path, body, self._sink(call), pieces)
        note = attach_data(result, call.schema_model) if "format" in body else None
        if call.out:
            self.namespace[call.out] = result
        kept = f" and in {call.out}" if call.out else ""
        problem = outcome(result, error, lambda: lifecycle.installed(client), kept=kept)
        if call.code and (problem is None or result.done_reason == INTERRUPTED):
            self.cells.code_below(result, quiet=call.quiet)  # or one line why not
        if result.done_reason == INTERRUPTED:  # the user's stop: one line, and Run All stops
            return result, interrupted(result, call.out or "")
        if problem is None and note:
            print(note)
        return result, problem

    def _map(self, ns: Any, call: GenerateCall, cell: str) -> Any:
        """``--map VAR``: the batch module runs it (see :mod:`ollama_magic.batch`)."""
        from .batch.cell import AllFailed, Interrupted, run_map

        try:
            return run_map(self, ns, call, cell, fill=self.interpolate and not ns.literal)
        except (ArgsError, AllFailed) as exc:
            raise UsageError(str(exc)) from None
        except Interrupted as exc:  # the finished items stay shown; Run All stops here
            if exc.output is not None:
                from IPython.display import display

                display(exc.output)
            raise UsageError(str(exc)) from None
        except KeyboardInterrupt:  # while reading the cache, before anything was sent
            raise UsageError("Interrupted before any request was sent.") from None

    # -- line commands --------------------------------------------------------------------

    def _command(self, line: str) -> Any:
        try:
            command = parse_command(line)
        except ArgsError as exc:
            raise UsageError(str(exc)) from None
        try:
            return self._run_command(command)
        except KeyboardInterrupt:  # as a pull does: one line, the kernel goes on
            host = command.args.host if isinstance(command.args, ServerArgs) else None
            raise UsageError(
                _interrupted(f"%ollama {command.name}", self._shown_host(host))
            ) from None

    def _run_command(self, command: Command) -> Any:
        try:
            return command.run(self)
        except (ArgsError, CommandFailed) as exc:
            raise UsageError(str(exc)) from None
        except ModelNotFound as exc:  # any command's 404 for a model: one message for all
            raise UsageError(self._not_installed(exc, command.unit.offer_pull)) from None
        except OllamaError as exc:
            raise UsageError(describe(exc)) from None

    def _not_installed(self, error: ModelNotFound, pull: bool) -> str:
        """The missing model, the closest installed names and (when it helps) the pull hint."""
        with closing(self.client(error.url)) as client:
            names = ModelList(lifecycle.installed(client)).names
        return not_installed(error.model, error.url, names, pull=pull)


def _install_matcher(completer: Any, complete: Callable[[Any], dict[str, Any]]) -> None:
    """Add ``complete`` as an IPython (v2) matcher, replacing one from an earlier load."""

    def ollama_matcher(context: Any) -> dict[str, Any]:
        return complete(context)

    ollama_matcher.matcher_api_version = 2  # type: ignore[attr-defined]
    completer.custom_matchers[:] = [
        m for m in completer.custom_matchers if getattr(m, "__name__", "") != "ollama_matcher"
    ] + [ollama_matcher]


def _interrupted(what: str, host: str) -> str:
    """Ctrl-C while waiting on the server: what stopped, and what to try next."""
    return (
        f"Interrupted: {what} stopped waiting for {host}. If the server is busy or stuck, "
        "try again later, or add --timeout SECONDS to give up sooner."
    )


OllamaMagics.ollama.__doc__ = (
    PARSER.format_help() + "\nLine commands (%ollama COMMAND):\n\n" + overview() + "\n"
)
