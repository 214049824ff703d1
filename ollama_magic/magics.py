"""``%%ollama`` and ``%ollama``: thin glue from IPython to :mod:`ollama_magic.session`.

Each magic parses its line (``args``), resolves settings, runs the session, stores the result,
and turns a typed error into a ``UsageError``: one line, no traceback, kernel still usable.
"""

from __future__ import annotations

import os
import time
from contextlib import closing
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from traitlets import Bool, Dict, Enum, Float, Unicode

from . import __version__, lifecycle
from .args import (
    PARSER,
    ArgsError,
    Defaults,
    GenerateCall,
    build_call,
    conversation_name,
    keep_alive_value,
    option_pair,
    parse_line,
    timeout_value,
)
from .chat import Conversation, context_warning
from .commands import Command, command_help, completions, overview, parse_command
from .errors import ConnectionFailed, ModelNotFound, OllamaError, ResponseError
from .fields import text
from .live import (
    FinalOnly,
    IPythonPublisher,
    LiveDisplay,
    NullSink,
    ProgressDisplay,
    ProgressText,
    Sink,
    TextSink,
)
from .messages import (
    describe,
    lacking,
    not_installed,
    outcome,
    transfer_failed,
    unsupported_capability,
)
from .present import LoadedList, ModelInfo, ModelList, load_summary, unload_summary
from .progress import Progress
from .result import GenerationResult
from .session import Pieces, attach_data, chat_pieces, generate_pieces, run

if TYPE_CHECKING:
    from .client import OllamaClient

DISPLAY_MODES = ("auto", "live", "final", "text", "none")

#: Commands whose missing model is worth a `%ollama pull NAME` hint (not rm, cp, stop, push).
OFFER_PULL = frozenset({"show", "load", "embed", "use"})


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

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell, **kwargs)
        self.last_result: GenerationResult | None = None
        self.conversations: dict[str, Conversation] = {}
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
        try:
            ns = parse_line(line)
            name = conversation_name(ns)
            conversation = None if name is None else self._conversation(name)
            defaults = self._defaults(conversation.model if conversation else "")
            call = build_call(
                ns,
                cell,
                self.shell.user_ns,
                defaults,
                self.last_result.context if self.last_result else None,
            )
        except ArgsError as exc:
            raise UsageError(str(exc)) from None
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

    # -- cells ----------------------------------------------------------------------------

    def _defaults(self, model: str = "") -> Defaults:
        return Defaults(
            model=model or self.model,
            system=self.system,
            options=dict(self.options),
            keep_alive=self.keep_alive,
            think=self.think,
            interpolate=self.interpolate,
            show_thinking=self.show_thinking,
        )

    def _conversation(self, name: str) -> Conversation:
        """The named conversation, or a new empty one (stored once a turn succeeds)."""
        found = self.conversations.get(name)
        return Conversation(name) if found is None else found

    def _client(
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

    def _in_kernel(self) -> bool:
        return getattr(self.shell, "kernel", None) is not None

    def _sink(self, call: GenerateCall) -> Sink:
        mode = self.display
        if call.quiet or mode == "none":
            return NullSink()
        if mode == "auto":
            mode = ("live" if call.stream else "final") if self._in_kernel() else "text"
        if mode == "text":
            return TextSink(show_thinking=call.show_thinking)
        publisher = IPythonPublisher()
        if mode == "final" or not call.stream:
            return FinalOnly(publisher, show_thinking=call.show_thinking)
        return LiveDisplay(publisher, show_thinking=call.show_thinking)

    def _generate(self, call: GenerateCall) -> None:
        with closing(self._client(call.host, call.timeout)) as client:
            result, problem = self._stream(client, call, "/api/generate", call.body)
            self.last_result = result if result.context else self.last_result
            if problem:
                raise UsageError(problem)

    def _chat(self, call: GenerateCall, conversation: Conversation) -> None:
        system = call.system
        if system is None and not conversation.turns:
            system = self.system  # %config OllamaMagics.system starts a new conversation
        body = conversation.request(call.body, system)
        with closing(self._client(call.host, call.timeout)) as client:
            result, problem = self._stream(client, call, "/api/chat", body, chat_pieces)
            if problem:
                raise UsageError(
                    problem.rstrip(".") + ". This turn is not added to the conversation."
                )
            tokens = (result.prompt_eval_count or 0) + (result.eval_count or 0)
            conversation.record(body, result.answer, tokens or None)
            self.conversations[conversation.name] = conversation
            warning = context_warning(conversation.name, tokens, self._num_ctx(client, body))
        if warning:
            print(warning)

    def _num_ctx(self, client: OllamaClient, body: dict[str, Any]) -> int | None:
        return lifecycle.context_window(client, body)

    def _stream(
        self,
        client: OllamaClient,
        call: GenerateCall,
        path: str,
        body: dict[str, Any],
        pieces: Pieces = generate_pieces,
    ) -> tuple[GenerationResult, str | None]:
        """Run one streamed request; return the result and the message for what went wrong."""
        model = str(body["model"])
        if body.get("images") or any(m.get("images") for m in body.get("messages", [])):
            caps = lifecycle.capabilities(client, model)
            if caps is not None and "vision" not in caps:
                raise UsageError(lacking(model, "vision", lifecycle.installed(client)))
        result, error = run(client, path, body, self._sink(call), pieces)
        note = attach_data(result, call.schema_model) if "format" in body else None
        if call.out:
            self.shell.user_ns[call.out] = result
        kept = f" and in {call.out}" if call.out else ""
        problem = outcome(result, error, lambda: lifecycle.installed(client), kept=kept)
        if problem is None and note:
            print(note)
        return result, problem

    # -- line commands --------------------------------------------------------------------

    def _command(self, line: str) -> Any:
        try:
            command = parse_command(line)
        except ArgsError as exc:
            raise UsageError(str(exc)) from None
        try:
            return self._run_command(command)
        except KeyboardInterrupt:  # as a pull does: one line, the kernel goes on
            host = self._shown_host(getattr(command.args, "host", None))
            raise UsageError(_interrupted(f"%ollama {command.name}", host)) from None

    def _run_command(self, command: Command) -> Any:
        try:
            return getattr(self, f"_cmd_{command.name}")(command.args)
        except ArgsError as exc:
            raise UsageError(str(exc)) from None
        except ModelNotFound as exc:  # any command's 404 for a model: one message for all
            raise UsageError(self._not_installed(exc, command.name in OFFER_PULL)) from None
        except OllamaError as exc:
            raise UsageError(describe(exc)) from None

    def _connect(self, args: Any) -> closing[OllamaClient]:
        flag = getattr(args, "timeout", None)
        timeout = None if flag is None else timeout_value(flag, "--timeout")
        return closing(self._client(getattr(args, "host", None), timeout))

    def _bind(self, args: Any, value: Any) -> None:
        out = getattr(args, "out", None)
        if out:
            if not out.isidentifier():
                raise ArgsError(f"-o {out}: not a valid Python variable name")
            self.shell.user_ns[out] = value

    def _not_installed(self, error: ModelNotFound, pull: bool) -> str:
        """The missing model, the closest installed names and (when it helps) the pull hint."""
        with closing(self._client(error.url)) as client:
            names = ModelList(lifecycle.installed(client)).names
        return not_installed(error.model, error.url, names, pull=pull)

    def _cmd_help(self, args: Any) -> None:
        print(command_help(args.command) if args.command else overview())

    def _cmd_models(self, args: Any) -> ModelList:
        with self._connect(args) as client:
            models = lifecycle.list_models(client)
        self._bind(args, models)
        return models

    def _cmd_ps(self, args: Any) -> LoadedList:
        with self._connect(args) as client:
            rows = lifecycle.loaded(client)
        self._bind(args, rows)
        return rows

    def _cmd_show(self, args: Any) -> ModelInfo | None:
        with self._connect(args) as client:
            info = lifecycle.show(client, args.model)
        self._bind(args, info)
        for part in ("modelfile", "template", "parameters", "system", "license"):
            if getattr(args, part):
                print(info.part(part))
                return None
        return info

    def _cmd_load(self, args: Any) -> None:
        keep_alive = keep_alive_value(args.keep_alive) if args.keep_alive else None
        with self._connect(args) as client:
            try:
                report = lifecycle.load(client, args.model, keep_alive, args.num_ctx)
            except ResponseError as exc:
                if unsupported_capability(exc):
                    raise UsageError(
                        f"{args.model} cannot be loaded for generating: {exc.message}. "
                        f"Embedding models load with %ollama embed {args.model} TEXT."
                    ) from None
                raise
        summary = load_summary(args.model, report.seconds, report.row, datetime.now(timezone.utc))
        print(summary + " %ollama ps lists what is loaded.")

    def _cmd_stop(self, args: Any) -> None:
        if not args.model and not args.all:
            raise ArgsError("stop which model? %ollama stop NAME, or %ollama stop --all")
        with self._connect(args) as client:
            names = [n for n in lifecycle.loaded(client).names if n] if args.all else [args.model]
            if args.all and not names:
                print("No model is loaded.")
            for name in names:
                print(unload_summary(name, lifecycle.unload(client, name)))

    def _cmd_cp(self, args: Any) -> None:
        with self._connect(args) as client:
            lifecycle.copy(client, args.source, args.destination)
        print(f"Copied {args.source} to {args.destination}.")

    def _cmd_rm(self, args: Any) -> None:
        with self._connect(args) as client:
            for name in args.models:
                lifecycle.delete(client, name)
                print(f"Deleted {name}.")

    def _progress_view(self) -> lifecycle.ProgressView:
        if self._in_kernel() and self.display not in ("text", "none"):
            return ProgressDisplay(IPythonPublisher())
        return ProgressText()

    def _transfer(self, client: OllamaClient, action: str, body: dict[str, Any]) -> None:
        name = body["model"]
        progress = Progress(action, name, time.monotonic())
        outcome = lifecycle.transfer(
            client, f"/api/{action}", body, progress, self._progress_view()
        )
        if outcome.ok:
            print(progress.summary(time.monotonic()))
            return
        if outcome.interrupted:
            raise UsageError(
                f"Interrupted: the {action} of {name} stopped {progress.stopped()}. "
                "Run the same command again to continue."
            )
        error = outcome.error
        if isinstance(error, (ConnectionFailed, ModelNotFound)):
            raise error  # _command words these for every command
        if action == "push" and "couldn't retrieve manifest" in progress.statuses:
            detail = (getattr(error, "message", None) or str(error)).rstrip(".")
            raise ModelNotFound(name, detail, client.base_url)  # Ollama says so in the stream
        raise UsageError(transfer_failed(action, name, error, body.get("from", "")))

    def _cmd_pull(self, args: Any) -> None:
        with self._connect(args) as client:
            self._transfer(client, "pull", _transfer_body(args))

    def _cmd_push(self, args: Any) -> None:
        with self._connect(args) as client:
            self._transfer(client, "push", _transfer_body(args))

    def _cmd_create(self, args: Any) -> None:
        body: dict[str, Any] = {"model": args.model, "from": args.base}
        if args.system is not None:
            body["system"] = args.system
        if args.template is not None:
            body["template"] = args.template
        if args.license is not None:
            body["license"] = args.license
        parameters: dict[str, Any] = {}
        for pair in args.param:
            key, value = option_pair(pair)
            if key == "stop":
                parameters.setdefault("stop", []).extend(
                    value if isinstance(value, list) else [str(value)]
                )
            else:
                parameters[key] = value
        if parameters:
            body["parameters"] = parameters
        with self._connect(args) as client:
            self._transfer(client, "create", body)

    def _cmd_embed(self, args: Any) -> Any:
        if args.var and args.text:
            raise ArgsError("give the text or --var NAME, not both")
        if args.var:
            if args.var not in self.shell.user_ns:
                raise ArgsError(f"--var {args.var}: no such variable")
            inputs = self.shell.user_ns[args.var]
            if not isinstance(inputs, str) and not (
                isinstance(inputs, (list, tuple)) and all(isinstance(t, str) for t in inputs)
            ):
                raise ArgsError(f"--var {args.var}: it must hold a string or a list of strings")
            inputs = inputs if isinstance(inputs, str) else list(inputs)
        elif args.text:
            inputs = " ".join(args.text)
        else:
            raise ArgsError("embed what? %ollama embed MODEL TEXT, or --var NAME")
        keep_alive = keep_alive_value(args.keep_alive) if args.keep_alive else None
        with self._connect(args) as client:
            answer = lifecycle.embed(
                client, args.model, inputs, dimensions=args.dimensions, keep_alive=keep_alive
            )
        vectors = answer.vectors
        value = _as_array(vectors[0] if isinstance(inputs, str) and vectors else vectors)
        many = len(vectors)
        tokens = answer.tokens
        print(
            f"{many} vector{'s' if many != 1 else ''} of {answer.dimensions} dimensions from "
            f"{answer.model}" + (f" ({tokens} tokens)." if tokens else ".")
        )
        if args.out:
            self._bind(args, value)
            return None
        return value

    def _cmd_use(self, args: Any) -> None:
        if not args.model:
            print(
                f"%%ollama cells use {self.model!r}."
                if self.model
                else "No default model yet: %ollama use NAME sets one."
            )
            return
        self.model = args.model
        text = f"Later %%ollama cells use {args.model}"
        with self._connect(args) as client:
            try:
                lifecycle.show(client, args.model)
            except ModelNotFound:
                raise
            except OllamaError as exc:
                text += f" (not checked: {describe(exc)})"
        print(text + ".")

    def _cmd_host(self, args: Any) -> None:
        if args.url:
            self._client(args.url, setting="%ollama host").close()  # one line if it is no address
            self.host = args.url
        source = (
            "%config OllamaMagics.host"
            if self.host
            else "$OLLAMA_HOST"
            if os.environ.get("OLLAMA_HOST")
            else "the default"
        )
        with self._connect(args) as client:
            status = _server_version(client)
            print(f"Ollama server: {client.base_url} (from {source}); {status}.")

    def _cmd_version(self, args: Any) -> None:
        with self._connect(args) as client:
            print(f"ollama-magic {__version__}; {_server_version(client)} at {client.base_url}.")

    def _cmd_history(self, args: Any) -> Conversation:
        conversation = self.conversations.get(args.conversation)
        if conversation is None:
            conversation = Conversation(args.conversation)
        self._bind(args, conversation)
        return conversation

    def _cmd_reset(self, args: Any) -> None:
        if args.all:
            count = len(self.conversations)
            self.conversations.clear()
            print(f"Forgot {count} conversation{'s' if count != 1 else ''}.")
            return
        gone = self.conversations.pop(args.conversation, None)
        if gone is None or not gone.turns:
            print(f"Conversation '{args.conversation}' was already empty.")
        else:
            turns = len(gone.turns)
            print(
                f"Forgot conversation '{args.conversation}' "
                f"({turns} turn{'s' if turns != 1 else ''})."
            )

    def _cmd_ui(self, args: Any) -> Any:
        """Open an app; it is returned (so shown, and kept with ``-o``)."""
        try:
            from . import widgets

            widgets.require()
        except ImportError:
            print("The apps need ipywidgets: pip install 'ollama-magic[widgets]'")
            return None
        if not self._in_kernel():
            print("The apps are widgets: open them in a notebook (JupyterLab, Notebook, VS Code).")
            return None
        with self._connect(args) as checked:  # the address and timeouts: one line if bad
            connect, read = checked.timeout
        common: dict[str, Any] = {
            "host": args.host or self.host or None,
            "timeout": read,
            "connect_timeout": connect,
        }
        defaults = {  # what %config OllamaMagics sets, as the apps' starting values
            "system": self.system,
            "keep_alive": self.keep_alive,
            "think": self.think,
            "options": dict(self.options),
        }
        app: Any
        if args.app == "models":
            app = widgets.ModelManager(**common)
        elif args.app == "compare":
            app = widgets.Compare(args.model or None, **defaults, **common)
        else:
            app = widgets.Playground(
                args.model[0] if args.model else self.model or None,
                show_thinking=self.show_thinking,
                **defaults,
                **common,
            )
        self._bind(args, app)
        return app


def _install_matcher(completer: Any, complete: Any) -> None:
    """Add ``complete`` as an IPython (v2) matcher, replacing one from an earlier load."""

    def ollama_matcher(context: Any) -> dict[str, Any]:
        return complete(context)

    ollama_matcher.matcher_api_version = 2  # type: ignore[attr-defined]
    completer.custom_matchers[:] = [
        m for m in completer.custom_matchers if getattr(m, "__name__", "") != "ollama_matcher"
    ] + [ollama_matcher]


def _transfer_body(args: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": args.model}
    if args.insecure:
        body["insecure"] = True
    return body


def _server_version(client: OllamaClient) -> str:
    try:
        answer = client.object("GET", "/api/version")
    except ConnectionFailed as exc:
        return f"no answer ({exc.detail or 'unreachable'})"
    except OllamaError as exc:
        return f"it answers, but not as Ollama ({exc})"
    return f"Ollama {text(answer.get('version'), '?')}"


def _interrupted(what: str, host: str) -> str:
    """Ctrl-C while waiting on the server: what stopped, and what to try next."""
    return (
        f"Interrupted: {what} stopped waiting for {host}. If the server is busy or stuck, "
        "try again later, or add --timeout SECONDS to give up sooner."
    )


def _as_array(vectors: Any) -> Any:
    """A numpy array when numpy is installed, else the lists as they came."""
    try:
        import numpy
    except ImportError:
        return vectors
    return numpy.asarray(vectors, dtype=numpy.float32)


OllamaMagics.ollama.__doc__ = (
    PARSER.format_help() + "\nLine commands (%ollama COMMAND):\n\n" + overview() + "\n"
)
