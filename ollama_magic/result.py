"""What one generation produced, as a plain object a user can keep (``-o NAME``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .fields import count, text, token_ids
from .logprobs import TokenLogprob

if TYPE_CHECKING:
    from .tools import ToolCall

#: ``done_reason`` values this package adds to the server's ``stop``/``length``.
INTERRUPTED = "interrupted"
ERROR = "error"


def cut_sizes(num_ctx: int, num_keep: int = 4) -> set[int]:
    """Every length Ollama, old or new, cuts an over-long prompt to.

    >>> sorted(cut_sizes(4096))  # 2051: 0.33 with a BOS token (4 + 1 kept from the start)
    [2050, 2051, 4095, 4096]
    """
    sizes = {num_ctx, num_ctx - 1}
    for keep in (num_keep, num_keep + 1):
        keep = min(max(keep, 0), num_ctx)
        sizes.add(num_ctx - max((num_ctx - keep) // 2, 1))
    return sizes


@dataclass
class GenerationResult:
    """The answer, the reasoning, and the server's numbers for one request.

    ``answer`` and ``thinking`` are split apart (from Ollama's ``thinking`` field or inline
    ``<think>`` tags); ``response`` is the raw ``response`` text as the server sent it.
    ``done_reason`` is the server's (``stop``, ``length``, ...) or ``interrupted`` / ``error``
    when the stream did not end normally; then ``error`` holds the message.
    """

    model: str
    answer: str = ""
    thinking: str = ""
    response: str = ""
    done_reason: str | None = None
    context: list[int] | None = None  # a TokenIds (a compact list) when the context is long
    prompt_eval_count: int | None = None
    prompt_eval_duration: int | None = None
    eval_count: int | None = None
    eval_duration: int | None = None
    load_duration: int | None = None
    total_duration: int | None = None
    raw: dict[str, Any] | None = None
    data: Any = None
    error: str | None = None
    request: dict[str, Any] = field(default_factory=dict, repr=False)
    logprobs: list[TokenLogprob] | None = field(default=None, repr=False)
    num_ctx: int | None = None  # the context window the model ran with, when known
    # As the client counted them (a chunk of text is a token): what a cut stream still tells.
    streamed_tokens: int = 0
    streamed_seconds: float = 0.0
    tool_calls: list[ToolCall] = field(default_factory=list, repr=False)  # this turn's, in order

    @property
    def prompt_cut(self) -> bool:
        """Whether the server (probably) cut the prompt to fit ``num_ctx``; it never says so.

        The only trace is ``prompt_eval_count``, which counts what was kept: Ollama since
        0.30.11 keeps the first ``num_keep`` tokens (+1 for BOS) and the last ones, about half
        the window; 0.30.0-0.30.8 kept ``num_ctx - 1``; older Ollama exactly ``num_ctx``.
        """
        if not self.num_ctx or not self.prompt_eval_count:
            return False
        keep = count((self.request.get("options") or {}).get("num_keep"))
        return self.prompt_eval_count in cut_sizes(self.num_ctx, 4 if keep is None else keep)

    @classmethod
    def from_final(cls, model: str, final: dict[str, Any] | None, **parts: Any) -> GenerationResult:
        """Build from the final chunk (``done: true``), or without one for a cut stream; numbers
        and names of the wrong type (a server is untrusted) are left out, ``raw`` keeps them."""
        final = final or {}
        return cls(
            model=text(final.get("model")) or model,
            done_reason=text(final.get("done_reason")) or None,
            context=token_ids(final.get("context")),
            prompt_eval_count=count(final.get("prompt_eval_count")),
            prompt_eval_duration=count(final.get("prompt_eval_duration")),
            eval_count=count(final.get("eval_count")),
            eval_duration=count(final.get("eval_duration")),
            load_duration=count(final.get("load_duration")),
            total_duration=count(final.get("total_duration")),
            raw=final or None,
            **parts,
        )

    @property
    def tokens_per_second(self) -> float | None:
        """``eval_count / eval_duration``, as the Ollama docs compute it."""
        if not self.eval_count or not self.eval_duration:
            return None
        return self.eval_count / self.eval_duration * 1e9

    @property
    def ok(self) -> bool:
        return self.done_reason not in (None, INTERRUPTED, ERROR)

    def __str__(self) -> str:
        return self.answer

    def __repr__(self) -> str:
        answer = self.answer if len(self.answer) <= 60 else self.answer[:57] + "..."
        parts = [f"model={self.model!r}", f"done_reason={self.done_reason!r}"]
        if self.eval_count:
            parts.append(f"eval_count={self.eval_count}")
        rate = self.tokens_per_second
        if rate:
            parts.append(f"tokens_per_second={rate:.1f}")
        if self.thinking:
            parts.append(f"thinking=<{len(self.thinking)} chars>")
        if self.tool_calls:
            parts.append(f"tool_calls=<{len(self.tool_calls)}>")
        parts.append(f"answer={answer!r}")
        return f"GenerationResult({', '.join(parts)})"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        from .render import result_bundle

        return result_bundle(self)
