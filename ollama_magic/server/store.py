"""Installed models and a registry to pull from, as Ollama's manifests and blobs behave.

``/api/pull``, ``/api/push``, ``/api/create``, ``/api/copy`` and ``/api/delete`` change which
models a server has, so the server cannot just list what its engines serve. A
:class:`ModelStore` keeps a manifest per installed name (layers with digests and sizes, so
progress lines look like Ollama's), the blobs on "disk", and a library standing in for
registry.ollama.ai. Transfers are simulated: :func:`pull`, :func:`push` and :func:`create` yield
the progress objects Ollama sends and :class:`Wait` steps, and change the store only where
Ollama writes a file, so a client that hangs up mid-pull leaves no model behind. Stdlib only;
the HTTP side is ``app.py``.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Union

from ..common.names import Name, RefError, parse_name, parse_ref
from .decoding import format_parameters, parse_parameters
from .engine import Engine, ModelCard
from .gojson import dumps, kind_of
from .gotemplate import TemplateError
from .gotemplate import parse as parse_template

MODELS_DIR = "/root/.ollama/models"
"""Where Ollama keeps models on Linux; only error texts and ``show`` mention it."""

TICK = 0.06
"""Seconds between progress lines of one blob (Ollama's 60 ms ticker)."""

MODEL = "application/vnd.ollama.image.model"
TEMPLATE = "application/vnd.ollama.image.template"
SYSTEM = "application/vnd.ollama.image.system"
LICENSE = "application/vnd.ollama.image.license"
PARAMS = "application/vnd.ollama.image.params"
MESSAGES = "application/vnd.ollama.image.messages"
CONFIG = "application/vnd.docker.container.image.v1+json"

CREATE_FROM_MODEL_ONLY = (
    "this local server only creates a model from an existing one ('from'); "
    "'files', 'adapters', 'draft_files' and remote models are not supported"
)
QUANTIZE_UNSUPPORTED = "this local server does not quantize models; leave out 'quantize'"


@dataclass(frozen=True)
class Layer:
    """One blob of a manifest. Small layers keep their text, from which cards are built."""

    media_type: str
    digest: str  # "sha256:" + 64 hex
    size: int
    text: str = ""
    source: str = ""  # Ollama's "from": the model a created model took the layer from


@dataclass(frozen=True)
class Manifest:
    """An installed (or pushed) model: the engine that runs it, its card and its blobs."""

    engine: Engine
    card: ModelCard
    layers: tuple[Layer, ...]
    config: Layer

    def blobs(self) -> tuple[Layer, ...]:
        """Every blob, the config last, in the order Ollama transfers them."""
        return (*self.layers, self.config)


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _text_layer(media_type: str, text: str) -> Layer:
    data = text.encode()
    return Layer(media_type, _sha256(data), len(data), text)


def _json_text(value: Any) -> str:
    """JSON as Go's encoder writes a blob: compact, map keys sorted, a final newline."""

    def _sorted(item: Any) -> Any:
        if isinstance(item, dict):
            return {key: _sorted(item[key]) for key in sorted(item)}
        if isinstance(item, list):
            return [_sorted(part) for part in item]
        if isinstance(item, float) and item.is_integer() and abs(item) < 1e21:
            return int(item)  # Go writes the float64 3 as 3
        return item

    return dumps(_sorted(value)).decode() + "\n"


def _config_layer(card: ModelCard) -> Layer:
    config = {
        "model_format": card.format,
        "model_family": card.family,
        "model_families": [card.family],
        "model_type": card.parameter_size,
        "file_type": card.quantization_level,
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
    }
    return _text_layer(CONFIG, _json_text(config))


def engine_manifest(engine: Engine, card: ModelCard) -> Manifest:
    """The manifest of an engine's own model: weights plus template, system, license, params
    and messages layers, sized so that the whole is ``card.size`` bytes."""
    small = [_text_layer(TEMPLATE, card.template)]
    if card.system:
        small.append(_text_layer(SYSTEM, card.system))
    if card.license:
        small.append(_text_layer(LICENSE, card.license))
    params = parse_parameters(card.parameters)
    if params:
        small.append(_text_layer(PARAMS, _json_text(params)))
    if card.messages:
        small.append(_text_layer(MESSAGES, _json_text(list(card.messages))))
    config = _config_layer(card)
    weights_size = max(1, card.size - sum(layer.size for layer in small) - config.size)
    weights = Layer(MODEL, _sha256(f"ollama-magic weights {card.digest}".encode()), weights_size)
    return Manifest(engine, card, (weights, *small), config)


def _manifest_digest(layers: Sequence[Layer], config: Layer) -> str:
    """The bare hex digest of the manifest file Ollama would write (what tags show)."""

    def entry(layer: Layer) -> dict[str, Any]:
        item: dict[str, Any] = {
            "mediaType": layer.media_type,
            "digest": layer.digest,
            "size": layer.size,
        }
        if layer.source:
            item["from"] = layer.source
        return item

    document = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": entry(config),
        "layers": [entry(layer) for layer in layers],
    }
    return _sha256(dumps(document))[len("sha256:") :]


def _renamed(card: ModelCard, name: str) -> ModelCard:
    """``card`` installed under ``name`` now; ``base`` keeps naming the engine's model."""
    base = card.base or (card.name if name != card.name else "")
    return replace(card, name=name, base=base, modified_at=datetime.now().astimezone())


class ModelStore:
    """The models a server has (thread-safe), read from its engines on first use.

    Installed at first: every engine's ``models()`` (the first engine wins a name). The library:
    those, plus every engine's optional ``library()``, plus whatever is pushed. Names are
    :class:`~ollama_magic.server.names.Name` values; lookups fold case, as Ollama's do.
    """

    def __init__(self, engines: Sequence[Engine]) -> None:
        self._engines = list(engines)
        self._lock = threading.RLock()
        self._ready = False
        self._installed: dict[str, Manifest] = {}
        self._library: dict[str, Manifest] = {}
        self._blobs: set[str] = set()  # digests on "disk"
        self._registry_blobs: set[str] = set()  # digests the library's registry has

    def _load(self) -> None:
        """Read the engines (once, lazily: a GGUF engine hashes its files for the digests)."""
        if self._ready:
            return
        extras: list[tuple[Engine, ModelCard]] = []
        for engine in self._engines:
            for card in engine.models():
                self._installed.setdefault(
                    parse_name(card.name).key(), engine_manifest(engine, card)
                )
            library = getattr(engine, "library", None)
            if callable(library):
                extras += [(engine, card) for card in library()]
        self._library = dict(self._installed)
        for engine, card in extras:
            self._library.setdefault(parse_name(card.name).key(), engine_manifest(engine, card))
        self._blobs = {layer.digest for m in self._installed.values() for layer in m.blobs()}
        self._registry_blobs = {layer.digest for m in self._library.values() for layer in m.blobs()}
        self._ready = True

    # -- reading -----------------------------------------------------------------------------

    def cards(self) -> list[ModelCard]:
        """The installed models' cards."""
        with self._lock:
            self._load()
            return [manifest.card for manifest in self._installed.values()]

    def find(self, name: str) -> tuple[Engine, ModelCard] | None:
        """The installed model a client's name refers to (``echo``, ``ECHO:latest``...)."""
        if not name.strip():
            return None
        manifest = self.manifest(parse_name(name))
        return None if manifest is None else (manifest.engine, manifest.card)

    def manifest(self, name: Name) -> Manifest | None:
        with self._lock:
            self._load()
            return self._installed.get(name.key())

    def library_manifest(self, name: Name) -> Manifest | None:
        """What pulling ``name`` would fetch, or None (the registry has no such model)."""
        with self._lock:
            self._load()
            return self._library.get(name.key())

    def library(self) -> list[ModelCard]:
        """Every pullable model's card."""
        with self._lock:
            self._load()
            return [manifest.card for manifest in self._library.values()]

    def canonical(self, name: Name) -> Name:
        """``name`` spelled as the installed model it matches (Ollama's getExistingName)."""
        manifest = self.manifest(name)
        return name if manifest is None else parse_name(manifest.card.name)

    def has_blob(self, digest: str) -> bool:
        with self._lock:
            self._load()
            return digest in self._blobs

    def in_registry(self, digest: str) -> bool:
        with self._lock:
            self._load()
            return digest in self._registry_blobs

    # -- changing ----------------------------------------------------------------------------

    def add_blob(self, digest: str) -> None:
        """A blob finished downloading (it stays even if the pull is then cut short)."""
        with self._lock:
            self._load()
            self._blobs.add(digest)

    def install(self, name: Name, manifest: Manifest) -> Manifest | None:
        """Write ``manifest`` under ``name`` (modified now); return the one it replaced."""
        with self._lock:
            self._load()
            card = _renamed(manifest.card, name.display_shortest())
            self._blobs.update(layer.digest for layer in manifest.blobs())
            old = self._installed.get(name.key())
            self._installed[name.key()] = replace(manifest, card=card)
            return old

    def remove_unused(self, digests: set[str]) -> None:
        """Delete those of ``digests`` that no installed model uses (Ollama's RemoveLayers)."""
        with self._lock:
            self._load()
            used = {layer.digest for m in self._installed.values() for layer in m.blobs()}
            self._blobs -= digests - used

    def delete(self, name: Name) -> Manifest | None:
        """Remove the model and its unused blobs; None if it is not installed."""
        with self._lock:
            self._load()
            manifest = self._installed.pop(name.key(), None)
            if manifest is not None:
                self.remove_unused({layer.digest for layer in manifest.blobs()})
            return manifest

    def copy(self, source: Name, destination: Name) -> bool:
        """Copy the manifest (same digest, as Ollama copies the file); False if no source."""
        with self._lock:
            self._load()
            if str(source) == str(destination):
                return True  # the same file: Ollama returns before even opening it
            manifest = self._installed.get(source.key())
            if manifest is None:
                return False
            self.install(destination, manifest)
            return True

    def publish(self, name: Name, manifest: Manifest) -> None:
        """A push finished: ``name`` can now be pulled."""
        with self._lock:
            self._load()
            card = _renamed(manifest.card, name.display_shortest())
            self._library[name.key()] = replace(manifest, card=card)
            self._registry_blobs.update(layer.digest for layer in manifest.blobs())


# -- progress ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """One of Ollama's ProgressResponse objects."""

    status: str
    digest: str = ""
    total: int = 0
    completed: int = 0

    def body(self) -> dict[str, Any]:
        """The wire form: empty and zero fields left out (Go's omitempty)."""
        body: dict[str, Any] = {"status": self.status}
        if self.digest:
            body["digest"] = self.digest
        if self.total:
            body["total"] = self.total
        if self.completed:
            body["completed"] = self.completed
        return body


@dataclass(frozen=True)
class Wait:
    """Simulated transfer time: the HTTP layer sleeps, watching for a client that hangs up."""

    seconds: float


class ProgressError(Exception):
    """The operation failed: ``str()`` is Ollama's message; ``status`` the HTTP status it
    carries if nothing was sent yet (500 when Ollama gives none)."""

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.status = status


Step = Union[Progress, Wait]  # noqa: UP007 (a runtime alias, as in engine.py)
Steps = Generator[Step, None, None]
"""A pull, push or create in progress; closing it stops the operation where it is."""


def _transfer(
    verb: str, layer: Layer, present: bool, speed: float, announce: bool
) -> Iterator[Step]:
    """A blob moving at ``speed`` bytes/s: a line per tick, the last one complete.

    A blob already at the other end gets one complete line at once. ``announce`` first sends
    a line with nothing transferred yet (a pull's first tick usually comes before any data).
    """
    status = f"{verb} {layer.digest[7:19]}"
    if present:
        yield Progress(status, layer.digest, layer.size, layer.size)
        return
    if announce:
        yield Progress(status, layer.digest, layer.size)
    per_tick = max(1, int(min(speed * TICK, layer.size)))
    done = 0
    while done < layer.size:
        step = min(per_tick, layer.size - done)
        yield Wait(step / speed)
        done += step
        yield Progress(status, layer.digest, layer.size, done)


def pull(store: ModelStore, name: Name, speed: float) -> Steps:
    """Ollama's PullModel: download the missing blobs, then write the manifest.

    The model is installed only after ``writing manifest`` went out; layers the old manifest
    of that name used and the new one does not are then removed.
    """
    existing = store.manifest(name)
    unused = {layer.digest for layer in existing.blobs()} if existing is not None else set()
    yield Progress("pulling manifest")
    manifest = store.library_manifest(name)
    if manifest is None:
        raise ProgressError("pull model manifest: file does not exist")
    for layer in manifest.blobs():
        yield from _transfer("pulling", layer, store.has_blob(layer.digest), speed, True)
        store.add_blob(layer.digest)
        unused.discard(layer.digest)
    yield Progress("verifying sha256 digest")
    yield Progress("writing manifest")
    store.install(name, manifest)
    if unused:
        yield Progress("removing unused layers")
        store.remove_unused(unused)
    yield Progress("success")


UNAUTHORIZED_PUSH = "unauthorized: access denied"
"""Ollama's error when the registry refuses an upload twice (``errUnauthorized``): no key, or
a namespace the key does not own. Its CLI shows it as "you are not authorized to push to this
namespace, create the model under a namespace you own"."""


def push(store: ModelStore, name: Name, speed: float, *, authorized: bool = True) -> Steps:
    """Ollama's PushModel: upload the blobs the registry lacks, then the manifest.

    Not ``authorized``: the registry answers the first blob check with 401 twice, so the push
    fails right after the manifest is read, with :data:`UNAUTHORIZED_PUSH`.
    """
    yield Progress("retrieving manifest")
    manifest = store.manifest(name) if name.is_valid() else None
    if manifest is None:
        yield Progress("couldn't retrieve manifest")
        if not name.is_valid():
            raise ProgressError(f"unqualified name: {name}")
        path = f"{MODELS_DIR}/manifests/{name.host}/{name.namespace}/{name.model}/{name.tag}"
        raise ProgressError(f"open {path}: no such file or directory")
    if not authorized:
        raise ProgressError(UNAUTHORIZED_PUSH)
    for layer in manifest.blobs():
        yield from _transfer("pushing", layer, store.in_registry(layer.digest), speed, False)
    yield Progress("pushing manifest")
    store.publish(name, manifest)
    yield Progress("success")


def _license_texts(value: Any) -> list[str]:
    """``license`` as Ollama reads it: a string, or strings (Go's errors for anything else)."""
    if isinstance(value, str):
        return [value] if value else []
    if not isinstance(value, list):
        raise ProgressError(
            f"json: cannot unmarshal {kind_of(value)} into Go value of type []string"
        )
    for item in value:
        if item is not None and not isinstance(item, str):
            raise ProgressError(
                f"json: cannot unmarshal {kind_of(item)} into Go value of type string"
            )
    return [item or "" for item in value]


class _Layers:
    """A created model's layers as Ollama's createModel edits them, with each one's status."""

    def __init__(self, store: ModelStore, base: Manifest, source: str) -> None:
        self.store = store
        self.source = source
        self.entries = [
            (replace(layer, source=source), "using existing layer") for layer in base.layers
        ]
        self.made: set[str] = set()

    def texts(self, media_type: str) -> list[str]:
        return [layer.text for layer, _ in self.entries if layer.media_type == media_type]

    def remove(self, media_type: str) -> None:
        self.entries = [entry for entry in self.entries if entry[0].media_type != media_type]

    def add(self, media_type: str, text: str) -> None:
        layer = _text_layer(media_type, text)
        known = layer.digest in self.made or self.store.has_blob(layer.digest)
        self.made.add(layer.digest)
        self.entries.append((layer, "using existing layer" if known else "creating new layer"))

    def layers(self) -> tuple[Layer, ...]:
        return tuple(layer for layer, _ in self.entries)


def _created_card(base: ModelCard, name: Name, layers: _Layers, config: Layer) -> ModelCard:
    """The card of a created model: its own name, digest and size; the base's model."""
    params = layers.texts(PARAMS)
    messages = layers.texts(MESSAGES)
    templates, systems = layers.texts(TEMPLATE), layers.texts(SYSTEM)
    card = replace(
        base,
        digest=_manifest_digest(layers.layers(), config),
        size=sum(layer.size for layer in layers.layers()) + config.size,
        template=templates[-1] if templates else base.template,
        system=systems[-1] if systems else "",
        license="\n".join(layers.texts(LICENSE)),
        parameters=format_parameters(json.loads(params[-1])) if params else "",
        messages=tuple(json.loads(messages[-1])) if messages else (),
        parent_model=layers.source,
    )
    return _renamed(card, name.display_shortest())


def create(store: ModelStore, name: Name, request: dict[str, Any], speed: float) -> Steps:
    """Ollama's CreateHandler for ``from`` an existing model (pulled first if need be).

    ``request`` is the decoded CreateRequest, already checked as Ollama does before it starts
    streaming. Statuses: one ``using existing layer`` / ``creating new layer`` per layer of the
    new manifest, ``writing manifest``, ``success``.
    """
    source = request.get("from", "")
    if not source:
        raise ProgressError("neither 'from' or 'files' was specified", 400)
    try:
        base_text, origin = parse_ref(source)
    except RefError:
        raise ProgressError("invalid model name", 400) from None
    base_name = parse_name(base_text)
    if not base_name.is_valid():
        raise ProgressError("invalid model name", 400)
    if origin == "cloud" or request.get("remote_host"):
        raise ProgressError(CREATE_FROM_MODEL_ONLY, 400)
    old = store.manifest(name)
    base = store.manifest(base_name)
    if base is None:
        yield from pull(store, base_name, speed)
        base = store.manifest(base_name)
        if base is None:  # deleted while we pulled it
            raise ProgressError(f"model '{base_name.display_shortest()}' not found")
    quantize = (request.get("quantize") or request.get("quantization") or "").upper()
    if quantize and quantize != base.card.quantization_level.upper():
        if base.card.quantization_level.upper() not in ("F16", "BF16", "F32"):
            raise ProgressError("quantization is only supported for F16, BF16 and F32 models")
        raise ProgressError(QUANTIZE_UNSUPPORTED, 400)
    layers = _Layers(store, base, base_name.display_shortest())
    template = request.get("template", "")
    if template:
        layers.remove(TEMPLATE)
        try:
            parse_template(template)
        except TemplateError as exc:
            raise ProgressError(f"template error: {exc}", 400) from None
        layers.add(TEMPLATE, template)
    if request.get("system"):
        layers.remove(SYSTEM)
        layers.add(SYSTEM, request["system"])
    if request.get("license") is not None:
        for text in _license_texts(request["license"]):
            layers.add(LICENSE, text)
    params = dict(request.get("parameters") or {})
    for text in layers.texts(PARAMS):
        for key, value in json.loads(text).items():
            params.setdefault(key, value)
    if params:
        layers.remove(PARAMS)
        layers.add(PARAMS, _json_text(params))
    messages = request.get("messages") or []
    if messages:
        layers.remove(MESSAGES)
        kept = [{"role": m.get("role", ""), "content": m.get("content", "")} for m in messages]
        layers.add(MESSAGES, _json_text(kept))
    for layer, status in layers.entries:
        yield Progress(f"{status} {layer.digest}")
    yield Progress("writing manifest")
    card = _created_card(base.card, name, layers, base.config)
    store.install(name, Manifest(base.engine, card, layers.layers(), base.config))
    if old is not None:
        store.remove_unused({layer.digest for layer in old.blobs()})
    yield Progress("success")
