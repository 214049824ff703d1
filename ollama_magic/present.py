"""Tables and cards for the ``%ollama`` line commands. Pure: server data in, text and HTML out.

Each command's answer is a small object a user can keep (``models = %ollama models``) that shows
itself as an HTML table in a notebook and as aligned text in a terminal, like ``ollama list``.
Times are passed in, so every rendering is a function of its inputs and is tested as such.
Server fields are read through :mod:`ollama_magic.fields`: a wrong type shows as ``?`` or an
empty cell, and every string that reaches HTML is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, ClassVar

from .fields import count, mapping, text, texts
from .fields import rows as objects

FOREVER_AFTER = 20 * 365 * 24 * 3600  # seconds: the Ollama CLI prints "Forever" past 20 years


def short_name(name: str) -> str:
    """A model name as people type it: ``:latest`` is what a bare name means.

    >>> short_name("echo:latest"), short_name("qwen3:8b")
    ('echo', 'qwen3:8b')
    """
    return name.removesuffix(":latest")


def human_bytes(size: Any) -> str:
    """Bytes in decimal units, as the Ollama CLI prints them; ``?`` for what is not a size.

    >>> human_bytes(0), human_bytes(950), human_bytes(8_000_000), human_bytes(4_661_211_808)
    ('0 B', '950 B', '8.0 MB', '4.7 GB')
    >>> human_bytes("abc"), human_bytes(-1), human_bytes(None)
    ('?', '?', '?')
    """
    known = count(size)
    if known is None:
        return "?"
    value = float(known)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def human_rate(bytes_per_second: float) -> str:
    """Bytes per second in decimal units.

    >>> human_rate(12_500_000)
    '12.5 MB/s'
    """
    return human_bytes(bytes_per_second) + "/s"


def _span(seconds: float) -> str:
    """A duration in the largest unit it rounds to at least one of (``24h`` is "1 day").

    >>> [_span(s) for s in (29.7, 3599.9, 86399, 90 * 60, 400 * 86400)]
    ['30 s', '1 hour', '1 day', '2 hours', '1 year']
    """
    seconds = abs(seconds)
    if seconds < 59.5:
        return f"{round(seconds)} s"
    units = (("min", 60, 60), ("hour", 3600, 24), ("day", 86400, 30), ("month", 30 * 86400, 12))
    for unit, size, limit in units:
        count = round(seconds / size)
        if count < limit:
            return f"{count} {unit}{'' if count == 1 or unit == 'min' else 's'}"
    count = round(seconds / (365 * 86400))
    return f"{count} year{'' if count == 1 else 's'}"


def ago(then: datetime | None, now: datetime) -> str:
    """How long ago, in the CLI's words.

    >>> now = datetime(2026, 1, 10, tzinfo=timezone.utc)
    >>> ago(datetime(2026, 1, 7, tzinfo=timezone.utc), now), ago(now, now)
    ('3 days ago', 'just now')
    """
    if then is None:
        return ""
    seconds = (now - then).total_seconds()
    return "just now" if seconds < 1 else f"{_span(seconds)} ago"


def until(expires: datetime | None, now: datetime) -> str:
    """When a loaded model unloads: ``in 4 min``, ``forever``, or ``stopping…`` once past.

    >>> now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> until(datetime(2026, 1, 1, 0, 4, 10, tzinfo=timezone.utc), now)
    'in 4 min'
    >>> until(datetime(2318, 1, 1, tzinfo=timezone.utc), now), until(now, now)
    ('forever', 'stopping…')
    """
    if expires is None:
        return ""
    seconds = (expires - now).total_seconds()
    if seconds > FOREVER_AFTER:
        return "forever"
    if seconds <= 0:
        return "stopping…"
    return f"in {_span(seconds)}"


def load_summary(name: str, seconds: float, row: dict[str, Any] | None, now: datetime) -> str:
    """What a load did, with its ``/api/ps`` row when listed.

    >>> now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> load_summary("m", 0.5, {"size": 8e6, "expires_at": "2026-01-01T00:05:00Z"}, now)
    'Loaded m in 0.50 s (8.0 MB in memory); it unloads in 5 min.'
    """
    said = f"Loaded {name} in {seconds:.2f} s"
    if row:
        left = until(parse_time(row.get("expires_at")), now)
        stays = (
            "it stays loaded forever"
            if left == "forever"
            else f"it unloads {left}"
            if left
            else "the server does not say when it unloads"
        )
        said += f" ({human_bytes(row.get('size'))} in memory); {stays}"
    return said + "."


def unload_summary(name: str, row: dict[str, Any] | None) -> str:
    """What an unload did, given the model's ``/api/ps`` row from before (``None``: not loaded).

    >>> unload_summary("m", {"size": 8e6}), unload_summary("m", None)
    ('Unloaded m (8.0 MB freed).', 'm was not loaded.')
    """
    if row is None:
        return f"{name} was not loaded."
    size = human_bytes(row.get("size"))
    return f"Unloaded {name} ({size} freed)." if size != "?" else f"Unloaded {name}."


def parse_time(stamp: Any) -> datetime | None:
    """An Ollama timestamp (RFC 3339 with nanoseconds), or ``None`` if absent or unreadable.

    >>> parse_time("2026-01-01T10:00:00.123456789+01:00").isoformat()
    '2026-01-01T10:00:00.123456+01:00'
    >>> parse_time(5), parse_time("9999-12-31T23:59:59-01:00")
    (None, None)
    """
    if not isinstance(stamp, str) or not stamp:
        return None
    value = stamp.strip().replace("Z", "+00:00")
    head, dot, rest = value.partition(".")
    if dot:  # Python reads at most 6 fraction digits
        digits = len(rest) - len(rest.lstrip("0123456789"))
        value = f"{head}.{rest[:digits][:6].ljust(6, '0')}{rest[digits:]}"
    try:
        parsed = datetime.fromisoformat(value)
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
        parsed.astimezone(timezone.utc)  # a time past year 9999 in UTC cannot be compared
    except (ValueError, OverflowError):
        return None
    return parsed


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, four spaces apart, as ``ollama list`` prints them.

    >>> print(text_table(["NAME", "SIZE"], [["echo:latest", "8.0 MB"]]))
    NAME           SIZE
    echo:latest    8.0 MB
    """
    rows = [[" ".join(str(cell).split()) for cell in row] for row in rows]  # one line each
    columns = zip(headers, *rows, strict=False)
    widths = [max(len(str(cell)) for cell in column) for column in columns]
    lines = [
        "    ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in (headers, *rows)
    ]
    return "\n".join(lines)


def html_table(headers: Sequence[str], rows: Sequence[Sequence[str]], empty: str) -> str:
    """An escaped HTML table (server text is not trusted either)."""
    if not rows:
        return f"<p><i>{html.escape(empty)}</i></p>"
    head = "".join(f"<th style='text-align:left'>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f"<td style='text-align:left'>{html.escape(str(c))}</td>" for c in row)
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


@dataclass(repr=False)
class _Shown:
    """A table of server rows (``.models``), rendered as aligned text and as HTML."""

    models: list[dict[str, Any]]
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    headers: ClassVar[tuple[str, ...]] = ()
    empty: ClassVar[str] = "nothing to show"

    def __post_init__(self) -> None:
        self.models = objects(self.models)  # what a server sent: objects only

    @property
    def names(self) -> list[str]:
        return [text(m.get("name")) for m in self.models]

    def __len__(self) -> int:
        return len(self.models)

    def rows(self) -> list[list[str]]:
        raise NotImplementedError

    def __repr__(self) -> str:
        rows = self.rows()
        return text_table(self.headers, rows) if rows else self.empty

    def _repr_html_(self) -> str:
        return html_table(self.headers, self.rows(), self.empty)


@dataclass(repr=False)
class ModelList(_Shown):
    """``%ollama models``: what ``/api/tags`` lists; ``.models`` holds the server's dicts."""

    headers: ClassVar[tuple[str, ...]] = (
        "NAME",
        "SIZE",
        "FAMILY",
        "PARAMETERS",
        "QUANTIZATION",
        "CAPABILITIES",
        "MODIFIED",
    )
    empty: ClassVar[str] = "No models installed yet: get one with %ollama pull NAME."

    def rows(self) -> list[list[str]]:
        out = []
        for model in self.models:
            details = mapping(model.get("details"))
            out.append(
                [
                    text(model.get("name")),
                    human_bytes(model.get("size")),
                    text(details.get("family")),
                    text(details.get("parameter_size")),
                    text(details.get("quantization_level")),
                    ", ".join(texts(model.get("capabilities"))),
                    ago(parse_time(model.get("modified_at")), self.now),
                ]
            )
        return out


def processor(size: int, size_vram: int) -> str:
    """Where a loaded model runs, as ``ollama ps`` says it.

    >>> processor(100, 0), processor(100, 100), processor(100, 25)
    ('100% CPU', '100% GPU', '75%/25% CPU/GPU')
    """
    if size <= 0 or size_vram <= 0:
        return "100% CPU"
    if size_vram >= size:
        return "100% GPU"
    gpu = round(size_vram / size * 100)
    return f"{100 - gpu}%/{gpu}% CPU/GPU"


@dataclass(repr=False)
class LoadedList(_Shown):
    """``%ollama ps``: loaded models, their memory and when each unloads."""

    headers: ClassVar[tuple[str, ...]] = ("NAME", "SIZE", "VRAM", "PROCESSOR", "CONTEXT", "UNLOADS")
    empty: ClassVar[str] = "No model is loaded. %ollama load NAME loads one."

    def rows(self) -> list[list[str]]:
        out = []
        for model in self.models:
            size, vram = count(model.get("size")), count(model.get("size_vram"))
            context = count(model.get("context_length"))
            out.append(
                [
                    text(model.get("name")),
                    human_bytes(size),
                    human_bytes(vram),
                    processor(size, vram) if size is not None and vram is not None else "?",
                    str(context) if context else "",
                    until(parse_time(model.get("expires_at")), self.now),
                ]
            )
        return out


def context_length(info: dict[str, Any]) -> int | None:
    """The trained context length from ``/api/show``'s ``model_info``."""
    for key, value in mapping(info.get("model_info")).items():
        if key.endswith(".context_length") and count(value):
            return count(value)
    return None


def _first_lines(text: str, count: int) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    more = " …" if len(lines) > count else ""
    return "\n".join(lines[:count]) + more


@dataclass(repr=False)
class ModelInfo:
    """``%ollama show NAME``: the ``ollama show`` card; ``.info`` is the server's whole answer."""

    name: str
    info: dict[str, Any]

    def __post_init__(self) -> None:
        self.info = mapping(self.info)

    @property
    def capabilities(self) -> list[str]:
        return texts(self.info.get("capabilities"))

    def part(self, name: str) -> str:
        """One text part (``modelfile``, ``template``, ``parameters``, ``system``, ``license``);
        ``""`` when absent or not text."""
        return text(self.info.get(name))

    def sections(self) -> list[tuple[str, list[tuple[str, str]]]]:
        """(title, [(key, value)]) in the order ``ollama show`` prints them."""
        details = mapping(self.info.get("details"))
        architecture = mapping(self.info.get("model_info")).get("general.architecture")
        model: list[tuple[str, str]] = [
            ("architecture", text(architecture) or text(details.get("family"))),
            ("parameters", text(details.get("parameter_size"))),
            ("context length", str(context_length(self.info) or "")),
            ("quantization", text(details.get("quantization_level"))),
        ]
        known = [(k, v) for k, v in model if v]
        sections = [("Model", known)] if known else []
        if self.capabilities:
            sections.append(("Capabilities", [(c, "") for c in self.capabilities]))
        params = []
        for line in self.part("parameters").splitlines():
            key, _, value = line.strip().partition(" ")
            if key:
                params.append((key, value.strip()))
        if params:
            sections.append(("Parameters", params))
        for title, lines in (("System", 3), ("Template", 3), ("License", 2)):
            shown = _first_lines(self.part(title.lower()), lines)
            if shown:
                sections.append((title, [(shown, "")]))
        return sections

    def __repr__(self) -> str:
        out: list[str] = []
        for title, rows in self.sections():
            out.append(f"  {title}")
            width = max(len(k) for k, _ in rows)
            for key, value in rows:
                shown = f"{key.ljust(width)}    {value}".rstrip() if value else key
                out.extend("    " + line for line in shown.splitlines())
            out.append("")
        return "\n".join(out).rstrip()

    def _repr_html_(self) -> str:
        parts = [f"<b>{html.escape(self.name)}</b>"]
        for title, rows in self.sections():
            if title == "Template":  # shown whole, folded, below
                continue
            cells = "".join(
                f"<tr><td style='text-align:left'>{html.escape(k)}</td>"
                f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
                if v
                else f"<tr><td colspan=2 style='text-align:left;white-space:pre-wrap'>"
                f"{html.escape(k)}</td></tr>"
                for k, v in rows
            )
            parts.append(f"<div><b>{html.escape(title)}</b><table>{cells}</table></div>")
        template = self.part("template")
        if template.strip():
            parts.append(
                f"<details><summary>Template</summary><pre>{html.escape(template)}</pre></details>"
            )
        return "\n".join(parts)
