"""Token probabilities (``--logprobs``): read from chunks, drawn as shaded tokens. Pure.

Ollama sends, beside each chunk's text, a ``logprobs`` list with one entry per token:
``{"token": "Hi", "logprob": -0.12, "top_logprobs": [{"token": "Hello", "logprob": -2.3}]}``
(natural logarithms). A server is untrusted, so entries of the wrong shape are left out, and a
token's text is only ever shown escaped.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any

from .fields import printable


@dataclass(frozen=True)
class Candidate:
    """One token and how likely the model found it."""

    token: str
    logprob: float

    @property
    def probability(self) -> float:
        return math.exp(self.logprob)


@dataclass(frozen=True)
class TokenLogprob(Candidate):
    """A generated token, the likeliest alternatives the server listed, and where it went."""

    alternatives: tuple[Candidate, ...] = field(default=())
    thinking: bool = False  # a token of the reasoning, not of the answer


def _candidate(value: Any) -> Candidate | None:
    if not isinstance(value, dict):
        return None
    token, logprob = value.get("token"), value.get("logprob")
    if not isinstance(token, str) or isinstance(logprob, bool):
        return None
    if not isinstance(logprob, int | float) or not math.isfinite(logprob) or logprob > 1e-6:
        return None
    return Candidate(token, min(float(logprob), 0.0))


def read_entries(value: Any, *, thinking: bool = False) -> list[TokenLogprob]:
    """A chunk's ``logprobs`` list as tokens; entries that are not one are left out.

    >>> [t.token for t in read_entries([{"token": "Hi", "logprob": -0.1}, {"token": 5}, None])]
    ['Hi']
    """
    if not isinstance(value, list):
        return []
    out = []
    for entry in value:
        token = _candidate(entry)
        if token is None:
            continue
        raw = entry.get("top_logprobs")
        listed = raw if isinstance(raw, list) else []
        alternatives = tuple(c for c in map(_candidate, listed[:20]) if c is not None)
        out.append(TokenLogprob(token.token, token.logprob, alternatives, thinking))
    return out


# Shading: a sure token is left plain; the less likely, the stronger the tint. An orange with
# transparency reads on light and dark themes alike.
_SURE = 0.9


def _tint(probability: float) -> str:
    if probability >= _SURE:
        return ""
    alpha = 0.12 + 0.5 * (1 - probability / _SURE)
    return f"background:rgba(255,140,0,{alpha:.2f})"


def _percent(probability: float) -> str:
    return f"{probability:.0%}" if probability >= 0.01 else "<1%"


def _shown(token: str) -> str:
    """A token as the hover text shows it: visible spaces and line breaks."""
    return repr(printable(token))[1:-1] if token.strip() != token or not token else token


def title(token: TokenLogprob) -> str:
    """The hover text: the token's probability, then its alternatives.

    >>> title(TokenLogprob("blue", -0.2, (Candidate("blue", -0.2), Candidate("grey", -2.0))))
    "'blue' 82%; alternatives: 'blue' 82%, 'grey' 14%"
    """
    head = f"'{_shown(token.token)}' {_percent(token.probability)}"
    if not token.alternatives:
        return head
    others = ", ".join(f"'{_shown(c.token)}' {_percent(c.probability)}" for c in token.alternatives)
    return f"{head}; alternatives: {others}"


def answer_tokens(tokens: list[TokenLogprob]) -> list[TokenLogprob]:
    return [t for t in tokens if not t.thinking]


def tokens_html(tokens: list[TokenLogprob]) -> str:
    """The answer's tokens, each shaded by its probability, alternatives in its hover text.

    Built from escaped text only (no model text becomes markup); a legend says how to read it.
    """
    shown = answer_tokens(tokens)
    if not shown:
        return ""
    spans = []
    for token in shown:
        style = _tint(token.probability)
        text = html.escape(printable(token.token).replace("\n", "\u21b5\n"), quote=False)
        attrs = f' title="{html.escape(title(token))}"'
        if style:
            attrs += f' style="{style}"'
        spans.append(f"<span{attrs}>{text}</span>")
    return (
        '<div style="white-space:pre-wrap;font-family:var(--jp-code-font-family,monospace);'
        'line-height:1.6">' + "".join(spans) + "</div>\n"
        f"<p><sub>{html.escape(summary(tokens))} · shaded: the less likely a token was, the "
        "stronger its tint (none at 90% and above); hover a token for its alternatives</sub></p>"
    )


def summary(tokens: list[TokenLogprob]) -> str:
    """One line on how sure the model was of its answer.

    >>> print(summary([TokenLogprob("a", 0.0), TokenLogprob("b", math.log(0.25))]))
    2 tokens, mean probability 62%, least likely: 'b' 25%
    """
    shown = answer_tokens(tokens)
    if not shown:
        return "no token probabilities"
    mean = sum(t.probability for t in shown) / len(shown)
    least = min(shown, key=lambda t: t.logprob)
    plural = "s" if len(shown) != 1 else ""
    return (
        f"{len(shown)} token{plural}, mean probability {_percent(mean)}, "
        f"least likely: '{_shown(least.token)}' {_percent(least.probability)}"
    )


def tokens_text(tokens: list[TokenLogprob], *, limit: int = 5) -> str:
    """For a terminal: the summary and the least likely tokens with their alternatives."""
    shown = answer_tokens(tokens)
    lines = [f"token probabilities: {summary(tokens)}"]
    for token in sorted(shown, key=lambda t: t.logprob)[:limit]:
        if token.probability < _SURE:
            lines.append(f"  {title(token)}")
    return "\n".join(lines)
