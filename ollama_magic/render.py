"""HTML and text bundles for answers, reasoning and stats. Pure: strings in, strings out.

Model output is untrusted, so the kernel decides exactly which HTML the page gets. Answers are
parsed as CommonMark (markdown-it-py, the parser of MyST and Jupyter Book) with raw HTML off,
rendered to HTML here, and passed through an allow-list sanitizer (nh3, the binding of Rust's
ammonia) before they are shown as ``text/html``. No second Markdown parser in the front end gets
a say, so none can disagree with ours about what is live. In that HTML:

* raw HTML in model text is text;
* links keep only ``http``, ``https`` and ``mailto`` targets; anything else stays text;
* images are never loaded: ``![alt](url)`` becomes a link labelled ``[image: alt]``;
* math (``$…$``, ``$$…$$``) is marked for MathJax, and everything else is marked to be skipped
  by it, so a stray dollar never typesets; math that could make a link, load an extension or
  style the page (``\\href``, ``\\require``, ``\\style``…) is shown as code instead;
* code blocks are highlighted here with Pygments (an IPython dependency), coloured with
  JupyterLab's own editor colours so they follow light and dark themes.

Reasoning, chat history and every string a server sends are escaped text.
"""

from __future__ import annotations

import contextlib
import html
import json
import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import nh3

from .logprobs import tokens_html, tokens_text
from .result import ERROR, INTERRUPTED

if TYPE_CHECKING:
    from collections.abc import Sequence

    from markdown_it import MarkdownIt
    from markdown_it.renderer import RendererHTML
    from markdown_it.rules_core import StateCore
    from markdown_it.token import Token
    from markdown_it.utils import OptionsDict

    from .result import GenerationResult

Bundle = dict[str, str]

# Links and images only ever point at these.
_SAFE_URL = re.compile(r"(?i)^(?:https?:|mailto:)")
# MathJax commands that make links, load code, or carry styles, classes or ids into the page.
_RISKY_MATH = re.compile(r"\\(?:href|url|require|style|class|cssId|data|unicode|html|mmlToken)\b")
# JupyterLab skips math outside elements of this class (MathJax 3's processHtmlClass) inside an
# element of the ignore class, so only what our parser called math is typeset.
_MATH_ON, _MATH_OFF = "mathjax_process", "mathjax_ignore"
_LANGUAGE_CLASS = re.compile(r"^language-[\w+#.-]{1,40}$")

_ALLOWED_TAGS = {
    *("p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "code"),
    *("em", "strong", "del", "s", "sub", "sup", "a", "ul", "ol", "li", "span", "div"),
    *("table", "thead", "tbody", "tr", "th", "td", "details", "summary"),
}
_ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "ol": {"start"},
    "th": {"style"},
    "td": {"style"},
    "span": {"class"},
    "div": {"class"},
    "code": {"class"},
    "p": {"class"},
}


def _allowed_attribute(tag: str, attribute: str, value: str) -> str | None:
    """Classes only as this module writes them: a code block's language, code colours, math."""
    if attribute != "class":
        return value
    if tag == "code":
        return value if _LANGUAGE_CLASS.match(value) else None
    allowed = _HEADING_CLASSES if tag == "p" else _CODE_CLASSES | {_MATH_ON}
    return value if value in allowed else None


_CLEANER = nh3.Cleaner(
    tags=_ALLOWED_TAGS,
    attributes=_ALLOWED_ATTRIBUTES,
    attribute_filter=_allowed_attribute,
    url_schemes={"http", "https", "mailto"},
    link_rel="noopener noreferrer nofollow",
    filter_style_properties={"text-align"},
    strip_comments=True,
)


def sanitize(fragment: str) -> str:
    """The allow-list pass every HTML fragment made from model text goes through last."""
    return _CLEANER.clean(fragment)


# Pygments token types to short classes, coloured with JupyterLab's editor colours (CSS
# variables of its light and dark themes; elsewhere they are undefined and code keeps the text
# colour). Classes keep a highlighted answer small; the rules go out once, with the answer.
_TOKEN_CLASSES = (
    ("Comment", "c", "comment", "font-style:italic"),
    ("Keyword", "k", "keyword", "font-weight:bold"),
    ("Operator.Word", "k", "keyword", "font-weight:bold"),
    ("Operator", "o", "operator", ""),
    ("Name.Builtin", "b", "builtin", ""),
    ("Name.Function", "d", "def", ""),
    ("Name.Class", "d", "def", ""),
    ("Name.Decorator", "m", "meta", ""),
    ("Name.Tag", "t", "tag", ""),
    ("Name.Attribute", "a", "attribute", ""),
    ("Literal.String", "s", "string", ""),
    ("Literal.Number", "n", "number", ""),
    ("Punctuation", "p", "punctuation", ""),
    ("Generic.Heading", "h", "header", ""),
    ("Error", "e", "error", ""),
)
_CODE_CLASSES = {f"om-{short}" for _, short, _, _ in _TOKEN_CLASSES}
# An answer's headings are sized text, not <h1>..<h6>: they must neither look like the
# notebook's own sections nor enter JupyterLab's table of contents, which lists those tags.
_HEADING_CLASSES = {f"om-h{level}" for level in range(1, 7)}
_HEADING_SIZES = {1: "1.25em", 2: "1.12em", 3: "1.04em"}
ANSWER_STYLE = "<style>{}</style>".format(
    # The frame: a quiet rule on the left, in the theme's border colour, marks model output.
    ".om-answer{border-left:3px solid var(--jp-border-color2,#ccc);padding-left:.9em}"
    ".om-answer>pre{margin:1em 2em}"  # as JupyterLab spaces a code block of its own Markdown
    + ",".join(sorted(f".{name}" for name in _HEADING_CLASSES))
    + "{margin:.9em 0 .4em}"
    + "".join(f".om-h{level}{{font-size:{size}}}" for level, size in _HEADING_SIZES.items())
    + "".join(
        f".om-{short}{{color:var(--jp-mirror-editor-{colour}-color)"
        f"{';' + extra if extra else ''}}}"
        for name, short, colour, extra in _TOKEN_CLASSES
        if name != "Operator.Word" and name != "Name.Class"
    )
)


@lru_cache(maxsize=256)
def _token_class(token_type: Any) -> str:
    from pygments.token import string_to_tokentype

    for name, short, _, _ in _TOKEN_CLASSES:
        if token_type in string_to_tokentype(name):
            return f"om-{short}"
    return ""


@lru_cache(maxsize=64)
def _lexer(language: str) -> Any:
    from pygments.lexers import get_lexer_by_name
    from pygments.util import ClassNotFound

    try:
        return get_lexer_by_name(language, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return None


def _highlight(code: str, language: str, _attrs: Any) -> str:
    """Coloured spans for a fenced block of a language Pygments knows, else "" (plain)."""
    lexer = _lexer(language.lower()) if language else None
    if lexer is None:
        return ""
    out: list[str] = []
    style, run = "", ""
    for token_type, text in [*lexer.get_tokens(code), (None, "")]:
        next_style = _token_class(token_type) if token_type is not None else ""
        if next_style != style or token_type is None:
            if run:
                escaped = _escape(run)
                out.append(f'<span class="{style}">{escaped}</span>' if style else escaped)
            style, run = next_style, ""
        run += text
    return "".join(out)


def _validate_link(url: str) -> bool:
    return bool(_SAFE_URL.match(url.strip()))


def _image(
    renderer: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: Any
) -> str:
    """An image as a link to it, never an ``<img>``: loading it could send data anywhere."""
    token = tokens[idx]
    alt = renderer.renderInlineAsText(token.children or [], options, env)
    label = _escape(f"[image: {alt}]" if alt else "[image]")
    src = str(token.attrGet("src") or "")
    if not _validate_link(src):  # a refused target (``![x]()``, say): the label alone
        return label
    return f'<a href="{_escape(src)}" title="image, not loaded">{label}</a>'


def _math_rule(display: bool) -> Any:
    """A render rule for one kind of math token: MathJax's delimiters inside a marked element."""
    delimiter = "$$" if display else "$"

    def render(
        renderer: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: Any
    ) -> str:
        content = tokens[idx].content.strip()
        source = _escape(f"{delimiter}{content}{delimiter}")
        if _RISKY_MATH.search(content):
            return f"<code>{source}</code>"
        if tokens[idx].block:
            return f'<div class="{_MATH_ON}">{source}</div>\n'
        return f'<span class="{_MATH_ON}">{source}</span>'

    return render


def _heading_open(
    renderer: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: Any
) -> str:
    return f'<p class="om-{tokens[idx].tag}"><strong>'


def _heading_close(
    renderer: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: Any
) -> str:
    return "</strong></p>\n"


def _unlink_unsafe(state: StateCore) -> None:
    """Links whose target was refused (``[x]()``, say) keep their text and lose the link."""
    for block in state.tokens:
        depth_of_dropped: list[int] = []
        for token in block.children or []:
            if token.type == "link_open" and not _validate_link(str(token.attrGet("href") or "")):
                depth_of_dropped.append(token.level)
                token.type, token.tag, token.attrs, token.nesting = "text", "", {}, 0
            elif token.type == "link_close" and depth_of_dropped and depth_of_dropped[-1] == (
                token.level
            ):
                depth_of_dropped.pop()
                token.type, token.tag, token.nesting = "text", "", 0


def _escape(text: str) -> str:
    """HTML-escaped text, quotes included (attribute values are written in double quotes)."""
    return html.escape(text).replace("&#x27;", "'")


def _parser(*, highlight: bool) -> MarkdownIt:
    from markdown_it import MarkdownIt
    from mdit_py_plugins.dollarmath import dollarmath_plugin

    md = MarkdownIt(
        "commonmark",
        {
            "html": False,
            "linkify": False,
            "typographer": False,
            "highlight": _highlight if highlight else None,
        },
    )
    md.enable(["table", "strikethrough"])
    # Pandoc's rule (no space inside the dollars, no digit after), so "$5 and $6" is not math.
    md.use(
        dollarmath_plugin,
        allow_space=False,
        allow_digits=False,
        allow_labels=False,
        double_inline=True,
    )
    md.add_render_rule("math_inline", _math_rule(display=False))
    md.add_render_rule("math_inline_double", _math_rule(display=True))
    md.add_render_rule("math_block", _math_rule(display=True))
    md.validateLink = _validate_link  # type: ignore[method-assign]
    md.add_render_rule("image", _image)
    md.add_render_rule("heading_open", _heading_open)
    md.add_render_rule("heading_close", _heading_close)
    md.core.ruler.push("unlink_unsafe", _unlink_unsafe)
    return md


@lru_cache(maxsize=2)
def _md(highlight: bool) -> MarkdownIt:
    """The parser, built on first use (``%load_ext`` stays fast). Live pieces skip highlighting:
    colours cost about as many bytes as the code, re-sent on every update, and the finished
    answer (highlighted) replaces them a moment later."""
    return _parser(highlight=highlight)


def warm_up() -> None:
    """Build the parsers (and import what they need) before the first answer arrives."""
    _md(False)
    _md(True)


#: Longer answers are rendered a piece at a time (each reopened inside the code block the last
#: one ended in, as live pieces are), so a huge answer's parse never holds all its tokens.
LONG_ANSWER = 128 * 1024
_PIECE = 32 * 1024


def markdown_html(text: str, *, highlight: bool = True) -> str:
    """Model text as Markdown, rendered to sanitized HTML.

    >>> markdown_html("**hi** <img src=x onerror=alert(1)>")
    '<p><strong>hi</strong> &lt;img src=x onerror=alert(1)&gt;</p>\\n'
    >>> markdown_html("[a](javascript:alert(1)) ![b](http://x.test/p.png)")
    '<p>[a](javascript:alert(1)) <a href="http://x.test/p.png" \
title="image, not loaded" rel="noopener noreferrer nofollow">[image: b]</a></p>\\n'
    """
    if len(text) > LONG_ANSWER:
        return "".join(markdown_html(piece, highlight=highlight) for piece in _pieces(text))
    return sanitize(_md(highlight).render(text))


def _pieces(text: str) -> list[str]:
    """``text`` cut at paragraph breaks into pieces of about ``_PIECE`` characters, each after
    the first reopened inside the code block the one before it ended in."""
    pieces, start, fence = [], 0, None
    while start < len(text):
        end = text.find("\n\n", start + _PIECE)
        end = len(text) if end < 0 else end + 2
        source = f"{fence}\n{text[start:end]}" if fence else text[start:end]
        pieces.append(source)
        fence = open_fence(source)
        start = end
    return pieces


def open_fence(source: str) -> str | None:
    """The opening line of the code fence ``source`` ends inside, as the parser sees it.

    A live view cut into pieces starts the next piece with it, so code stays code.

    >>> open_fence("x\\n```py\\ncode"), open_fence("```\\na\\n```\\n"), open_fence("~~~~\\n```\\n")
    ('```py', None, '~~~~')
    """
    if "```" not in source and "~~~" not in source:
        return None
    tokens = _md(False).parse(source)
    last = tokens[-1] if tokens else None
    if last is None or last.type != "fence" or last.level != 0 or last.map is None:
        return None
    lines = source.split("\n")
    start, end = last.map
    closer = lines[end - 1].strip() if end - 1 > start and end - 1 < len(lines) else ""
    marker = last.markup[0]
    closed = len(closer) >= len(last.markup) and closer == marker * len(closer)
    return None if closed else f"{last.markup}{last.info}"


def code_blocks(text: str) -> list[tuple[str, str]]:
    """Every code block of ``text`` as the parser sees it: (info string's first word, code).

    >>> code_blocks("x\\n```Python title\\nprint(1)\\n```\\n\\n    indented\\n")
    [('python', 'print(1)\\n'), ('', 'indented\\n')]
    """
    return [
        ((token.info.split() or [""])[0].lower(), token.content)
        for token in _md(False).parse(text)
        if token.type in ("fence", "code_block")
    ]


def escape_text_html(text: str) -> str:
    """Escaped text with line breaks kept."""
    return "<br>\n".join(html.escape(line, quote=False) for line in text.split("\n"))


_WRAPPER = f'<div class="{_MATH_OFF} om-answer">'


def html_bundle(*fragments: str, style: bool = False) -> Bundle:
    """A ``text/html`` output of trusted fragments, with MathJax off but for marked math.

    ``style`` adds the answers' style sheet (frame, headings, code colours): once is enough for
    the whole page, but a saved notebook shows each output on its own.
    """
    sheet = ANSWER_STYLE if style else ""
    return {"text/html": f'{_WRAPPER}{"".join(fragments)}</div>{sheet}'}


_REASONING_STYLE = "opacity:0.65;font-size:0.92em"


def thinking_block(text: str, *, live: bool) -> str:
    """The reasoning as escaped HTML: open while it streams, then collapsed."""
    body = escape_text_html(text.strip())
    if live:
        return (
            f'<div style="{_REASONING_STYLE};border-left:3px solid #bbb;padding-left:0.6em">'
            f"<b>Thinking…</b><br>\n{body}</div>"
        )
    return (
        f"<details><summary>Thinking ({_length(text)})</summary>\n"
        f'<div style="{_REASONING_STYLE}">{body}</div>\n</details>'
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
        f'<div style="{_REASONING_STYLE};border-left:3px solid #bbb;padding-left:0.6em">'
        f"{escape_text_html(text)}</div>"
    )


def live_status(line: str) -> str:
    """The line above a streaming answer that counts its tokens (our words only: no wrapper)."""
    return f"<sub>{html.escape(line, quote=False)}</sub>"


def _seconds(nanoseconds: int | None) -> str:
    return f"{(nanoseconds or 0) / 1e9:.2f} s"


def stats_parts(result: GenerationResult) -> list[str]:
    """The footer's facts, then hints that say what to change.

    A stream cut short has no final chunk, so the server's numbers are missing: the footer
    gives the client's own count so far instead, and says once, calmly, what happened.
    """
    parts: list[str] = []
    cut_short = result.done_reason in (INTERRUPTED, ERROR)
    if result.eval_count:
        parts.append(f"{result.eval_count} tokens")
    elif cut_short and result.streamed_tokens:
        parts.append(f"{result.streamed_tokens} tokens so far")
        if result.streamed_seconds > 0 and result.streamed_tokens > 1:
            so_far = (result.streamed_tokens - 1) / result.streamed_seconds
            parts.append(f"{so_far:.1f} tokens/s")
    rate = result.tokens_per_second
    if rate:
        parts.append(f"{rate:.1f} tokens/s")
    if result.prompt_eval_count:
        parts.append(f"prompt {result.prompt_eval_count} tokens")
    if result.load_duration:
        parts.append(f"load {_seconds(result.load_duration)}")
    if result.done_reason == INTERRUPTED:
        chat = "messages" in result.request
        parts.append(
            "stopped: the answer above is partial"
            + ("; this turn is not added to the conversation" if chat else "")
        )
    elif result.done_reason == ERROR:
        parts.append("cut short by an error")
    else:
        parts.append(f"done: {result.done_reason or 'unknown'}")
    options = result.request.get("options") or {}
    if result.done_reason == "length":
        limit = options.get("num_predict")
        short = isinstance(limit, int) and 0 < (result.eval_count or limit) < limit
        if short:  # not num_predict: the window filled, and the server was told not to shift
            window = f"num_ctx={result.num_ctx}" if result.num_ctx else "the context window"
            parts.append(f"the answer filled {window}: raise --num-ctx for a longer answer")
        else:
            where = f"num_predict={limit}" if limit is not None else "the token limit"
            parts.append(f"stopped at {where}: raise --num-predict for a longer answer")
    if result.prompt_cut:
        parts.append(
            f"the prompt was longer than num_ctx={result.num_ctx}, so the server cut it to "
            f"{result.prompt_eval_count} tokens without a word (the model never saw the rest): "
            "raise --num-ctx or shorten the prompt"
        )
    return parts


def footer_text(result: GenerationResult) -> str:
    return " · ".join(stats_parts(result))


def answer_html(result: GenerationResult) -> str:
    """The answer as sanitized HTML: Markdown, or a JSON code block for ``format`` answers."""
    answer = result.answer.strip()
    if not answer:
        return ""
    if result.request.get("format"):  # JSON reads best as an indented code block
        with contextlib.suppress(ValueError):  # not JSON (a cut answer): shown as it came
            answer = json.dumps(json.loads(answer), indent=2, ensure_ascii=False)
        ticks = "`" * max([3, *(len(run) + 1 for run in re.findall(r"`+", answer))])
        return markdown_html(f"{ticks}json\n{answer}\n{ticks}")
    return markdown_html(answer)


def result_bundle(result: GenerationResult, *, show_thinking: bool = True) -> Bundle:
    """The final rendering of a result: HTML for notebooks, plain text for everything else."""
    fragments: list[str] = []
    plain: list[str] = []
    if result.tool_calls:  # above the answer, in the order they ran (escaped by tools.py)
        from .tools import calls_html, calls_text

        fragments.append(calls_html(result.tool_calls))
        plain.append(calls_text(result.tool_calls))
    thinking = result.thinking.strip()
    if thinking and show_thinking:
        fragments.append(thinking_block(thinking, live=False))
        plain.append(f"<think>\n{thinking}\n</think>")
    fragments.append(answer_html(result))
    if result.answer.strip():
        plain.append(result.answer.strip())
    if result.logprobs is not None:
        fragments.append(
            "<details open><summary>Token probabilities</summary>\n"
            f"{tokens_html(result.logprobs)}</details>"
        )
        plain.append(tokens_text(result.logprobs))
    footer = footer_text(result)
    fragments.append(f"<sub>{html.escape(footer, quote=False)}</sub>")
    plain.append(f"[{footer}]")
    return {**html_bundle(*fragments, style=True), "text/plain": "\n\n".join(plain)}
