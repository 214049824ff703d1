"""Text and mime bundles for answers, reasoning and stats. Pure: strings in, strings out.

Model output is untrusted: it must never become live HTML in the page. Answers are Markdown (so
lists, code and math render), with every ``<`` outside code turned into ``&lt;``; reasoning is
HTML-escaped text. A reply containing ``<img onerror=...>`` therefore shows as text.
"""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .result import GenerationResult

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)")


def _fence_step(line: str, fence: str | None) -> str | None:
    """The fence still open after ``line``, given the one open before it."""
    match = _FENCE.match(line)
    if fence is None:
        if match and not (match.group(1)[0] == "`" and "`" in match.group(2)):
            return match.group(1)
        return None
    closes = match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence)
    return None if closes and not match.group(2).strip() else fence


def _escape_line(line: str) -> str:
    if "<" not in line:
        return line
    out, start = [], 0
    for span in _CODE_SPAN.finditer(line):
        out.append(line[start : span.start()].replace("<", "&lt;"))
        out.append(span.group(0))
        start = span.end()
    out.append(line[start:].replace("<", "&lt;"))
    return "".join(out)


def escape_markdown(text: str) -> str:
    """Make model text safe as Markdown: ``<`` outside code becomes ``&lt;``.

    >>> escape_markdown("a <b>x</b> `<i>` end")
    'a &lt;b>x&lt;/b> `<i>` end'
    >>> escape_markdown("```html\\n<img src=x onerror=alert(1)>\\n```\\n<script>")
    '```html\\n<img src=x onerror=alert(1)>\\n```\\n&lt;script>'
    """
    if "<" not in text:
        return text
    fence: str | None = None
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if fence is None:
            after = _fence_step(line, None)
            if after is None:
                lines[i] = _escape_line(line)
            fence = after
        else:
            fence = _fence_step(line, fence)
    return "\n".join(lines)


def open_fence(text: str, fence: str | None = None) -> str | None:
    """The code fence (e.g. ``````` or ``~~~~``) that ``text`` ends inside, if any.

    >>> open_fence("x\\n```py\\ncode"), open_fence("```\\na\\n```\\n")
    ('```', None)
    """
    for line in text.split("\n"):
        fence = _fence_step(line, fence)
    return fence


def escape_text_html(text: str) -> str:
    """Escaped text with line breaks kept and no blank line (which would end an HTML block)."""
    return "<br>\n".join(html.escape(line, quote=False) for line in text.split("\n"))


def thinking_block(text: str, *, live: bool) -> str:
    """The reasoning as an HTML block inside Markdown: open while it streams, then collapsed."""
    body = escape_text_html(text.strip())
    if live:
        return (
            '<div style="opacity:0.65;font-size:0.92em;border-left:3px solid #bbb;'
            f'padding-left:0.6em"><b>Thinking…</b><br>\n{body}</div>'
        )
    return (
        f"<details><summary>Thinking ({_length(text)})</summary>\n"
        f'<div style="opacity:0.65;font-size:0.92em">{body}</div>\n</details>'
    )


_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def _length(text: str) -> str:
    """How long a reasoning is, in words, or in characters for Chinese and Japanese.

    >>> _length("One idea."), _length("x"), _length("先想一想再回答。")
    ('2 words', '1 word', '7 characters')
    """
    cjk = len(_CJK.findall(text))
    count, unit = (cjk, "character") if cjk > len(text.split()) else (len(text.split()), "word")
    return f"{count} {unit}{'' if count == 1 else 's'}"


def live_thinking_piece(text: str) -> str:
    """A later slot of reasoning while it streams (no header)."""
    return (
        '<div style="opacity:0.65;font-size:0.92em;border-left:3px solid #bbb;'
        f'padding-left:0.6em">{escape_text_html(text)}</div>'
    )


def _seconds(nanoseconds: int | None) -> str:
    return f"{(nanoseconds or 0) / 1e9:.2f} s"


def stats_parts(result: GenerationResult) -> list[str]:
    """The footer's facts, then hints that say what to change."""
    parts: list[str] = []
    if result.eval_count:
        parts.append(f"{result.eval_count} tokens")
    rate = result.tokens_per_second
    if rate:
        parts.append(f"{rate:.1f} tokens/s")
    if result.prompt_eval_count:
        parts.append(f"prompt {result.prompt_eval_count} tokens")
    if result.load_duration:
        parts.append(f"load {_seconds(result.load_duration)}")
    parts.append(f"done: {result.done_reason or 'unknown'}")
    options = result.request.get("options") or {}
    if result.done_reason == "length":
        limit = options.get("num_predict")
        where = f"num_predict={limit}" if limit is not None else "the token limit"
        parts.append(f"stopped at {where}: raise --num-predict for a longer answer")
    num_ctx = options.get("num_ctx")
    # A cut prompt fills the window exactly; a server that used another size cut nothing here.
    if num_ctx and result.prompt_eval_count == num_ctx:
        parts.append(
            f"the prompt filled num_ctx={num_ctx}, so its start was probably cut: "
            "raise --num-ctx"
        )
    if result.done_reason == "interrupted":
        parts.append("interrupted: the answer above is partial")
    elif result.done_reason == "error":
        parts.append("failed: the answer above is partial")
    return parts


def footer_text(result: GenerationResult) -> str:
    return " · ".join(stats_parts(result))


def result_bundle(result: GenerationResult, *, show_thinking: bool = True) -> dict[str, str]:
    """The final rendering of a result: Markdown for notebooks, plain text for everything else."""
    markdown: list[str] = []
    plain: list[str] = []
    thinking = result.thinking.strip()
    if thinking and show_thinking:
        markdown.append(thinking_block(thinking, live=False))
        plain.append(f"<think>\n{thinking}\n</think>")
    answer = result.answer.strip()
    if answer and result.request.get("format"):  # JSON reads best as a code block
        ticks = "`" * max([3, *(len(run) + 1 for run in re.findall(r"`+", answer))])
        markdown.append(f"{ticks}json\n{answer}\n{ticks}")
        plain.append(answer)
    elif answer:
        fence = open_fence(answer)  # a cut-off code block must not swallow the footer
        markdown.append(escape_markdown(answer) + (f"\n{fence}" if fence else ""))
        plain.append(answer)
    footer = footer_text(result)
    markdown.append(f"<sub>{html.escape(footer, quote=False)}</sub>")
    plain.append(f"[{footer}]")
    return {"text/markdown": "\n\n".join(markdown), "text/plain": "\n\n".join(plain)}
