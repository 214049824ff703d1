"""The Playground: one prompt, every knob of a request, and the answer as the magic shows it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import ipywidgets as w

from ..result import GenerationResult
from ._base import (
    AnswerView,
    App,
    Connection,
    Generation,
    Task,
    hide,
    message_html,
    model_options,
    set_options,
    settings_from,
)
from .logic import (
    CONTROL_OPTIONS,
    SETTINGS,
    THINK_CHOICES,
    capabilities,
    generating_models,
    model_choices,
    request_body,
    think_choice,
    think_choices,
    user_functions,
)


class OptionControl:
    """One request option: a box that says whether it is sent, and its value.

    Unticked, the option is not sent and the model's own default applies: the value is greyed
    out (disabled) and "model default" said beside it; ticking the box makes it active.
    """

    def __init__(self, name: str, field: w.ValueWidget) -> None:
        self.name = name
        self.field = field
        self.check = w.Checkbox(
            value=False,
            description=name,
            indent=False,
            tooltip=f"Send {name} (unticked: the model's own default applies)",
            layout=w.Layout(width="9.5em"),
        )
        field.layout.width = "15em"
        self.note = w.HTML(message_html("model default", "note"))
        self.note.add_class("ollama-option-default")
        field.observe(self._ticked, names="value")  # set from code: it is meant to be sent
        self.check.observe(self._show, names="value")
        self.box = w.HBox([self.check, field, self.note])
        self.box.add_class("ollama-option")
        self._show()

    def _ticked(self, change: dict[str, Any]) -> None:
        self.check.value = True

    def _show(self, change: dict[str, Any] | None = None) -> None:
        on = bool(self.check.value)
        self.field.disabled = not on
        hide(self.note, on)

    @property
    def value(self) -> Any:
        return self.field.value if self.check.value else None

    def set(self, value: Any) -> None:
        if value is None:
            self.check.value = False
        else:
            self.field.value = value
            self.check.value = True


#: The magic's command-line words in a Playground's footer, in its own controls' words.
WORDS = {
    "raise --num-predict": "raise max tokens (num_predict) under Options",
    "raise --num-ctx": "raise num_ctx under Options",
}

#: What to do instead when a model lacks a capability, in the Playground's controls.
ADVICE = {"thinking": "set Think to 'model default'", "tools": "untick the Tools"}


def _fields() -> dict[str, w.ValueWidget]:
    """The option controls, starting at Ollama's usual defaults (shown, not sent)."""
    slider = {"continuous_update": False, "readout": True}
    return {
        "temperature": w.FloatSlider(value=0.8, min=0.0, max=2.0, step=0.05, **slider),
        "top_p": w.FloatSlider(value=0.9, min=0.0, max=1.0, step=0.01, **slider),
        "top_k": w.IntSlider(value=40, min=1, max=200, step=1, **slider),
        "seed": w.IntText(value=42),
        "num_predict": w.BoundedIntText(value=256, min=-2, max=1_000_000),
        "num_ctx": w.BoundedIntText(value=4096, min=256, max=1_048_576, step=1024),
    }


class Playground(App[GenerationResult | None]):
    """Try a model: pick it, write a prompt, turn the knobs, Generate (and Stop).

    **Parameters:** ``model`` to start with; ``host`` (else ``$OLLAMA_HOST``); ``timeout`` and
    ``connect_timeout`` as in ``%config OllamaMagics``; and starting values for the controls:
    ``prompt``, ``system``, ``temperature``, ``top_p``, ``top_k``, ``seed``, ``num_predict``,
    ``num_ctx``, ``keep_alive``, ``think`` (``True``/``False``/a level), ``format``
    (``"json"``), ``options`` (more options, sent as given) and ``show_thinking``.

    **Tools:** the Tools section lists the functions defined in the notebook (or in
    ``namespace``); ticked ones are sent as tools and the turn goes to ``/api/chat``, with the
    calls run (on the app's worker thread) and shown as ``%%ollama --tools`` shows them.
    ``pg.tick("get_weather")`` ticks from code.

    **Usage:** ``pg = Playground("qwen3", temperature=0.2); pg`` then, after Generate,
    ``pg.result`` is the :class:`~ollama_magic.result.GenerationResult` (the magic's ``-o``).
    The request body is exactly what ``%%ollama`` sends for the same settings (``pg.body()``).
    """

    def __init__(
        self,
        model: str | None = None,
        host: str | None = None,
        *,
        timeout: float = 600.0,
        connect_timeout: float = 5.0,
        namespace: Mapping[str, Any] | None = None,
        **defaults: Any,
    ) -> None:
        self._namespace = namespace
        self.tool_boxes: dict[str, w.Checkbox] = {}
        self.job: Generation | None = None
        self.result: GenerationResult | None = None
        self._generating = False
        settings_from(defaults, SETTINGS, "Playground")
        self.connection = Connection(host, timeout=timeout, connect_timeout=connect_timeout)
        self.extra_options: dict[str, Any] = dict(defaults.pop("options", None) or {})
        for key in CONTROL_OPTIONS:  # options that have a control are shown on it
            if key in self.extra_options:
                defaults.setdefault(key, self.extra_options.pop(key))
        self.show_thinking = bool(defaults.pop("show_thinking", True))
        self.caps: dict[str, frozenset[str] | None] = {}
        self.models_listed = False
        super().__init__("ollama-playground")
        self.children = self._build()
        if model:
            defaults["model"] = model
        self._wanted_think = think_choice(defaults.pop("think", None))
        self.set(**defaults)
        self._guard(self.refresh)()
        self.think.value = self._wanted_think if self._wanted_think in self._think_values() else ""
        self.connection.subscribe(self)

    def _build(self) -> list[w.Widget]:
        """The controls, wired to their actions, in the order they are shown."""
        self.model_picker = w.Dropdown(
            description="Model", options=[], layout=w.Layout(width="22em")
        )
        self.refresh_button = w.Button(
            icon="refresh", tooltip="Reload the installed models", layout=w.Layout(width="3em")
        )
        self.system = w.Textarea(
            placeholder="System prompt (optional: the model's own when empty)",
            layout=w.Layout(width="auto", height="3.2em"),
        )
        self.prompt = w.Textarea(placeholder="Prompt", layout=w.Layout(width="auto", height="6em"))
        self.controls = {name: OptionControl(name, field) for name, field in _fields().items()}
        self.keep_alive = w.Text(
            placeholder="model default (e.g. 10m; -1 = forever)",
            description="keep_alive",
            tooltip="How long the model stays loaded after answering: 10m, 1h, -1 (forever), 0",
            style={"description_width": "6em"},
            layout=w.Layout(width="24.5em"),
        )
        self.think = w.Dropdown(
            options=THINK_CHOICES,
            value="",
            description="Think",
            style={"description_width": "6em"},
            layout=w.Layout(width="18em"),
        )
        self.model_picker.observe(self._model_picked, names="value")
        self.think.observe(self._think_picked, names="value")
        self.format = w.ToggleButtons(
            options=["none", "json"],
            value="none",
            description="format",
            style={"button_width": "5em"},
        )
        self.generate_button = w.Button(
            description="Generate",
            button_style="primary",
            icon="play",
            tooltip="Send the prompt (runs in the background: the notebook stays usable)",
        )
        self.stop_button = w.Button(
            description="Stop",
            icon="stop",
            disabled=True,
            tooltip="Close the stream now; the partial answer stays",
        )
        self.tools = w.VBox()
        self.tools.add_class("ollama-tools")
        self._list_tools()
        self.status = w.HTML()
        self.output = AnswerView(layout=w.Layout(width="auto", min_height="2em"))
        self._on_click(self.refresh_button, self.refresh)
        self._on_click(self.generate_button, self.generate)
        self._on_click(self.stop_button, self.stop)
        options = w.GridBox(
            [*(c.box for c in self.controls.values()), self.keep_alive, self.think, self.format],
            layout=w.Layout(grid_template_columns="repeat(2, max-content)", grid_gap="2px 24px"),
        )
        return [
            w.HBox([self.model_picker, self.refresh_button]),
            self.system,
            self.prompt,
            w.Accordion([options, self.tools], titles=("Options", "Tools"), selected_index=None),
            w.HBox([self.generate_button, self.stop_button, self.status]),
            self.output,
            self.message_line,
        ]

    # -- public ----------------------------------------------------------------------------

    def refresh(self) -> None:
        """Fill the model picker from the server (keeping the current choice), each model
        labelled with what it can do; the think choices follow the picked model."""
        self._list_tools()
        tags = self._tags()
        if tags is None:
            return
        names = generating_models(tags)
        self.caps = capabilities(tags)
        self.models_listed = bool(names)
        choices = model_options(model_choices(names, self.caps), [self.model_picker.value or ""])
        set_options(self.model_picker, choices)
        self._model_picked()
        if not names:
            self._say("The server lists no model that can generate: pull one first.", "note")
        elif not self.running:
            self._say("")
        self._enable()

    def set(self, **values: Any) -> None:
        """Set controls by name (``model``, ``prompt``, ``temperature``…; ``None`` unsets an
        option)."""
        known = ("model", *(s for s in SETTINGS if s not in ("options", "show_thinking")))
        settings_from(values, known, "Playground.set")
        for key, value in values.items():
            if key == "model":
                options = model_options(self.model_picker.options, [value])
                set_options(self.model_picker, options, prefer=value)
            elif key in self.controls:
                self.controls[key].set(value)
            elif key == "think":
                self._wanted_think = think_choice(value)
                if self._wanted_think in self._think_values():
                    self.think.value = self._wanted_think
            elif key == "format":
                self.format.value = value or "none"
            elif key in ("prompt", "system", "keep_alive"):
                getattr(self, key).value = "" if value is None else str(value)

    def tick(self, *names: str) -> None:
        """Tick these functions as tools (the list is read again from the namespace first)."""
        self._list_tools()
        for name in names:
            if name not in self.tool_boxes:
                known = ", ".join(self.tool_boxes) or "none defined yet"
                raise ValueError(f"Playground.tick: no function {name!r} (functions: {known})")
            self.tool_boxes[name].value = True

    def functions(self) -> dict[str, Callable[..., Any]]:
        """The ticked functions, by name: what Generate offers the model as tools."""
        namespace = self._user_namespace()
        return {
            name: namespace[name]
            for name, box in self.tool_boxes.items()
            if box.value and callable(namespace.get(name))
        }

    def settings(self) -> dict[str, Any]:
        """The controls that are set, as :func:`~ollama_magic.widgets.logic.request_body` takes
        them."""
        out: dict[str, Any] = {
            name: c.value for name, c in self.controls.items() if c.value is not None
        }
        for key, value in (
            ("system", self.system.value),
            ("keep_alive", self.keep_alive.value.strip()),
            ("think", self.think.value),
            ("format", "" if self.format.value == "none" else self.format.value),
        ):
            if value:
                out[key] = value
        return out

    def body(self) -> dict[str, Any]:
        """The request the Generate button sends."""
        return request_body(
            self.model_picker.value or "", self.prompt.value, self.settings(), self.extra_options
        )

    def generate(self) -> None:
        """What the Generate button does; refused while a generation runs."""
        if self.running:
            self._say("Still generating: press Stop first.", "note")
            return
        if not self.model_picker.value:
            self._say("Pick a model first (the ↻ button reloads the list).", "error")
            return
        if not self.prompt.value.strip():
            self._say("Write a prompt first.", "error")
            return
        body = self.body()
        self._say("")
        self.job = Generation(
            self.connection,
            body,
            self.output,
            self._ended,
            show_thinking=self.show_thinking,
            words=WORDS,
            advice=ADVICE,
            functions=self.functions(),
        )
        self._busy(True)
        self.job.start()

    def stop(self) -> None:
        """What the Stop button does: close the stream now; the partial answer stays."""
        if self.job is not None:
            self.job.stop()

    def __repr__(self) -> str:  # the text a notebook saves for the app: short and stable
        return f"Playground(model={self.model_picker.value!r})"

    # -- internals -------------------------------------------------------------------------

    def _user_namespace(self) -> Mapping[str, Any]:
        if self._namespace is not None:
            return self._namespace
        from IPython import get_ipython

        shell = get_ipython()
        return shell.user_ns if shell is not None else {}

    def _list_tools(self) -> None:
        """One tick box per function in the namespace, keeping what was ticked."""
        names = user_functions(self._user_namespace())
        if list(self.tool_boxes) == names:
            return
        ticked = {name for name, box in self.tool_boxes.items() if box.value}
        self.tool_boxes = {
            name: w.Checkbox(
                value=name in ticked,
                description=name,
                indent=False,
                tooltip=f"Offer {name}() to the model as a tool",
            )
            for name in names
        }
        empty = w.HTML(
            message_html("Define a function in the notebook, then press ↻ to list it.", "note")
        )
        self.tools.children = list(self.tool_boxes.values()) or [empty]

    def _tasks(self) -> list[tuple[str, Task]]:
        return [("the generation", self.job)] if self.job is not None else []

    def _outcome(self) -> GenerationResult | None:
        return self.result

    def _ended(self, result: GenerationResult, message: str | None, failed: bool) -> None:
        self.result = result
        self._busy(False)
        self._say(message or "", "error" if failed else "note")

    def _busy(self, busy: bool) -> None:
        self._generating = busy
        self._enable()
        self.status.value = message_html("Generating…", "note") if busy else ""

    def _enable(self) -> None:
        busy = getattr(self, "_generating", False)
        self.generate_button.disabled = busy or self.offline or not self.model_picker.value
        self.stop_button.disabled = not busy

    def _think_values(self) -> list[str]:
        return [value for _, value in self.think.options]

    def _think_picked(self, change: dict[str, Any]) -> None:
        """Remember the user's think choice, to restore it for a model that can think."""
        if len(self.think.options) > 1:
            self._wanted_think = change["new"]

    def _model_picked(self, change: dict[str, Any] | None = None) -> None:
        """Offer only the think choices the picked model can take."""
        caps = self.caps.get(str(self.model_picker.value or "")) if self.caps else None
        choices = think_choices(caps)
        if tuple(self.think.options) != choices:
            wanted = self._wanted_think
            self.think.options = choices
            self.think.value = wanted if wanted in self._think_values() else ""
        can = caps is None or "thinking" in caps
        self.think.tooltip = (
            "How much the model reasons before it answers"
            if can
            else f"{self.model_picker.value} cannot think: only its default applies"
        )
        self.think.disabled = len(choices) == 1
        self._enable()


__all__ = ["OptionControl", "Playground"]
