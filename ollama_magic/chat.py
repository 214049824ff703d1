"""Chat memory for ``%%ollama --chat``: named conversations turned into ``/api/chat`` bodies.

Pure: no I/O. A conversation keeps each finished turn (the user's words and the model's
*answer*); the reasoning is shown but never sent back, because it costs context on every later
turn and models are trained to see only earlier answers. Ollama drops the oldest tokens without
a word when a conversation outgrows ``num_ctx``, so :func:`context_warning` says so first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .args import DEFAULT_CONVERSATION as DEFAULT
from .render import escape_text_html, html_bundle, markdown_html

WARN_AT = 0.8  # share of num_ctx in use that triggers the warning

#: Fields of a ``/api/generate`` body that mean the same in ``/api/chat``.
SHARED_FIELDS = ("format", "options", "keep_alive", "think", "stream")


@dataclass
class Turn:
    """One exchange: what the user sent and what the model answered (reasoning left out)."""

    user: str
    answer: str
    model: str
    images: list[str] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)  # tool calls and their results


@dataclass
class Conversation:
    """A named conversation: its system prompt, model and finished turns."""

    name: str = DEFAULT
    model: str = ""
    system: str = ""
    turns: list[Turn] = field(default_factory=list)
    tokens: int | None = None  # context in use after the last turn (prompt + answer tokens)

    def messages(self, system: str | None = None) -> list[dict[str, Any]]:
        """The history as ``/api/chat`` messages, the system prompt (or ``system``) first."""
        out: list[dict[str, Any]] = []
        system = self.system if system is None else system
        if system:
            out.append({"role": "system", "content": system})
        for turn in self.turns:
            user: dict[str, Any] = {"role": "user", "content": turn.user}
            if turn.images:
                user["images"] = list(turn.images)
            out += [user, *turn.steps]
            if turn.answer or not turn.steps:
                out.append({"role": "assistant", "content": turn.answer})
        return out

    def request(self, generate_body: dict[str, Any], system: str | None = None) -> dict[str, Any]:
        """The ``/api/chat`` body for the next turn, from the cell's generate body.

        ``system`` replaces the conversation's system prompt from this turn on (once the turn
        is recorded).

        >>> c = Conversation(system="Be brief.")
        >>> c.turns.append(Turn("Hi", "Hello!", "m"))
        >>> body = c.request({"model": "m", "prompt": "And you?", "stream": True})
        >>> [(m["role"], m["content"]) for m in body["messages"]]
        [('system', 'Be brief.'), ('user', 'Hi'), ('assistant', 'Hello!'), ('user', 'And you?')]
        """
        user: dict[str, Any] = {"role": "user", "content": generate_body["prompt"]}
        if generate_body.get("images"):
            user["images"] = list(generate_body["images"])
        body: dict[str, Any] = {
            "model": generate_body["model"],
            "messages": [*self.messages(system), user],
        }
        for key in SHARED_FIELDS:
            if key in generate_body:
                body[key] = generate_body[key]
        return body

    def record(
        self,
        body: dict[str, Any],
        answer: str,
        tokens: int | None,
        steps: Sequence[dict[str, Any]] = (),
    ) -> None:
        """Keep a finished turn (only the answer, never the reasoning) and its system prompt;
        ``steps`` are the tool calls and results that came before the answer."""
        first, user = body["messages"][0], body["messages"][-1]
        self.system = first["content"] if first.get("role") == "system" else ""
        images = list(user.get("images", []))
        self.turns.append(Turn(user["content"], answer, body["model"], images, list(steps)))
        self.model = body["model"]
        self.tokens = tokens

    def __len__(self) -> int:
        return len(self.turns)

    def _title(self) -> str:
        size = f", about {self.tokens} tokens of context" if self.tokens else ""
        turns = f"{len(self.turns)} turn{'s' if len(self.turns) != 1 else ''}"
        return f"Conversation '{self.name}': {turns}{size}"

    def __repr__(self) -> str:
        lines = [self._title()]
        if self.system:
            lines.append(f"system: {self.system}")
        for turn in self.turns:
            images = f" [{len(turn.images)} image(s)]" if turn.images else ""
            lines.append(f"you: {turn.user}{images}")
            lines += [f"  {line}" for line in step_lines(turn.steps)]
            lines.append(f"{turn.model}: {turn.answer}")
        if not self.turns:
            lines.append("(empty: the next %%ollama --chat cell starts it)")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        """The conversation as the model will see it next: answers rendered like answers."""
        parts = [f"<p><b>{escape_text_html(self._title())}</b></p>"]
        if self.system:
            parts.append(f"<p><i>system:</i> {escape_text_html(self.system)}</p>")
        for turn in self.turns:
            images = f" <i>({len(turn.images)} image(s))</i>" if turn.images else ""
            parts.append(f"<p><b>you:</b>{images} {escape_text_html(turn.user)}</p>")
            for line in step_lines(turn.steps):
                parts.append(f"<p><i>{escape_text_html(line)}</i></p>")
            parts.append(f"<p><b>{escape_text_html(turn.model)}:</b></p>")
            parts.append(f"<blockquote>{markdown_html(turn.answer)}</blockquote>")
        if not self.turns:
            empty = "(empty: the next <code>%%ollama --chat</code> cell starts it)"
            parts.append(f"<p><i>{empty}</i></p>")
        return html_bundle(*parts)["text/html"]


def step_lines(steps: Sequence[dict[str, Any]]) -> list[str]:
    """Tool calls and results of a turn, one line each, as ``%ollama history`` shows them.

    >>> step_lines([{"role": "assistant", "tool_calls": [{"function": {"name": "f",
    ...     "arguments": {"x": 1}}}]}, {"role": "tool", "tool_name": "f", "content": "2"}])
    ['calls f(x=1)', 'f → 2']
    """
    from .tools import read_calls

    lines = []
    for step in steps:
        if step.get("role") == "tool":
            result = " ".join(str(step.get("content", "")).split())
            lines.append(f"{step.get('tool_name', 'tool')} → {result[:300]}")
        else:
            lines += [f"calls {call.signature()}" for call in read_calls(step.get("tool_calls"))]
    return lines


def context_warning(name: str, tokens: int | None, num_ctx: int | None) -> str | None:
    """A warning once a conversation fills most of ``num_ctx``, else ``None``.

    >>> print(context_warning("default", 3400, 4096))  # doctest: +NORMALIZE_WHITESPACE
    Conversation 'default' now fills 3400 of 4096 context tokens (83%). Past the limit Ollama
    silently drops the oldest messages: start over with %ollama reset, or raise --num-ctx.
    >>> context_warning("default", 1000, 4096) is None
    True
    >>> print(context_warning("notes", 4200, 4096))  # doctest: +NORMALIZE_WHITESPACE
    Conversation 'notes' has filled its context window (num_ctx=4096): Ollama now drops its
    oldest messages, so the model no longer sees how it began. Start over with
    %ollama reset notes, or raise --num-ctx.
    """
    if not tokens or not num_ctx or tokens < WARN_AT * num_ctx:
        return None
    share = tokens / num_ctx * 100
    reset = "%ollama reset" if name == DEFAULT else f"%ollama reset {name}"
    if tokens >= num_ctx:
        return (
            f"Conversation '{name}' has filled its context window (num_ctx={num_ctx}): Ollama "
            "now drops its oldest messages, so the model no longer sees how it began. Start "
            f"over with {reset}, or raise --num-ctx."
        )
    return (
        f"Conversation '{name}' now fills {tokens} of {num_ctx} context tokens ({share:.0f}%). "
        f"Past the limit Ollama silently drops the oldest messages: start over with {reset}, "
        "or raise --num-ctx."
    )
