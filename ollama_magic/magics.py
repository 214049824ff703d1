"""``%%ollama`` and ``%ollama``: thin glue from IPython to :mod:`ollama_magic.session`.

Each magic parses its line (``args``), resolves settings, runs the session, stores the result,
and turns a typed error into a ``UsageError``: one line, no traceback, kernel still usable.
"""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from traitlets import Bool, Dict, Enum, Float, Unicode

from .args import PARSER, ArgsError, Defaults, GenerateCall, build_call, parse_line
from .live import FinalOnly, IPythonPublisher, LiveDisplay, NullSink, Sink, TextSink
from .result import INTERRUPTED, GenerationResult

DISPLAY_MODES = ("auto", "live", "final", "text", "none")


@magics_class
class OllamaMagics(Magics):
    """Magics for local models served by Ollama. Settings: ``%config OllamaMagics``."""

    model = Unicode("", help="Model used when a cell names none, e.g. 'llama3.2'.").tag(
        config=True
    )
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
    connect_timeout = Float(5.0, help="Seconds to wait for the server to accept.").tag(
        config=True
    )

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell, **kwargs)
        self.last_result: GenerationResult | None = None

    @no_var_expand
    @line_cell_magic
    def ollama(self, line: str, cell: str | None = None) -> None:
        if cell is None:
            raise UsageError(
                "%ollama line commands come in a later release; use %%ollama [MODEL] [flags] "
                "with the prompt in the cell body (see %%ollama?)."
            )
        try:
            call = build_call(
                parse_line(line),
                cell,
                self.shell.user_ns,
                self._defaults(),
                self.last_result.context if self.last_result else None,
            )
        except ArgsError as exc:
            raise UsageError(str(exc)) from None
        self._generate(call)

    def _defaults(self) -> Defaults:
        return Defaults(
            model=self.model,
            system=self.system,
            options=dict(self.options),
            keep_alive=self.keep_alive,
            think=self.think,
            interpolate=self.interpolate,
            show_thinking=self.show_thinking,
        )

    def _client(self, host: str | None, timeout: float | None) -> Any:
        from .client import OllamaClient

        try:
            return OllamaClient(
                host or self.host or None,
                connect_timeout=self.connect_timeout,
                read_timeout=timeout or self.timeout,
            )
        except ValueError as exc:
            raise UsageError(f"{exc}: write it like http://127.0.0.1:11434") from None

    def _sink(self, call: GenerateCall) -> Sink:
        mode = self.display
        if call.quiet or mode == "none":
            return NullSink()
        if mode == "auto":
            in_kernel = getattr(self.shell, "kernel", None) is not None
            mode = ("live" if call.stream else "final") if in_kernel else "text"
        if mode == "text":
            return TextSink(show_thinking=call.show_thinking)
        publisher = IPythonPublisher()
        if mode == "final" or not call.stream:
            return FinalOnly(publisher, show_thinking=call.show_thinking)
        return LiveDisplay(publisher, show_thinking=call.show_thinking)

    def _generate(self, call: GenerateCall) -> None:
        from .errors import ModelNotFound
        from .messages import describe
        from .session import attach_data, run

        client = self._client(call.host, call.timeout)
        try:
            result, error = run(client, "/api/generate", call.body, self._sink(call))
            note = attach_data(result, call.schema_model) if "format" in call.body else None
            self.last_result = result if result.context else self.last_result
            if call.out:
                self.shell.user_ns[call.out] = result
            kept = f" and in {call.out}" if call.out else ""
            has_partial = bool(result.answer or result.thinking)
            if result.done_reason == INTERRUPTED:
                raise UsageError(
                    f"Interrupted: the partial answer is kept above{kept}."
                    if has_partial
                    else "Interrupted before the model sent anything."
                )
            if error is None:
                if note:
                    print(note)
                return
            installed: list[str] = []
            if isinstance(error, ModelNotFound):
                installed = _installed_names(client)
            message = describe(error, installed=installed, kept=kept if has_partial else None)
            raise UsageError(message)
        finally:
            client.close()


def _installed_names(client: Any) -> list[str]:
    from .errors import OllamaError

    try:
        return [m.get("name", "") for m in client.tags()]
    except OllamaError:
        return []


OllamaMagics.ollama.__doc__ = PARSER.format_help()
