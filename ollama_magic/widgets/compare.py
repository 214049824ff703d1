"""Compare: one prompt, two to four models (or one model at several settings), side by side."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import ipywidgets as w

from ..args import ArgsError, Defaults
from ..result import GenerationResult
from ._base import (
    AnswerView,
    App,
    Connection,
    Generation,
    Option,
    Task,
    close_tree,
    message_html,
    model_options,
    set_options,
    spawn,
)
from .logic import (
    PALETTE,
    capabilities,
    chart_html,
    column_body,
    column_label,
    compare_metrics,
    generating_models,
    model_choices,
)

MIN_COLUMNS, MAX_COLUMNS = 2, 4


class Column:
    """One side of the comparison: a model, its flags, its live answer and its message."""

    def __init__(
        self, index: int, choices: Sequence[Option], model: str = "", flags: str = ""
    ) -> None:
        self.index = index
        self.model_picker = w.Dropdown(
            options=model_options(choices, [model]), layout=w.Layout(width="auto")
        )
        if model:
            self.model_picker.value = model
        self.flags = w.Text(
            value=flags,
            placeholder="flags, e.g. --temperature 0 --think low",
            layout=w.Layout(width="auto"),
        )
        self.output = AnswerView(layout=w.Layout(width="auto", overflow="auto"))
        self.message = w.HTML()
        self.message.add_class("ollama-column-message")
        self.job: Generation | None = None
        colour = PALETTE[index % len(PALETTE)]
        self.box = w.VBox(
            [self.model_picker, self.flags, self.output, self.message],
            layout=w.Layout(
                flex="1 1 0", min_width="0", padding="0 6px", border_top=f"4px solid {colour}"
            ),
        )
        self.box.add_class("ollama-compare-column")

    @property
    def label(self) -> str:
        return column_label(str(self.model_picker.value or ""), self.flags.value)

    @property
    def result(self) -> GenerationResult | None:
        return self.job.result if self.job is not None else None

    def clear(self) -> None:
        """Forget the last run: its answer, its message, its result."""
        self.job = None
        self.output.clear()
        self.message.value = ""


class Compare(App[list[GenerationResult | None]]):
    """Send one prompt to two to four models, watch the answers stream side by side, then
    compare speed, generation time and answer length in a chart.

    **Parameters:** ``columns``, each ``"MODEL"`` or ``"MODEL FLAGS"`` as on a ``%%ollama``
    line (``["qwen3 --think low", "qwen3 --think high"]`` compares one model at two settings);
    ``prompt``; ``host`` (else ``$OLLAMA_HOST``); ``one_at_a_time`` runs the columns one after
    another (fairer timings on one machine); ``timeout``/``connect_timeout`` as in
    ``%config OllamaMagics``; ``system``, ``keep_alive``, ``think`` and ``options`` are
    defaults for every column, as ``%config OllamaMagics`` gives them to ``%%ollama`` cells
    (each column's flags override them). After a run, :attr:`results` holds one
    :class:`~ollama_magic.result.GenerationResult` per column.
    """

    def __init__(
        self,
        columns: Sequence[str] | None = None,
        host: str | None = None,
        *,
        prompt: str = "",
        one_at_a_time: bool = False,
        system: str = "",
        keep_alive: str = "",
        think: str = "",
        options: Mapping[str, Any] | None = None,
        timeout: float = 600.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self.connection = Connection(host, timeout=timeout, connect_timeout=connect_timeout)
        self.defaults = Defaults(
            system=system, keep_alive=keep_alive, think=str(think), options=dict(options or {})
        )
        self.names: list[str] = []
        self.choices: list[Option] = []
        self.columns: list[Column] = []
        self._conductor: threading.Thread | None = None
        self._stopping = False
        super().__init__("ollama-compare")
        self.children = self._build(prompt, one_at_a_time)
        self._guard(self.refresh)()
        specs = list(columns or [])[:MAX_COLUMNS] or self.names[:MIN_COLUMNS]
        for spec in specs:
            model, _, flags = spec.strip().partition(" ")
            self.add_column(model, flags.strip())
        while len(self.columns) < MIN_COLUMNS:
            self.add_column()
        self.connection.subscribe(self)

    def _build(self, prompt: str, one_at_a_time: bool) -> list[w.Widget]:
        """The prompt, the buttons, the row of columns and the chart, wired to their actions."""
        self.prompt = w.Textarea(
            value=prompt,
            placeholder="One prompt for every column",
            layout=w.Layout(width="auto", height="5em"),
        )
        self.run_button = w.Button(description="Run", icon="play", button_style="primary")
        self.stop_button = w.Button(description="Stop", icon="stop", disabled=True)
        self.add_button = w.Button(icon="plus", tooltip="Add a column (up to 4)")
        self.remove_button = w.Button(icon="minus", tooltip="Remove the last column")
        for button in (self.add_button, self.remove_button):
            button.layout.width = "3em"
        self.refresh_button = w.Button(
            icon="refresh", tooltip="Reload the installed models", layout=w.Layout(width="3em")
        )
        self.one_at_a_time = w.Checkbox(
            value=one_at_a_time, description="one at a time (fairer timings)", indent=False
        )
        self.row = w.HBox(layout=w.Layout(width="auto", align_items="flex-start"))
        self.chart = w.HTML()
        self._on_click(self.run_button, self.run)
        self._on_click(self.stop_button, self.stop)
        self._on_click(self.add_button, self.add_column)
        self._on_click(self.remove_button, self.remove_column)
        self._on_click(self.refresh_button, self.refresh)
        buttons = [
            self.run_button,
            self.stop_button,
            self.add_button,
            self.remove_button,
            self.refresh_button,
            self.one_at_a_time,
        ]
        return [self.prompt, w.HBox(buttons), self.row, self.message_line, self.chart]

    # -- public ----------------------------------------------------------------------------

    @property
    def results(self) -> list[GenerationResult | None]:
        return [column.result for column in self.columns]

    def refresh(self) -> None:
        """Reload the installed models into every column's picker."""
        tags = self._tags()
        if tags is None:
            return
        self.names = generating_models(tags)
        self.choices = list(model_choices(self.names, capabilities(tags)))
        for column in self.columns:
            keep = [str(column.model_picker.value or "")]
            set_options(column.model_picker, model_options(self.choices, keep))
        self._say("" if self.names else "The server lists no model that can generate.")

    def add_column(self, model: str = "", flags: str = "") -> Column | None:
        if len(self.columns) >= MAX_COLUMNS:
            self._say(f"At most {MAX_COLUMNS} columns.", "note")
            return None
        if not model and self.names:  # the next model not shown yet, else the first
            shown = {c.model_picker.value for c in self.columns}
            model = next((n for n in self.names if n not in shown), self.names[0])
        column = Column(len(self.columns), self.choices, model, flags)
        self.columns.append(column)
        self._layout()
        return column

    def remove_column(self) -> None:
        if self.running:
            self._say("Stop the run first.", "note")
            return
        if len(self.columns) <= MIN_COLUMNS:
            self._say(f"At least {MIN_COLUMNS} columns.", "note")
            return
        column = self.columns.pop()
        self._layout()
        close_tree(column.box)

    def run(self) -> None:
        """What the Run button does: every column's request, in parallel or one at a time.

        The last run's answers and chart go first, even when this run is refused: what shows
        under the columns is never another run's."""
        if self.running:
            self._say("Still running: press Stop first.", "note")
            return
        self.chart.value = ""
        for column in self.columns:
            column.clear()
        prompt = self.prompt.value
        if not prompt.strip():
            self._say("Write a prompt first.", "error")
            return
        bodies = []
        for column in self.columns:
            model = column.model_picker.value
            if not model:
                self._say(f"Column {column.index + 1}: pick a model.", "error")
                return
            try:
                bodies.append(column_body(str(model), column.flags.value, prompt, self.defaults))
            except ArgsError as exc:
                self._say(f"Column {column.index + 1}: {exc}", "error")
                return
        self._say("")
        for column, body in zip(self.columns, bodies, strict=True):
            column.job = Generation(self.connection, body, column.output, self._ender(column))
        if self.one_at_a_time.value:
            for column in self.columns[1:]:
                column.message.value = message_html(f"waiting for column {column.index}…")
        self._stopping = False
        self._busy(True)
        jobs = [c.job for c in self.columns if c.job is not None]
        self._conductor = spawn(lambda: self._conduct(jobs), self._error, name="ollama-compare")

    def stop(self) -> None:
        """Stop every column now (partial answers stay); columns not started do not start."""
        self._stopping = True
        for column in self.columns:
            if column.job is not None and column.job.thread is not None:
                column.job.stop()

    def __repr__(self) -> str:  # the text a notebook saves for the app: short and stable
        return f"Compare({[column.label for column in self.columns]!r})"

    # -- internals -------------------------------------------------------------------------

    def _tasks(self) -> list[tuple[str, Task]]:
        """The run and its chart."""
        return [("the comparison", self._conductor)] if self._conductor is not None else []

    def _outcome(self) -> list[GenerationResult | None]:
        return self.results

    def _conduct(self, jobs: list[Generation]) -> None:
        started: list[Generation] = []
        try:
            for column, job in zip(self.columns, jobs, strict=False):
                if self._stopping:
                    break
                column.message.value = ""
                job.start()
                started.append(job)
                if self.one_at_a_time.value:
                    job.join()
            for job in started:
                job.join()
        finally:
            self._busy(False)
        for column in self.columns:
            if column.job is not None and column.job not in started:
                column.message.value = message_html("Not run: stopped before its turn.")
        labels = [c.label for c in self.columns]
        results = self.results
        if any(r is not None and (r.answer or r.eval_count) for r in results):
            self.chart.value = chart_html(compare_metrics(labels, results))

    def _ender(self, column: Column) -> Any:
        def ended(result: GenerationResult, message: str | None, failed: bool) -> None:
            column.message.value = message_html(message or "", "error" if failed else "note")

        return ended

    def _layout(self) -> None:
        self.row.children = tuple(c.box for c in self.columns)
        self._busy(self.running)

    def _busy(self, busy: bool) -> None:
        self._running = busy
        self._enable()

    def _enable(self) -> None:
        busy = getattr(self, "_running", False)
        self.run_button.disabled = busy or self.offline or not self.names
        self.stop_button.disabled = not busy
        self.add_button.disabled = busy or len(self.columns) >= MAX_COLUMNS
        self.remove_button.disabled = busy or len(self.columns) <= MIN_COLUMNS
