"""Deterministic scripted models, so tests, CI notebooks and people without Ollama get real streams.

Every model answers from a script, not a network: the same request always gives the same tokens.
All of them honour ``num_predict`` (reasoning tokens count; negative means open-ended, capped at
10 × ``num_ctx``, like Ollama), ``num_ctx`` (the rendered prompt keeps its last ``num_ctx``
tokens), ``stop`` (the answer is cut before the first stop string), ``format`` (``"json"`` gives
``{"answer": …}``; a JSON schema gives a synthesized instance) and two options of their own that
real Ollama would ignore as unknown:

``scripted_delay``
    seconds to wait before each token (``slow`` defaults to 0.05);
``scripted_fail_after``
    for ``broken`` and ``dropper``: how many tokens to stream before failing (default 5; 0 fails
    before any output, which the server turns into an HTTP error or a silent disconnect).

By default the scripted models answer as fast as the machine allows (thousands of tokens per
second, no load time), which keeps tests quick. ``ScriptedEngine(pace=40, prompt_pace=800,
load_seconds=0.3)`` makes them look like a small model on a laptop instead, for the tutorials:
each generated token waits ``1 / pace`` s (unless the model or the request sets its own
``scripted_delay``), the prompt is read at ``prompt_pace`` tokens/s, and a fresh load takes
``load_seconds``. Only the timing fields change; the tokens are the same. ``slots=4`` serves at
most four requests at once, as Ollama with ``OLLAMA_NUM_PARALLEL=4`` does: the others wait
their turn (a client that hangs up while waiting leaves the queue); with ``max_queue=N`` too, as
``OLLAMA_MAX_QUEUE=N``, a request that finds N already waiting gets Ollama's 503
:data:`SERVER_BUSY`.

The models: ``echo`` (shows the rendered prompt), ``reasoner`` (inline ``<think>`` like an old
deepseek-r1 pull), ``thinker`` (the ``thinking`` field, levels low…max), ``chinese`` (UTF-8 split
across writes), ``slow``, ``lorem`` (endless Markdown, fast), ``broken`` (in-band error) and
``dropper`` (connection dropped). Three more are in the library but not installed, so that
``/api/pull`` has something to fetch: ``haiku`` (a three-line poem on the prompt's topic, 96 MB),
``embedder`` (embeddings only, 45 MB) and ``agent`` (calls the tools a chat message names, with
the arguments it gives, then answers from their results; 12 MB). See :class:`ScriptedEngine`
and ``tests/server`` for the exact texts.

Embeddings are bag-of-words vectors (64 numbers, texts sharing words point the same way). As in
Ollama ≥ 0.30, only ``embedder`` gives them: a chat model such as ``echo`` is loaded, then refused
with llama-server's 501 (:data:`~.engine.NO_EMBEDDINGS`; a 500 on ``/api/embeddings``), so pull
``embedder`` first. A server that plays an older Ollama
(``OllamaServer(version="0.12.6")``) gives vectors from every model, as Ollama did then.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import threading
import time
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from ..common.stops import StopFilter
from . import tokenizer
from .context import (
    DEFAULT_NUM_CTX,
    LEGACY_PROMPT_TOO_LONG,
    PromptTooLong,
    Truncation,
    answer_limit,
    fit_conversation,
    fit_prompt,
)
from .engine import (
    ChatJob,
    Done,
    Drop,
    Event,
    Fail,
    GenerateJob,
    ModelCard,
    Pause,
    Token,
)
from .prompting import render_chat, render_generate, template_capabilities, think_on
from .schema import synthesize

FAIL_MESSAGE = "an error was encountered while running the model: scripted failure"

TEMPLATE = (
    "{{ if .System }}<|system|>{{ .System }}\n{{ end }}"
    "{{ if .Suffix }}<|fim_prefix|>{{ .Prompt }}<|fim_suffix|>{{ .Suffix }}<|fim_middle|>"
    "{{ else }}<|user|>{{ .Prompt }}\n<|assistant|>{{ .Response }}\n{{ end }}"
)
"""The template of every scripted model: readable tags, FIM when a suffix is given."""

EMBEDDING_LENGTH = 64
"""Width of the scripted embeddings (and the cards' ``embedding_length``)."""

LICENSE = "Scripted test model from ollama-magic. No weights; Apache-2.0 like the package."


@dataclass(frozen=True)
class _Seen:
    """What a script may depend on: the prompt as the model saw it, and the request's knobs."""

    text: str  # the rendered, truncated prompt
    topic: str  # a short phrase from the user's own words
    think: bool
    level: str  # "low" | "medium" | "high" | "max"
    images: tuple[bytes, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    messages: tuple[dict[str, Any], ...] = ()  # chat: the conversation as sent
    tools: tuple[dict[str, Any], ...] = ()  # chat: the request's tools


@dataclass
class _Script:
    """A model's answer: reasoning for the ``thinking`` field, then ``response`` pieces."""

    answer: Iterable[str]
    answer_text: str  # what ``format: "json"`` wraps; the answer's text without inline reasoning
    thinking: list[str] = field(default_factory=list)
    inline: list[str] = field(default_factory=list)  # reasoning written into ``response``
    fail_after: int | None = None
    ending: Fail | Drop | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)  # tool calls, after the answer


@dataclass(frozen=True)
class _Model:
    card: ModelCard
    script: Callable[[_Seen], _Script]
    delay: float = 0.0
    wire_split: int = 0


def _topic(prompt: str) -> str:
    words = prompt.split()
    text = " ".join(words[:8]) + (" …" if len(words) > 8 else "")
    if len(text) > 40:
        text = text[:40] + "…"
    return text.strip(" .?!:;,。？！：；，") or "nothing in particular"


def _script(text: str) -> _Script:
    return _Script(answer=tokenizer.split(text), answer_text=text)


def _echo(seen: _Seen) -> _Script:
    text = "Echo: " + seen.text
    for number, image in enumerate(seen.images, 1):
        text += f" [image {number}: {len(image)} bytes]"
    return _script(text)


def _reasoner(seen: _Seen) -> _Script:
    reasoning = (
        f"The user asks about {seen.topic}. I should explain it clearly and briefly. First, say "
        "what it is in one sentence. Then give two concrete points and end with a one-line "
        "summary. A heading and a short list will make it easy to read."
    )
    title = seen.topic[:1].upper() + seen.topic[1:]
    answer = (
        f"## {title}\n\n**{seen.topic}** is best understood step by step.\n\n"
        "- **What:** the core idea in plain words.\n"
        "- **Why:** where it helps in practice.\n\n"
        "In short: start simple, then add detail."
    )
    script = _script(answer)
    # Tags cut mid-word, as a real tokenizer splits them, so clients must buffer across chunks.
    script.inline = ["<thi", "nk>", "\n", *tokenizer.split(reasoning), "\n", "</th", "ink>", "\n\n"]
    return script


_THOUGHTS = (
    "Okay, the user wants to know about {topic}.",
    " Let me recall the key facts first.",
    " The answer should be short and well structured.",
    " A one-line definition, then three numbered points.",
    " Should I add an example? A tiny one would help.",
    " I must not forget why it matters in practice.",
    " Let me double-check that nothing important is missing.",
    " The three points: what it is, why it matters, where to learn more.",
    " Is the wording simple enough for a beginner?",
    " I think so, but one sentence could be shorter.",
    " Checking the order of the points again.",
    " Definition first is right; readers need it to follow the rest.",
    " Then the practical angle, then the pointer to further reading.",
    " One more pass for accuracy.",
    " Everything still holds.",
)
_THOUGHT_COUNTS = {"low": 2, "medium": 4, "high": 8, "max": len(_THOUGHTS)}


def _thinker(seen: _Seen) -> _Script:
    answer = (
        f"**{seen.topic}** in brief:\n\n"
        "1. What it is: a clear definition.\n"
        "2. Why it matters: it shows up in practice.\n"
        "3. Where next: try a small example yourself."
    )
    script = _script(answer)
    if seen.think:
        count = _THOUGHT_COUNTS.get(seen.level, _THOUGHT_COUNTS["medium"])
        thoughts = "".join(_THOUGHTS[:count]).format(topic=seen.topic)
        script.thinking = tokenizer.split(thoughts + " That covers it; time to write the answer.")
    return script


def _chinese(seen: _Seen) -> _Script:
    return _script(
        f"关于「{seen.topic}」：人工智能（AI）是计算机科学的一个分支，研究如何让机器像人一样"
        "感知、学习、推理和决策。如今，人工智能已经广泛应用于机器翻译、语音识别、医疗诊断和"
        "自动驾驶等领域。学习人工智能，可以从数学、编程和数据分析开始。🤖"
    )


def _slow(seen: _Seen) -> _Script:
    text = (
        f"This is a slow answer about {seen.topic}. Each token arrives a little while after the "
        "one before, so you can watch the text stream into the cell word by word. That is all."
    )
    pieces = tokenizer.split(text)
    wanted = seen.options.get("num_predict")
    if isinstance(wanted, int) and wanted > len(pieces):
        # Asked for more: keep counting (" 1", " 2", …) so long slow streams exist for tests.
        pieces += [f" {n}" for n in range(1, wanted - len(pieces) + 1)]
    return _Script(answer=pieces, answer_text=text)


LOREM_MARKDOWN = '''# Lorem ipsum

Lorem ipsum dolor sit amet, consectetur adipiscing elit. Sed do eiusmod tempor incididunt \
ut labore et dolore magna aliqua, with some *emphasis*, some **strong words** and `inline code`.

## A bullet list

- Ut enim ad minim veniam, quis nostrud exercitation ullamco.
- Duis aute irure dolor in `reprehenderit` in voluptate velit.
- Excepteur sint occaecat cupidatat non proident.

## Numbered steps

1. Sunt in culpa qui officia deserunt mollit.
2. Anim id est laborum, curabitur pretium tincidunt.
3. Nulla facilisi: integer lacinia sollicitudin massa.

## Some code

```python
def compare(a: int, b: int) -> int:
    """Return -1, 0 or 1, like cmp()."""
    if a < b:
        return -1
    return 1 if a > b else 0
```

```html
<p class="note">x &lt; y &amp;&amp; y &gt; z</p>
```

## A table

| Name  | Value | Note      |
|-------|------:|-----------|
| alpha |     1 | `x < y`   |
| beta  |    22 | **bold**  |
| gamma |   333 | plain     |

> Quote: vivamus magna justo, lacinia eget consectetur sed, convallis at tellus.

---

'''
"""One cycle of ``lorem``'s endless answer."""

_LOREM_PIECES: list[str] | None = None


def _lorem_pieces() -> list[str]:
    global _LOREM_PIECES
    if _LOREM_PIECES is None:
        _LOREM_PIECES = tokenizer.split(LOREM_MARKDOWN)
    return _LOREM_PIECES


def _lorem(seen: _Seen) -> _Script:
    pieces = _lorem_pieces()
    return _Script(answer=itertools.cycle(pieces), answer_text="".join(pieces[:60]))


_HAIKU = (
    ("{topic}, at first light", "quiet words drift into lines", "the cursor rests, still"),
    ("thinking of {topic}", "a kettle hums in the dark", "one thought, then the next"),
    ("{topic} in the rain", "the server answers slowly", "green lights blink: all done"),
)


def _haiku(seen: _Seen) -> _Script:
    lines = _HAIKU[zlib.crc32(seen.topic.encode()) % len(_HAIKU)]
    text = "\n".join(lines).format(topic=seen.topic)
    return _script(text[:1].upper() + text[1:])


AGENT_TEMPLATE = (
    "{{ if .System }}<|system|>{{ .System }}\n{{ end }}"
    "{{ if .Tools }}<|tools|>{{ .Tools }}\n{{ end }}"
    "<|user|>{{ .Prompt }}\n<|assistant|>{{ .Response }}\n"
)
"""``agent``'s template: it uses ``.Tools``, which is how Ollama knows a model can call tools."""

# name(key=value, ...) written out, or a tool's name followed by key=value pairs.
_WRITTEN_CALL = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\(([^()]*)\)")
_PAIR = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(\"[^\"]*\"|'[^']*'|[^,\s)]+)")


def _value(text: str) -> Any:
    """A value as the prompt wrote it: quoted text, a JSON number or literal, else a word."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    text = text.rstrip(".;:!?")
    try:
        return json.loads(text)
    except ValueError:
        return text


def _asked_calls(prompt: str, tools: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """The calls a prompt asks for, in order: ``name(k=v)`` written out (any name, so a model
    calling a function it was not given can be tested), or a tool's name followed by ``k=v``
    pairs up to the next call."""
    found: list[tuple[int, int, str, str | None]] = []  # start, end, name, written arguments
    for match in _WRITTEN_CALL.finditer(prompt):
        found.append((match.start(), match.end(), match.group(1), match.group(2)))
    for name in tools:
        for match in re.finditer(rf"\b{re.escape(name)}\b(?!\s*\()", prompt):
            found.append((match.start(), match.end(), name, None))
    found.sort()
    calls = []
    for i, (_, end, name, written) in enumerate(found):
        if written is None:
            stop = found[i + 1][0] if i + 1 < len(found) else len(prompt)
            written = prompt[end:stop]
        arguments = {key: _value(raw) for key, raw in _PAIR.findall(written)}
        calls.append((name, arguments))
    return calls


def _agent(seen: _Seen) -> _Script:
    """Calls the tools the last user message names, with the arguments it gives; once the
    results are back, answers from them. "forever" in the message: it calls them every round."""
    last_user = max(
        (i for i, m in enumerate(seen.messages) if m.get("role") == "user"), default=-1
    )
    prompt = seen.messages[last_user].get("content", "") if last_user >= 0 else ""
    results = [m for m in seen.messages[last_user + 1 :] if m.get("role") == "tool"]
    names = [
        str(tool.get("function", {}).get("name", ""))
        for tool in seen.tools
        if isinstance(tool, dict) and isinstance(tool.get("function"), dict)
    ]
    if seen.tools and (not results or "forever" in prompt):
        asked = _asked_calls(prompt, [name for name in names if name])
        if asked:
            rounds = sum(1 for m in seen.messages[last_user + 1 :] if m.get("role") == "assistant")
            calls = [
                {
                    "id": "call_" + hashlib.sha256(f"{rounds}:{i}:{name}".encode()).hexdigest()[:8],
                    "function": {"index": i, "name": name, "arguments": arguments},
                }
                for i, (name, arguments) in enumerate(asked)
            ]
            return _Script(answer=[], answer_text="", calls=calls)
    if results:
        lines = []
        for message in results:
            name = message.get("tool_name") or "the tool"
            content = str(message.get("content", "")).strip()
            if content.startswith("Error:"):
                lines.append(f"- **{name}** failed: {content[6:].strip()}")
            else:
                lines.append(f"- **{name}**: {content}")
        return _script("Here is what the tools said:\n\n" + "\n".join(lines))
    if seen.tools:
        return _script(f"No tool was named, so I answer directly: {seen.topic}.")
    return _script(f"I was given no tools, so I answer directly: {seen.topic}.")


def _failing(text: str, ending: Fail | Drop) -> Callable[[_Seen], _Script]:
    def script(seen: _Seen) -> _Script:
        after = seen.options.get("scripted_fail_after", 5)
        fail_after = after if isinstance(after, int) and after >= 0 else 5
        return _Script(
            answer=tokenizer.split(text), answer_text=text, fail_after=fail_after, ending=ending
        )

    return script


def _card(
    name: str,
    day: int,
    *,
    capabilities: tuple[str, ...] = ("completion",),
    parameters: str = "",
    system: str = "",
    size: int = 8_000_000,
    template: str = TEMPLATE,
) -> ModelCard:
    derived = template_capabilities(template)  # as Ollama does: tools from .Tools, and so on
    capabilities += tuple(c for c in derived if c not in capabilities and c != "insert")
    return ModelCard(
        name=f"{name}:latest",
        family="scripted",
        parameter_size="4M",
        quantization_level="F16",
        size=size,
        digest=hashlib.sha256(f"ollama-magic scripted model {name}".encode()).hexdigest(),
        capabilities=capabilities,
        context_length=32768,
        template=template,
        parameters=parameters,
        system=system,
        license=LICENSE,
        modified_at=datetime(2025, 1, 1, 12, tzinfo=timezone.utc) + timedelta(days=day),
        model_info={"general.basename": name, "general.parameter_count": 4_000_000},
        embedding_length=EMBEDDING_LENGTH,
    )


def _models() -> list[_Model]:
    """Newest first, as ``/api/tags`` lists them."""
    return [
        _Model(_card("echo", 8, capabilities=("completion", "insert", "vision")), _echo),
        _Model(_card("reasoner", 7, size=9_000_000), _reasoner),
        _Model(
            _card(
                "thinker",
                6,
                capabilities=("completion", "thinking"),
                parameters="temperature 0.6\ntop_k 20",
                size=9_500_000,
            ),
            _thinker,
        ),
        _Model(_card("chinese", 5, size=7_000_000), _chinese, wire_split=5),
        _Model(_card("slow", 4), _slow, delay=0.05),
        _Model(_card("lorem", 3, parameters="num_predict 300", size=6_000_000), _lorem),
        _Model(_card("broken", 2), _failing("This answer is about to", Fail(FAIL_MESSAGE))),
        _Model(_card("dropper", 1), _failing("The line will drop now", Drop())),
    ]


def _library() -> list[_Model]:
    """Pullable but not installed at first (sizes make a pull's progress bar worth watching)."""
    return [
        _Model(_card("haiku", 10, size=96_000_000), _haiku),
        _Model(
            _card(
                "embedder",
                9,
                capabilities=("embedding",),
                size=45_000_000,
                template="{{ .Prompt }}",
            ),
            _echo,  # never runs: the server refuses to generate without "completion"
        ),
        _Model(_card("agent", 11, size=12_000_000, template=AGENT_TEMPLATE), _agent),
    ]


def _token(
    kind: str, text: str, wire_split: int, logprobs: tuple[dict[str, Any], ...] = ()
) -> Token:
    if kind == "thinking":
        return Token(thinking=text, wire_split=wire_split, logprobs=logprobs)
    return Token(response=text, wire_split=wire_split, logprobs=logprobs)


def _num_ctx(options: dict[str, Any]) -> int:
    num_ctx = options.get("num_ctx", DEFAULT_NUM_CTX)
    return num_ctx if isinstance(num_ctx, int) and num_ctx > 0 else DEFAULT_NUM_CTX


def _fit(
    ids: list[int], options: dict[str, Any], truncation: Truncation, truncate: bool, shift: bool
) -> list[int]:
    """The prompt cut (or refused: PromptTooLong) as the selected Ollama era does; the scripted
    tokenizer adds no BOS."""
    return fit_prompt(
        ids,
        num_ctx=_num_ctx(options),
        options=options,
        truncation=truncation,
        truncate=truncate,
        shift=shift,
    )


_ALTERNATIVES: tuple[str, ...]
_ALTERNATIVES = (" the", " a", ",", ".", " and", " of", " to", "\n", " is", " in", " it", " I")
_ALTERNATIVES += (" that", " you", " for", " on", " with", " as", " this", " be", " at", " or")


def _token_logprob(piece: str) -> float:
    """A stable log probability for a token: from its hash, in (-4, -0.001]."""
    return -round(0.001 + (zlib.crc32(piece.encode()) % 4000) / 1000, 6)


def _logprob_entry(piece: str, top: int) -> dict[str, Any]:
    """Ollama's per-token ``logprobs`` entry for a scripted token, the same every time: its
    ``top_logprobs`` are the token itself and ``top − 1`` common tokens, most likely first."""

    def entry(text: str, logprob: float) -> dict[str, Any]:
        out: dict[str, Any] = {"token": text, "logprob": logprob}
        if text:
            out["bytes"] = list(text.encode())
        return out

    chosen = _token_logprob(piece)
    shaped = entry(piece, chosen)
    if top > 0:
        seed = zlib.crc32(piece.encode())
        others = [alt for alt in _ALTERNATIVES if alt != piece]
        start = seed % len(others)
        picks = (others[start:] + others[:start])[: top - 1]
        alternatives = [(piece, chosen)] + [
            (alt, round(chosen - 0.25 * (rank + 1) - (zlib.crc32(alt.encode()) % 100) / 1000, 6))
            for rank, alt in enumerate(picks)
        ]
        shaped["top_logprobs"] = [entry(text, lp) for text, lp in alternatives]
    return shaped


def _limit(options: dict[str, Any]) -> int:
    value = options.get("num_predict")
    if not isinstance(value, int) or isinstance(value, bool):
        value = -1
    return answer_limit(value, _num_ctx(options))


def _stream(
    pieces: Iterable[tuple[str, str]],
    *,
    limit: int | None,
    stops: list[str],
    delay: float,
    wire_split: int,
    fail_after: int | None,
    generated: list[int],
    top_logprobs: int | None = None,
) -> Generator[Event, None, str]:
    """Yield the tokens of ``pieces`` with the common knobs applied; return the done reason.

    ``generated`` collects the ids of the generated tokens (for ``context``). Returns ``"fail"``
    when a script with ``fail_after`` streamed that many tokens (or ran out): its ending follows.
    """
    if fail_after == 0:
        return "fail"
    if limit == 0:
        return "length"
    pause = Pause(delay) if delay > 0 else None
    filters = {"response": StopFilter(stops), "thinking": StopFilter(stops)} if stops else None
    last_kind = ""
    count = 0
    token_id = tokenizer.token_id
    for kind, piece in pieces:
        if pause is not None:
            yield pause
        count += 1
        generated.append(token_id(piece))
        logprobs = () if top_logprobs is None else (_logprob_entry(piece, top_logprobs),)
        if filters is None:
            yield _token(kind, piece, wire_split, logprobs)
        else:
            if last_kind and kind != last_kind:
                rest = filters[last_kind].flush()
                if rest:
                    yield _token(last_kind, rest, wire_split)
            last_kind = kind
            text, hit = filters[kind].push(piece)
            if hit:
                if text:
                    yield _token(kind, text, wire_split)
                return "stop"
            yield _token(kind, text, wire_split, logprobs)
        if fail_after is not None and count >= fail_after:
            return "fail"
        if limit is not None and count >= limit:
            break
    if filters is not None and last_kind:
        rest = filters[last_kind].flush()
        if rest:
            yield _token(last_kind, rest, wire_split)
    if limit is not None and count >= limit:
        return "length"
    return "fail" if fail_after is not None else "stop"


_THINK_OPEN = "<think>\n"
_THINK_CLOSE = "\n</think>\n\n"


#: Ollama's answer when its queue is full (``server/sched.go`` ErrMaxQueue; two spaces).
SERVER_BUSY = "server busy, please try again.  maximum pending requests exceeded"


class ScriptedEngine:
    """Eight deterministic models and two pullable ones (see the module docstring); the
    server's default engine.

    ``calls`` records every ``("load" | "unload", name)`` the server made, for tests.
    ``pace``, ``prompt_pace``, ``load_seconds``, ``slots`` and ``max_queue`` simulate a real
    model's timing, its parallel slots and its queue limit (see the module docstring); all off
    by default.

    :meth:`embed` gives any model's bag-of-words vectors; the server asks it for a chat model's
    only when it plays an Ollama before 0.30 (since, chat models refuse; see the module docstring).
    """

    def __init__(
        self,
        *,
        pace: float | None = None,
        prompt_pace: float | None = None,
        load_seconds: float = 0.0,
        slots: int | None = None,
        max_queue: int | None = None,
    ) -> None:
        if slots is not None and slots < 1:
            raise ValueError(f"slots must be at least 1, not {slots!r}")
        if max_queue is not None and (slots is None or max_queue < 0):
            raise ValueError(f"max_queue {max_queue!r} needs slots and must not be negative")
        for name, value in (("pace", pace), ("prompt_pace", prompt_pace)):
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive, not {value!r}")
        if not load_seconds >= 0:
            raise ValueError(f"load_seconds must not be negative, not {load_seconds!r}")
        installed, library = _models(), _library()
        self._models = {model.card.name: model for model in installed + library}
        self._installed = [model.card for model in installed]
        self._library = [model.card for model in library]
        self.pace = pace
        self.prompt_pace = prompt_pace
        self.load_seconds = load_seconds
        self.slots = slots
        self._free = threading.BoundedSemaphore(slots) if slots is not None else None
        self.max_queue = max_queue
        self._queued = 0
        self._queue_lock = threading.Lock()
        self.calls: list[tuple[str, str]] = []

    def models(self) -> list[ModelCard]:
        return list(self._installed)

    def library(self) -> list[ModelCard]:
        """Models ``/api/pull`` can install besides :meth:`models` (``haiku``, ``embedder``,
        ``agent``)."""
        return list(self._library)

    def load(self, name: str, options: dict[str, Any]) -> None:
        self.calls.append(("load", name))
        if self.load_seconds:
            time.sleep(self.load_seconds)  # a simulated load; the server times it as Ollama does

    def unload(self, name: str) -> None:
        self.calls.append(("unload", name))

    def generate(self, job: GenerateJob) -> Iterator[Event]:
        started = time.perf_counter_ns()
        prefix = tokenizer.decode(job.context) if job.context else ""
        ids = tokenizer.encode(prefix + render_generate(job))
        try:
            prompt_ids = _fit(ids, job.options, job.truncation, job.truncate, job.shift)
        except PromptTooLong as refused:
            return iter([Fail(str(refused), status=400)])
        seen = self._seen(job.card, prompt_ids, job.prompt, job.think, job.images, job.options)
        return self._run(
            job.card,
            seen,
            prompt_ids,
            job.format,
            job.options,
            started,
            raw=job.raw,
            top_logprobs=job.top_logprobs,
        )

    def chat(self, job: ChatJob) -> Iterator[Event]:
        started = time.perf_counter_ns()
        def encode(messages: tuple[dict[str, Any], ...]) -> list[int]:
            return tokenizer.encode(render_chat(replace(job, messages=messages)))

        num_ctx = _num_ctx(job.options)
        if job.truncate:
            ids, _ = fit_conversation(job.messages, encode, num_ctx)
        else:
            ids = encode(job.messages)
        try:
            prompt_ids = _fit(ids, job.options, job.truncation, job.truncate, job.shift)
        except PromptTooLong as refused:
            return iter([Fail(str(refused), status=400)])
        last_user: dict[str, Any] = next(
            (m for m in reversed(job.messages) if m.get("role") == "user"), {}
        )
        images = tuple(image for m in job.messages for image in m.get("images", ()))
        seen = self._seen(
            job.card, prompt_ids, last_user.get("content", ""), job.think, images, job.options
        )
        seen = replace(seen, messages=job.messages, tools=job.tools)
        return self._run(
            job.card,
            seen,
            prompt_ids,
            job.format,
            job.options,
            started,
            chat=True,
            top_logprobs=job.top_logprobs,
        )

    def embed(self, name: str, inputs: list[str], options: dict[str, Any]) -> list[list[float]]:
        """Bag-of-token vectors (64 dimensions), L2-normalised: equal texts, equal vectors."""
        return self.embed_with_count(name, inputs, options)[0]

    def embed_with_count(
        self, name: str, inputs: list[str], options: dict[str, Any], truncate: bool = True
    ) -> tuple[list[list[float]], int]:
        """:meth:`embed`, plus how many tokens the inputs have (``prompt_eval_count``).

        An input longer than ``num_ctx`` tokens is cut to that many, or with ``truncate``
        false refused with Ollama's 400 (:class:`~.context.PromptTooLong`).
        """
        vectors = []
        count = 0
        num_ctx = _num_ctx(options)
        for text in inputs:
            vector = [0.0] * EMBEDDING_LENGTH
            pieces = tokenizer.split(text)
            if len(pieces) > num_ctx:
                if not truncate:
                    raise PromptTooLong(LEGACY_PROMPT_TOO_LONG)
                pieces = pieces[:num_ctx]
            count += len(pieces)
            for piece in pieces:
                crc = zlib.crc32(piece.strip().lower().encode())
                vector[crc % EMBEDDING_LENGTH] += 1.0 if crc & 0x100 else -1.0
            norm = sum(x * x for x in vector) ** 0.5 or 1.0
            vectors.append([x / norm for x in vector])
        return vectors, count

    def _seen(
        self,
        card: ModelCard,
        prompt_ids: list[int],
        prompt: str,
        think: bool | str | None,
        images: tuple[bytes, ...],
        options: dict[str, Any],
    ) -> _Seen:
        level = think if isinstance(think, str) else "medium"
        return _Seen(
            text=tokenizer.decode(prompt_ids),
            topic=_topic(prompt),
            think=think_on(card, think) and "thinking" in card.capabilities,
            level=level,
            images=images,
            options=options,
        )

    def _run(
        self,
        card: ModelCard,
        seen: _Seen,
        prompt_ids: list[int],
        fmt: str | dict[str, Any] | None,
        options: dict[str, Any],
        started: int,
        *,
        raw: bool = False,
        chat: bool = False,
        top_logprobs: int | None = None,
    ) -> Iterator[Event]:
        if self._free is not None and not self._free.acquire(blocking=False):
            with self._queue_lock:
                full = self.max_queue is not None and self._queued >= self.max_queue
                self._queued += 0 if full else 1
            if full:
                yield Fail(SERVER_BUSY, status=503)
                return
            try:
                while not self._free.acquire(timeout=0.02):  # queued, as in Ollama's scheduler
                    yield Pause(0)  # lets the server notice a client that hung up while waiting
            finally:
                with self._queue_lock:
                    self._queued -= 1
        try:
            yield from self._paced(
                card, seen, prompt_ids, fmt, options, started, raw=raw, chat=chat,
                top_logprobs=top_logprobs,
            )
        finally:
            if self._free is not None:
                self._free.release()

    def _paced(
        self,
        card: ModelCard,
        seen: _Seen,
        prompt_ids: list[int],
        fmt: str | dict[str, Any] | None,
        options: dict[str, Any],
        started: int,
        *,
        raw: bool = False,
        chat: bool = False,
        top_logprobs: int | None = None,
    ) -> Iterator[Event]:
        model = self._models[card.base or card.name]
        script = model.script(seen)
        pieces = self._pieces(script, fmt, chat=chat)
        if self.prompt_pace:
            yield Pause(len(prompt_ids) / self.prompt_pace)
        prompt_ns = max(1, time.perf_counter_ns() - started)
        paced = model.delay or (1 / self.pace if self.pace else 0.0)
        delay = options.get("scripted_delay", paced)
        generated: list[int] = []
        eval_started = time.perf_counter_ns()
        reason = yield from _stream(
            pieces,
            limit=_limit(options),
            stops=options.get("stop") or [],
            delay=delay if isinstance(delay, (int, float)) and not isinstance(delay, bool) else 0,
            wire_split=model.wire_split,
            fail_after=script.fail_after,
            generated=generated,
            top_logprobs=top_logprobs,
        )
        if reason == "fail" and script.ending is not None:
            yield script.ending
            return
        if reason == "stop" and script.calls:
            yield from self._calls(script.calls, delay, generated)
        eval_ns = time.perf_counter_ns() - eval_started if generated else 0
        context = None
        if not raw and not chat:
            context = tuple(prompt_ids) + self._context_ids(script, generated)
        yield Done(
            done_reason=reason,
            prompt_eval_count=len(prompt_ids),
            prompt_eval_duration=prompt_ns,
            eval_count=len(generated),
            eval_duration=max(1, eval_ns) if generated else 0,
            context=context,
        )

    @staticmethod
    def _calls(calls: list[dict[str, Any]], delay: Any, generated: list[int]) -> Iterator[Event]:
        """Each call as the generic parser sends it: its text is generated (and held back),
        then one chunk carries the finished call with empty content."""
        pause = Pause(delay) if isinstance(delay, (int, float)) and delay > 0 else None
        for call in calls:
            text = json.dumps(call["function"], ensure_ascii=False)
            for piece in tokenizer.split(f"<tool_call>{text}</tool_call>"):
                if pause is not None:
                    yield pause
                generated.append(tokenizer.token_id(piece))
            yield Token(tool_calls=(call,))

    @staticmethod
    def _pieces(
        script: _Script, fmt: str | dict[str, Any] | None, *, chat: bool
    ) -> Iterable[tuple[str, str]]:
        if fmt:
            document = synthesize(fmt) if isinstance(fmt, dict) else {"answer": script.answer_text}
            text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
            answer: Iterable[str] = tokenizer.split(text)
            # Generate constrains the whole output, so no reasoning; chat thinks, then answers.
            thinking = script.thinking if chat else []
            inline: list[str] = []
        else:
            answer, thinking, inline = script.answer, script.thinking, script.inline
        return itertools.chain(
            (("thinking", piece) for piece in thinking),
            (("response", piece) for piece in inline),
            (("response", piece) for piece in answer),
        )

    @staticmethod
    def _context_ids(script: _Script, generated: list[int]) -> tuple[int, ...]:
        """Generated ids, with the ``<think>`` tags a thinking model emits around its reasoning."""
        thought = min(len(script.thinking), len(generated))
        if not thought:
            return tuple(generated)
        opening, closing = tokenizer.encode(_THINK_OPEN), tokenizer.encode(_THINK_CLOSE)
        return (*opening, *generated[:thought], *closing, *generated[thought:])
