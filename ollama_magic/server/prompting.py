"""The prompt text a model sees, built from a job the way Ollama's handlers build it.

Generate: ``raw`` sends the prompt verbatim; otherwise the request's ``template`` (or the model's)
is executed with ``System`` (request, else the model's), ``Prompt``, ``Response`` and the think
values, or with only ``Prompt``/``Suffix``/``Response`` for fill-in-the-middle. Old-style
templates render one turn per user message (generate is a one-turn chat) and the last turn is
cut right after ``{{ .Response }}``, so the model continues the assistant's answer. Any engine
can use these; the ``context`` prefix is the engine's business because only it can detokenize.
Pure: no I/O.

>>> from ollama_magic.server.engine import GenerateJob, ModelCard
>>> card = ModelCard("m:latest", "f", "1M", "F16", 1, "0" * 64, template="[{{ .Prompt }}]")
>>> render_generate(GenerateJob(model="m", card=card, prompt="hi"))
'[hi]'
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .decoding import think_enabled
from .engine import ChatJob, GenerateJob, ModelCard
from .gotemplate import Template, parse


def think_on(card: ModelCard, think: bool | str | None) -> bool:
    """Whether the model should reason: thinking models default to yes when ``think`` is absent."""
    if think is None:
        return "thinking" in card.capabilities
    return think_enabled(think)


def template_capabilities(template: str, *, jinja: bool = False) -> tuple[str, ...]:
    """What a chat template lets a model do, as Ollama derives it (``Capabilities``):
    ``tools`` when a Go template uses ``.Tools`` (a GGUF Jinja template: when its text says
    ``tools`` or ``tool_call``), ``insert`` when a Go template uses ``.Suffix``.

    >>> template_capabilities("{{ if .Tools }}{{ .Tools }}{{ end }}{{ .Prompt }}")
    ('tools',)
    >>> template_capabilities("{% for m in messages %}{{ m.content }}{% endfor %}", jinja=True)
    ()
    """
    if jinja:
        return ("tools",) if "tools" in template or "tool_call" in template else ()
    try:
        fields = parse(template).fields
    except ValueError:
        return ()
    pairs = (("Tools", "tools"), ("Suffix", "insert"))
    return tuple(name for field, name in pairs if field in fields)


def _think_values(card: ModelCard, think: bool | str | None) -> dict[str, Any]:
    on = think_on(card, think)
    effective = think if think is not None else (True if on else None)
    level = ""
    if isinstance(effective, str):
        level = effective
    elif effective is True:
        level = "medium"
    return {"Think": on, "ThinkLevel": level, "IsThinkSet": effective is not None}


def render_generate(job: GenerateJob) -> str:
    """The rendered prompt for a generate job (without any ``context`` prefix)."""
    if job.raw:
        return job.prompt
    template = parse(job.template or job.card.template)
    if job.suffix:
        return template.execute({"Prompt": job.prompt, "Suffix": job.suffix, "Response": ""})
    system = job.system or job.card.system
    extra = _think_values(job.card, job.think)
    if job.card.messages and not job.context:
        # A created model's MESSAGEs come between the system prompt and the prompt.
        system_message = [{"role": "system", "content": system}] if system else []
        user = {"role": "user", "content": job.prompt}
        return _render_turns(template, [*system_message, *job.card.messages, user], extra)
    values = {"System": system, "Prompt": job.prompt, "Response": "", **extra}
    # Ollama renders generate as a one-turn chat, so the turn is cut after {{ .Response }} too.
    return template.execute(values, cut_after="Response")


def render_chat(job: ChatJob, template: Template | None = None) -> str:
    """The rendered prompt for a chat job, using an old-style (``.Prompt``) template.

    A created model's MESSAGEs come first; its system prompt before them unless the request
    starts with its own.
    """
    template = template or parse(job.card.template)
    messages: Sequence[dict[str, Any]] = [*job.card.messages, *job.messages]
    if job.card.system and (not job.messages or job.messages[0].get("role") != "system"):
        messages = [{"role": "system", "content": job.card.system}, *messages]
    extra = _think_values(job.card, job.think)
    if job.tools:  # what {{ .Tools }} prints: the request's tools, as JSON
        extra["Tools"] = json.dumps(list(job.tools), ensure_ascii=False)
    return _render_turns(template, messages, extra)


def _render_turns(
    template: Template, messages: Sequence[dict[str, Any]], extra: dict[str, Any]
) -> str:
    """Messages through an old-style template, one execution per turn; the last turn is cut
    after ``{{ .Response }}``."""
    out: list[str] = []
    turn = {"System": "", "Prompt": "", "Response": ""}

    def flush() -> None:
        out.append(template.execute({**turn, **extra}))
        turn.update(System="", Prompt="", Response="")

    for message in messages:
        role, content = message.get("role", ""), message.get("content", "")
        if role == "system":
            if turn["Prompt"] or turn["Response"]:
                flush()
            turn["System"] = content
        elif role == "user":
            if turn["Response"]:
                flush()
            turn["Prompt"] = content
        elif role == "assistant":
            turn["Response"] = content
    out.append(template.execute({**turn, **extra}, cut_after="Response"))
    return "".join(out)
