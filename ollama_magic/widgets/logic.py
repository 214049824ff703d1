"""The pure parts of the notebook apps: control values to request bodies, results to a chart.

No widgets and no I/O here, so it is all tested as plain functions. Request bodies are built by
the magic's own parser and :func:`~ollama_magic.args.build_call`: an app sends exactly what the
equivalent ``%%ollama`` cell would send.
"""

from __future__ import annotations

import html
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..args import (
    PARSER,
    ArgsError,
    Defaults,
    attach_dash_values,
    build_call,
    conversation_name,
    split_line,
    think_value,
)
from ..fields import text, texts
from ..present import human_bytes, human_rate, short_name
from ..progress import Progress
from ..result import GenerationResult

#: The options the Playground has a control for, in the order they are shown.
CONTROL_OPTIONS = ("temperature", "top_p", "top_k", "seed", "num_predict", "num_ctx")

#: Everything ``Playground(**defaults)`` accepts besides ``model`` and ``host``.
SETTINGS = (
    "prompt",
    "system",
    *CONTROL_OPTIONS,
    "keep_alive",
    "think",
    "format",
    "options",
    "show_thinking",
)

#: The think control: label and value (``""`` sends nothing, so the model decides).
THINK_CHOICES = (
    ("model default", ""),
    ("off", "false"),
    ("on", "true"),
    ("low", "low"),
    ("medium", "medium"),
    ("high", "high"),
    ("max", "max"),
)


def think_choice(value: Any) -> str:
    """A ``think`` setting (bool, level or text, as ``%config OllamaMagics.think`` takes it) as
    the think control's value.

    >>> think_choice(None), think_choice(True), think_choice("off"), think_choice("High")
    ('', 'true', 'false', 'high')
    """
    if value is None or value == "":
        return ""
    chosen = think_value(value)
    return str(chosen).lower() if isinstance(chosen, bool) else chosen


def generating_models(tags: Sequence[Mapping[str, Any]]) -> list[str]:
    """Installed models that can generate text (embedding-only models cannot), short names.

    >>> generating_models([{"name": "echo:latest", "capabilities": ["completion"]},
    ...                    {"name": "embedder:latest", "capabilities": ["embedding"]},
    ...                    {"name": "old:7b"}])
    ['echo', 'old:7b']
    """
    names = []
    for model in tags:
        caps = model.get("capabilities")
        if isinstance(caps, list) and "completion" not in texts(caps):
            continue
        names.append(short_name(text(model.get("name"))))
    return [n for n in names if n]


#: What a model can do besides generating text, as the model pickers say it.
CAPABILITY_LABELS = (("thinking", "thinks"), ("vision", "sees images"))


def capabilities(tags: Sequence[Mapping[str, Any]]) -> dict[str, frozenset[str] | None]:
    """Each installed model's capabilities by short name (``None``: the server does not say).

    >>> caps = capabilities([{"name": "qwen3:latest", "capabilities": ["completion", "thinking"]},
    ...                      {"name": "old:7b"}])
    >>> sorted(caps["qwen3"] or ()), caps["old:7b"]
    (['completion', 'thinking'], None)
    """
    out: dict[str, frozenset[str] | None] = {}
    for model in tags:
        name = short_name(text(model.get("name")))
        caps = model.get("capabilities")
        if name:
            out[name] = frozenset(texts(caps)) if isinstance(caps, list) else None
    return out


def model_label(name: str, caps: frozenset[str] | None) -> str:
    """A model as its picker shows it: its name, and whether it thinks or sees images.

    >>> model_label("qwen3", frozenset({"completion", "thinking", "vision"}))
    'qwen3 · thinks · sees images'
    >>> model_label("echo", None)
    'echo'
    """
    said = [label for capability, label in CAPABILITY_LABELS if capability in (caps or ())]
    return " · ".join([name, *said])


def model_choices(
    names: Sequence[str], caps: Mapping[str, frozenset[str] | None]
) -> list[tuple[str, str]]:
    """A model picker's ``(label, name)`` options.

    >>> model_choices(["qwen3", "echo"], {"qwen3": frozenset({"thinking"})})
    [('qwen3 · thinks', 'qwen3'), ('echo', 'echo')]
    """
    return [(model_label(name, caps.get(name)), name) for name in names]


def think_choices(caps: frozenset[str] | None) -> tuple[tuple[str, str], ...]:
    """The think control's choices for a model: every one when it can think (or the server
    does not say), else only "model default" (anything else would be refused).

    >>> [v for _, v in think_choices(frozenset({"completion"}))]
    ['']
    >>> len(think_choices(frozenset({"thinking"}))) == len(THINK_CHOICES)
    True
    """
    if caps is None or "thinking" in caps:
        return THINK_CHOICES
    return THINK_CHOICES[:1]


def request_body(
    model: str,
    prompt: str,
    settings: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``/api/generate`` body for the Playground's controls: what ``%%ollama`` would send.

    ``settings`` holds the controls that are set (``None`` or ``""`` means "not set": the
    model's own default applies); ``options`` are further options sent as they are, like
    ``%config OllamaMagics.options``.

    >>> request_body("thinker", "Hi", {"temperature": 0.2, "think": "low", "keep_alive": "10m"})
    ... # doctest: +NORMALIZE_WHITESPACE
    {'model': 'thinker', 'prompt': 'Hi', 'options': {'temperature': 0.2}, 'stream': True,
     'keep_alive': '10m', 'think': 'low'}
    """
    settings = settings or {}
    ns = PARSER.parse_args([])  # every flag at its default, as on a bare `%%ollama` line
    ns.model = model
    ns.literal = True  # a prompt typed in a text box is sent as typed
    for key in CONTROL_OPTIONS:
        setattr(ns, key, settings.get(key))
    if settings.get("system"):
        ns.system = settings["system"]
    if settings.get("keep_alive") not in (None, ""):
        ns.keep_alive = str(settings["keep_alive"])
    think = think_choice(settings.get("think"))
    if think == "false":
        ns.no_think = True
    elif think:
        ns.think = True if think == "true" else think
    if settings.get("format") not in (None, "", "none"):
        ns.format = str(settings["format"])
    return build_call(ns, prompt, {}, Defaults(model=model, options=dict(options or {}))).body


def user_functions(namespace: Mapping[str, Any]) -> list[str]:
    """Functions the user defined in the notebook, by name, that the Playground offers as
    tools: not modules, classes, imported functions or IPython's own.

    >>> def f(x): pass
    >>> f.__module__ = "__main__"
    >>> import os
    >>> user_functions({"f": f, "os": os, "join": os.path.join, "_g": f, "n": 1})
    ['f']
    """
    return sorted(
        name
        for name, value in namespace.items()
        if not name.startswith("_")
        and inspect.isfunction(value)
        and getattr(value, "__module__", None) == "__main__"
        and value.__name__.isidentifier()
    )


def chat_request(body: Mapping[str, Any]) -> dict[str, Any]:
    """The Playground's ``/api/generate`` body as the one-turn ``/api/chat`` body a tool call
    needs (``%%ollama --tools`` sends the same for a first turn).

    >>> chat_request({"model": "m", "prompt": "Hi", "system": "Be brief.", "stream": True})
    ... # doctest: +NORMALIZE_WHITESPACE
    {'model': 'm', 'messages': [{'role': 'system', 'content': 'Be brief.'},
     {'role': 'user', 'content': 'Hi'}], 'stream': True}
    """
    from ..chat import Conversation

    return Conversation().request(dict(body), body.get("system"))


def column_body(
    model: str, flags: str, prompt: str, defaults: Defaults | None = None
) -> dict[str, Any]:
    """A Compare column: the model, plus flags written as on a ``%%ollama`` line (``defaults``
    as ``%config OllamaMagics`` gives them, which the flags override).

    >>> column_body("thinker", "--think low --temperature 0", "Hi")
    ... # doctest: +NORMALIZE_WHITESPACE
    {'model': 'thinker', 'prompt': 'Hi', 'options': {'temperature': 0.0}, 'stream': True,
     'think': 'low'}
    >>> column_body("echo", "--chat", "Hi")
    Traceback (most recent call last):
    ...
    ollama_magic.args.ArgsError: --chat: a comparison sends single prompts, not conversations
    """
    tokens = split_line(flags)
    ns = PARSER.parse_args(attach_dash_values(tokens, PARSER))
    if ns.model:
        raise ArgsError(f"{ns.model!r}: write only flags here; the model is picked above")
    if conversation_name(ns) is not None:
        raise ArgsError("--chat: a comparison sends single prompts, not conversations")
    ns.model = model
    ns.literal = True
    return build_call(ns, prompt, {}, defaults or Defaults()).body


def column_label(model: str, flags: str) -> str:
    """How a column is named in the chart.

    >>> column_label("thinker", " --think low "), column_label("echo", "")
    ('thinker --think low', 'echo')
    """
    flags = " ".join(flags.split())
    return f"{model} {flags}" if flags else model


def transfer_status(progress: Progress) -> str:
    """The line under a pull's progress bar.

    >>> p = Progress("pull", "m", 0.0)
    >>> p.feed({"status": "pulling abc", "digest": "sha256:abc", "total": 400,
    ...         "completed": 100}, 1.0)
    >>> transfer_status(p)
    'pulling abc · 25% · 100 B of 400 B'
    """
    parts = [progress.status] if progress.status else []
    if progress.total:
        share = progress.fraction * 100
        parts.append(
            f"{share:.0f}% · {human_bytes(progress.completed)} of {human_bytes(progress.total)}"
        )
    rate = progress.rate()
    if rate > 0 and not progress.succeeded:
        parts.append(human_rate(rate))
    return " · ".join(parts)


# -- the comparison chart ------------------------------------------------------------------

#: One colour per column, the same in the chart and on the column's header.
PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#b279a2")


@dataclass(frozen=True)
class Bar:
    """One column's value for one metric; ``value`` is ``None`` when there is nothing to show."""

    label: str
    value: float | None
    text: str


@dataclass(frozen=True)
class Metric:
    """One group of bars: a measure, and whether more is better (said in the title)."""

    title: str
    bars: tuple[Bar, ...]

    def fraction(self, bar: Bar) -> float:
        """The bar's length as a share of the longest bar of this metric."""
        top = max((b.value or 0.0 for b in self.bars), default=0.0)
        return (bar.value or 0.0) / top if top > 0 else 0.0


def _words(result: GenerationResult) -> int:
    return len(result.answer.split())


def compare_metrics(
    labels: Sequence[str], results: Sequence[GenerationResult | None]
) -> list[Metric]:
    """Tokens per second, eval time and answer length for each column (``None``: it did not run).

    >>> r = GenerationResult("m", answer="one two three", eval_count=30, eval_duration=2 * 10**9)
    >>> [[b.text for b in m.bars] for m in compare_metrics(["a", "b"], [r, None])]
    [['15.0 tokens/s', '–'], ['2.00 s', '–'], ['3 words', '–']]
    """

    def bars(measure: Any, text: Any) -> tuple[Bar, ...]:
        out = []
        for label, result in zip(labels, results, strict=True):
            value = measure(result) if result is not None else None
            out.append(Bar(label, value, text(value) if value is not None else "–"))
        return tuple(out)

    return [
        Metric(
            "Speed (tokens/s, higher is faster)",
            bars(lambda r: r.tokens_per_second, lambda v: f"{v:.1f} tokens/s"),
        ),
        Metric(
            "Generation time (eval, seconds)",
            bars(
                lambda r: r.eval_duration / 1e9 if r.eval_duration else None,
                lambda v: f"{v:.2f} s",
            ),
        ),
        Metric(
            "Answer length (words, reasoning not counted)",
            bars(lambda r: float(_words(r)) if r.answer else None, lambda v: f"{v:.0f} words"),
        ),
    ]


def chart_html(metrics: Sequence[Metric], *, width: int = 720) -> str:
    """The metrics as horizontal SVG bars, one colour per column; every label is escaped.

    >>> svg = chart_html(compare_metrics(["<b>", "x"], [GenerationResult("m", answer="a b"), None]))
    >>> svg.count("<rect"), "&lt;b&gt;" in svg, "<b>" in svg
    (1, True, False)
    """
    label_width, value_width, row, gap = 280, 110, 20, 14
    bar_space = width - label_width - value_width
    parts: list[str] = []
    y = 0
    for metric in metrics:
        y += 18
        parts.append(
            f'<text x="0" y="{y}" font-weight="bold" font-size="13">'
            f"{html.escape(metric.title)}</text>"
        )
        y += 6
        for index, bar in enumerate(metric.bars):
            label = bar.label if len(bar.label) <= 44 else bar.label[:43] + "…"
            middle = y + row / 2 + 4
            parts.append(
                f'<text x="{label_width - 8}" y="{middle}" text-anchor="end" font-size="12">'
                f"{html.escape(label)}</text>"
            )
            length = metric.fraction(bar) * bar_space
            if bar.value:
                colour = PALETTE[index % len(PALETTE)]
                parts.append(
                    f'<rect x="{label_width}" y="{y + 3}" width="{max(length, 1):.1f}" '
                    f'height="{row - 6}" fill="{colour}" rx="2"><title>'
                    f"{html.escape(bar.label)}: {html.escape(bar.text)}</title></rect>"
                )
            parts.append(
                f'<text x="{label_width + length + 6:.1f}" y="{middle}" font-size="12">'
                f"{html.escape(bar.text)}</text>"
            )
            y += row
        y += gap
    return (
        f'<svg class="ollama-chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{y}" viewBox="0 0 {width} {y}" font-family="sans-serif" '
        f'fill="currentColor">{"".join(parts)}</svg>'
    )
