"""A small subset of Go's ``text/template``: enough for Ollama prompt templates of the old style.

Supported: text, ``{{ .Field }}``, ``{{ if .Field }}…{{ else if .Other }}…{{ else }}…{{ end }}``,
``{{/* comments */}}`` and the ``{{-``/``-}}`` whitespace trims. A missing field prints
``<no value>`` and is false in ``if``, as Ollama's map-based execution does. Anything else
(``range``, pipelines, functions, variables) is a :class:`TemplateError`, worded like Go's parse
errors (``template: :1: unexpected EOF``). Pure: no I/O.

>>> parse("{{ if .System }}[{{ .System }}] {{ end }}{{ .Prompt }}").execute({"Prompt": "hi"})
'hi'
>>> parse("{{- .Prompt -}}  !").execute({"Prompt": "hi", "System": "be brief"})
'hi!'
>>> parse("{{ .Prompt").execute({})
Traceback (most recent call last):
...
ollama_magic.server.gotemplate.TemplateError: template: :1: unclosed action
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

NO_VALUE = "<no value>"


class TemplateError(ValueError):
    """A template this subset cannot parse; ``str()`` reads like Go's error."""


@dataclass
class _Text:
    text: str


@dataclass
class _Field:
    name: str


@dataclass
class _If:
    branches: list[tuple[str, list[_Node]]] = field(default_factory=list)  # (field, body)
    otherwise: list[_Node] = field(default_factory=list)


_Node = _Text | _Field | _If

_FIELD_RE = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)")
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class Template:
    """A parsed template; :meth:`execute` renders it with a mapping of field values."""

    source: str
    nodes: list[_Node]

    @property
    def fields(self) -> set[str]:
        """Every field the template mentions (Ollama checks for ``.Messages`` this way)."""
        found: set[str] = set()
        _collect_fields(self.nodes, found)
        return found

    def execute(self, values: Mapping[str, Any], *, cut_after: str | None = None) -> str:
        """Render with ``values``; with ``cut_after``, stop right after printing that field.

        Ollama renders the last chat turn of an old-style template this way: everything after
        ``{{ .Response }}`` is cut, so the model continues the assistant's answer.
        """
        out: list[str] = []
        _render(self.nodes, values, out, cut_after)
        return "".join(out)


def _collect_fields(nodes: list[_Node], found: set[str]) -> None:
    for node in nodes:
        if isinstance(node, _Field):
            found.add(node.name)
        elif isinstance(node, _If):
            for name, body in node.branches:
                found.add(name)
                _collect_fields(body, found)
            _collect_fields(node.otherwise, found)


def _truthy(value: Any) -> bool:
    return bool(value) if value is not None else False


def _render(
    nodes: list[_Node], values: Mapping[str, Any], out: list[str], cut_after: str | None
) -> bool:
    """Append the rendering to ``out``; True once ``cut_after`` was printed (stop everything)."""
    for node in nodes:
        if isinstance(node, _Text):
            out.append(node.text)
        elif isinstance(node, _Field):
            value = values.get(node.name)
            if value is None:
                out.append(NO_VALUE)
            elif isinstance(value, bool):
                out.append("true" if value else "false")
            else:
                out.append(str(value))
            if node.name == cut_after:
                return True
        else:
            body = next(
                (body for name, body in node.branches if _truthy(values.get(name))),
                node.otherwise,
            )
            if _render(body, values, out, cut_after):
                return True
    return False


def parse(source: str) -> Template:
    """Parse ``source``; raises :class:`TemplateError` with a Go-like message."""
    tokens = _lex(source)
    nodes, stop, line = _parse_list(tokens, 0)
    if stop != len(tokens):  # a stray {{ else }} or {{ end }}
        word = tokens[stop][1].split()[0]
        raise TemplateError(f"template: :{line}: unexpected {{{{{word}}}}}")
    return Template(source, nodes)


_Token = tuple[str, str, int]  # ("text" | "action", content, line)


def _lex(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    pending_trim = False
    while True:
        start = source.find("{{", pos)
        text = source[pos:] if start < 0 else source[pos:start]
        if pending_trim:
            text = text.lstrip(" \t\r\n")
        trim_left = start >= 0 and source.startswith("{{- ", start)
        if trim_left:
            text = text.rstrip(" \t\r\n")
        if text:
            tokens.append(("text", text, source.count("\n", 0, pos) + 1))
        if start < 0:
            return tokens
        line = source.count("\n", 0, start) + 1
        inner_start = start + (4 if trim_left else 2)
        end = source.find("}}", inner_start)
        if end < 0:
            raise TemplateError(f"template: :{line}: unclosed action")
        inner = source[inner_start:end]
        pending_trim = inner.endswith(" -")
        if pending_trim:
            inner = inner[:-2]
        inner = inner.strip()
        pos = end + 2
        if inner.startswith("/*"):
            if not inner.endswith("*/"):
                raise TemplateError(f"template: :{line}: unclosed comment")
            continue
        if not inner:
            raise TemplateError(f"template: :{line}: missing value for command")
        tokens.append(("action", inner, line))


def _field_of(expr: str, line: int) -> str:
    match = _FIELD_RE.fullmatch(expr.strip())
    if match:
        return match.group(1)
    word = expr.strip().split()[0] if expr.strip() else ""
    if _IDENT_RE.fullmatch(word) and word not in {"range", "with", "define", "block", "template"}:
        raise TemplateError(f'template: :{line}: function "{word}" not defined')
    raise TemplateError(
        f"template: :{line}: {expr.strip()!r} is not supported by ollama-magic's template subset"
        " (only .Field, if/else/end)"
    )


def _parse_list(tokens: list[_Token], i: int) -> tuple[list[_Node], int, int]:
    """Parse nodes from ``tokens[i]`` until an ``else``/``end`` (returned index) or the end."""
    nodes: list[_Node] = []
    line = 1
    while i < len(tokens):
        kind, content, line = tokens[i]
        if kind == "text":
            nodes.append(_Text(content))
            i += 1
            continue
        head = content.split()[0]
        if head in ("else", "end"):
            return nodes, i, line
        if head == "if":
            node = _If()
            cond = content[2:]
            while True:
                body, i, line = _parse_list(tokens, i + 1)
                node.branches.append((_field_of(cond, line), body))
                if i >= len(tokens):
                    raise TemplateError(f"template: :{line}: unexpected EOF")
                rest = tokens[i][1].split(None, 1)
                if rest[0] == "end":
                    break
                if len(rest) > 1 and rest[1].startswith("if "):
                    cond = rest[1][2:]
                    continue
                node.otherwise, i, line = _parse_list(tokens, i + 1)
                if i >= len(tokens) or tokens[i][1].split()[0] != "end":
                    raise TemplateError(f"template: :{line}: unexpected EOF")
                break
            nodes.append(node)
            i += 1
            continue
        nodes.append(_Field(_field_of(content, line)))
        i += 1
    return nodes, i, line
