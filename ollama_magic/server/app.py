"""The local Ollama-compatible server: :class:`OllamaServer`, and :func:`serve` for the CLI.

The request handler is assembled here from its parts: the plumbing in :mod:`.http` (body
limits, CORS and Host guards, NDJSON framing), and one mixin per endpoint family —
:mod:`.routes_models` (tags, show, ps, pull, push, create, copy, delete),
:mod:`.routes_generate` (generate, chat, embed) and :mod:`.routes_openai` (the ``/v1`` routes).
Models come from engines (:mod:`.engine`) through a :class:`~.store.ModelStore`; loaded ones
and their ``keep_alive`` are the :class:`~.scheduler.Scheduler`'s. The latest requests are
recorded as :class:`RecordedRequest`, so tests can check what a client sent and whether the
server saw it disconnect.

It reports and behaves as Ollama :data:`OLLAMA_VERSION` by default; ``version="0.12.6"``
brings back that era's prompt truncation for tests against old servers.
"""

from __future__ import annotations

import ipaddress
import threading
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime

from .context import Truncation, default_num_ctx
from .engine import Engine, ModelCard
from .http import (
    BODY_TOO_LARGE,
    DEFAULT_KEEP_REQUESTS,
    DEFAULT_MAX_BODY,
    DEFAULT_PULL_SPEED,
    DEFAULT_READ_TIMEOUT,
    RECORDED_BODY_BYTES,
    HTTPServer,
    Origins,
    RecordedRequest,
    allowed_origins,
)
from .routes_generate import GenerateRoutes
from .routes_models import ModelRoutes, qualified_name, short_name
from .routes_openai import OpenAIRoutes
from .scheduler import Scheduler, default_keep_alive
from .scripted import ScriptedEngine
from .store import ModelStore

__all__ = [
    "BODY_TOO_LARGE",
    "DEFAULT_MAX_BODY",
    "DEFAULT_PULL_SPEED",
    "DEFAULT_READ_TIMEOUT",
    "OLLAMA_VERSION",
    "Handler",
    "OllamaServer",
    "RecordedRequest",
    "allowed_origins",
    "qualified_name",
    "serve",
    "short_name",
]

OLLAMA_VERSION = "0.32.15"
"""The Ollama release this server behaves as: the newest stable one. 0.33.0-rc2 has the same
``/api`` behaviour, but a pre-release tag would be a poor default to report."""

DEFAULT_REGISTRY_NAMESPACES = ("me",)
"""Namespaces of Ollama's registry the server may push to by default: ``me``, standing in for
the signed-in user's own, so a push to ``me/model`` works and one to ``library/model`` or
``someone/model`` is refused as ollama.com refuses it."""

ROUTES: dict[str, dict[str, str]] = {
    "/": {"GET": "_root", "HEAD": "_root"},
    "/api/version": {"GET": "_version", "HEAD": "_version"},
    "/api/generate": {"POST": "_generate"},
    "/api/chat": {"POST": "_chat"},
    "/api/embed": {"POST": "_embed"},
    "/api/embeddings": {"POST": "_embeddings"},
    "/api/tags": {"GET": "_tags", "HEAD": "_tags"},
    "/api/show": {"POST": "_show"},
    "/api/ps": {"GET": "_ps"},
    "/api/pull": {"POST": "_pull"},
    "/api/push": {"POST": "_push"},
    "/api/create": {"POST": "_create"},
    "/api/copy": {"POST": "_copy"},
    "/api/delete": {"DELETE": "_delete"},
    "/v1/chat/completions": {"POST": "_v1_chat"},
    "/v1/completions": {"POST": "_v1_completions"},
    "/v1/embeddings": {"POST": "_v1_embeddings"},
    "/v1/models": {"GET": "_v1_models"},
}
"""Every route: path -> method -> handler method (gin's table in Ollama's routes.go)."""


class Handler(ModelRoutes, GenerateRoutes, OpenAIRoutes):
    """One connection's handler: the plumbing of :class:`~.http.BaseHandler` plus every
    endpoint family."""

    ROUTES = ROUTES
    PREFIX_ROUTES = (("/v1/models/", {"GET": "_v1_model"}),)


class OllamaServer:
    """An Ollama-compatible server on a background thread, for tests, notebooks and CI.

    **Parameters:**

    * ``engines`` – where models come from; default ``[ScriptedEngine()]``. On a name clash the
      first engine wins.
    * ``host``, ``port`` – bind address; port 0 picks a free port (see :attr:`url`).
    * ``version`` – what ``/api/version`` reports (default :data:`OLLAMA_VERSION`). A version
      before 0.30.11 (e.g. ``"0.12.6"``) also selects that era's prompt truncation (see
      :mod:`~ollama_magic.server.context`), unless ``legacy_truncation`` says otherwise. A
      version before 0.30 also gives vectors from a llama.cpp chat model on ``/api/embed``; from
      0.30 on such a model refuses with llama-server's 501, as in Ollama.
    * ``legacy_truncation`` – cut over-long prompts as Ollama 0.12 did (to exactly ``num_ctx``;
      ``truncate: false`` gives ``the input length exceeds the context length``) instead of
      as current Ollama does (to about half the window). None: from ``version``.
    * ``context_length`` – the default ``num_ctx``; None: ``OLLAMA_CONTEXT_LENGTH``, else 4096
      (Ollama's value without a large GPU). Capped at each model's trained length.
    * ``registry_namespaces`` – namespaces of Ollama's registry a push may go to (the signed-in
      user's); a push elsewhere there fails with ``unauthorized: access denied``. Pushes to
      other registries are not checked.
    * ``log_requests`` – print one line per request to stderr (the CLI turns this on).
    * ``pull_speed`` – bytes per second of simulated ``/api/pull`` and ``/api/push`` transfers
      (attribute of the same name; default :data:`DEFAULT_PULL_SPEED`, about 2 s for the
      96 MB ``haiku``).
    * ``max_body`` – largest request body in bytes (:data:`DEFAULT_MAX_BODY`); larger ones get
      413 ``{"error":"http: request body too large"}`` without being read.
    * ``read_timeout`` – seconds a client may take to send a request head, or stall while
      sending a body (:data:`DEFAULT_READ_TIMEOUT`); then its connection is dropped.
    * ``keep_requests`` – how many of the latest requests :attr:`requests` keeps (0: none).
    * ``origins`` – the allowed web origins; default: ``OLLAMA_ORIGINS`` plus the local ones
      (:func:`allowed_origins`). Requests without an ``Origin`` header (``requests``, the
      ``ollama`` client, kernels) are not affected.

    Installed models live in :attr:`store` (a :class:`~ollama_magic.server.store.ModelStore`):
    at first every engine's models, then whatever pull, create, copy and delete make of them.

    **Usage:**

    ``with OllamaServer() as server: requests.post(server.url + "/api/generate", ...)``. The
    socket is bound in the constructor, so :attr:`url` is known before :meth:`start`.
    """

    def __init__(
        self,
        engines: list[Engine] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        version: str = OLLAMA_VERSION,
        *,
        legacy_truncation: bool | None = None,
        context_length: int | None = None,
        registry_namespaces: Sequence[str] = DEFAULT_REGISTRY_NAMESPACES,
        log_requests: bool = False,
        pull_speed: float = DEFAULT_PULL_SPEED,
        max_body: int = DEFAULT_MAX_BODY,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        keep_requests: int = DEFAULT_KEEP_REQUESTS,
        origins: Sequence[str] | None = None,
    ) -> None:
        if not pull_speed > 0:
            raise ValueError(f"pull_speed must be positive, not {pull_speed!r}")
        if not read_timeout > 0:
            raise ValueError(f"read_timeout must be positive, not {read_timeout!r}")
        self.engines: list[Engine] = list(engines) if engines is not None else [ScriptedEngine()]
        self.version = version
        legacy = _before(version, (0, 30, 11)) if legacy_truncation is None else legacy_truncation
        self.truncation = Truncation(legacy=legacy)
        # Before 0.30 Ollama's own runners embedded with any model; since, llama-server refuses.
        self.completion_models_embed = _before(version, (0, 30, 0))
        self.default_num_ctx = context_length if context_length else default_num_ctx()
        self.registry_namespaces = tuple(registry_namespaces)
        self.log_requests = log_requests
        self.pull_speed = pull_speed
        self.max_body = max_body
        self.read_timeout = read_timeout
        self.keep_requests = keep_requests
        self.origins = list(origins) if origins is not None else allowed_origins()
        self._origins = Origins(self.origins)
        self.store = ModelStore(self.engines)
        self.scheduler = Scheduler(default_keep_alive())
        self._records: deque[RecordedRequest] = deque()
        self._recorded_bytes = 0
        self._records_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_at = datetime.now().astimezone()
        self._httpd = HTTPServer((host, port), self, Handler)
        bound_host, bound_port = self._httpd.server_address[:2]
        self.host = str(bound_host)
        self.port = int(bound_port)
        try:
            self._loopback = ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            self._loopback = self.host == "localhost"

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321`` (no trailing slash)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        """The latest requests, in arrival order (a snapshot list): at most ``keep_requests``,
        and older ones go early when their bodies pass :data:`RECORDED_BODY_BYTES`."""
        with self._records_lock:
            return list(self._records)

    def clear(self) -> None:
        """Forget the recorded requests."""
        with self._records_lock:
            self._records.clear()
            self._recorded_bytes = 0

    def start(self) -> OllamaServer:
        """Serve on a daemon thread; returns ``self`` so ``OllamaServer().start()`` chains."""
        if self._thread is None:
            self.scheduler.start()
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"ollama-magic-server-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve on the calling thread until Ctrl-C, then stop."""
        self.scheduler.start()
        try:
            self._httpd.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop serving, end in-flight streams, close the socket and unload every model."""
        self._stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()
        self.scheduler.close()

    def __enter__(self) -> OllamaServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _record(self, record: RecordedRequest) -> None:
        """Keep ``record``, within ``keep_requests`` and :data:`RECORDED_BODY_BYTES`."""
        with self._records_lock:
            self._records.append(record)
            self._recorded_bytes += len(record.body)
            while self._records and (
                len(self._records) > self.keep_requests
                or (self._recorded_bytes > RECORDED_BODY_BYTES and len(self._records) > 1)
            ):
                self._recorded_bytes -= len(self._records.popleft().body)

    def _cards(self) -> list[ModelCard]:
        return self.store.cards()

    def _find(self, name: str) -> tuple[Engine, ModelCard] | None:
        return self.store.find(name)


def serve(
    host: str = "127.0.0.1",
    port: int = 11434,
    engines: list[Engine] | None = None,
    version: str = OLLAMA_VERSION,
    *,
    legacy_truncation: bool | None = None,
    log_requests: bool = True,
    announce: Callable[[str], None] | None = None,
    pull_speed: float = DEFAULT_PULL_SPEED,
    max_body: int = DEFAULT_MAX_BODY,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
) -> None:
    """Serve in the foreground until Ctrl-C (what ``python -m ollama_magic.server`` runs).

    Announces (default: prints) the URL, then the installed model names, then (if any) the
    names ``/api/pull`` can install, one line each. No requests are recorded: nobody could
    read them, and a long-running server must not grow.
    """
    server = OllamaServer(
        engines,
        host=host,
        port=port,
        version=version,
        legacy_truncation=legacy_truncation,
        log_requests=log_requests,
        pull_speed=pull_speed,
        max_body=max_body,
        read_timeout=read_timeout,
        keep_requests=0,
    )
    say = announce or _print_flushed
    say(f"Ollama-compatible server on {server.url}")  # first: it has the port when port is 0
    installed = [card.name for card in server._cards()]
    say("Models: " + ", ".join(installed))
    pullable = [card.name for card in server.store.library() if card.name not in installed]
    if pullable:
        say("Pullable: " + ", ".join(pullable))
    server.serve_forever()


def _before(version: str, release: tuple[int, ...]) -> bool:
    """Whether ``version`` (``"0.12.6"``, ``"0.33.0-rc2"``) is older than ``release``; a dev
    build (``0.0.0``) or an unreadable one counts as current."""
    numbers = []
    for part in version.split("-")[0].split(".")[:3]:
        if not part.isdigit():
            return False
        numbers.append(int(part))
    return (0, 0, 0) < tuple(numbers) < release


def _print_flushed(line: str) -> None:
    print(line, flush=True)  # flushed: a parent process may be waiting for this line
