"""Model endpoints: ``/``, ``/api/version``, ``/api/tags``, ``/api/show``, ``/api/ps``, and
``/api/pull``, ``/api/push``, ``/api/create``, ``/api/copy``, ``/api/delete``.

What they say about a model comes from its :class:`~ollama_magic.server.engine.ModelCard`
(for GGUF models, read from the file's header: ``model_info`` and ``tensors`` as Ollama's
``/api/show`` gives them); transfers are simulated by :mod:`~ollama_magic.server.store`.
A push to Ollama's registry is refused unless the server holds credentials for the namespace
(:attr:`~ollama_magic.server.app.OllamaServer.registry_namespaces`), as ollama.com refuses it.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ..common.goquote import go_quote
from ..common.gotime import format_time
from ..common.names import DEFAULT_HOST, DEFAULT_NAMESPACE, Name, RefError, parse_name, pull_name
from .decoding import (
    COPY_REQUEST,
    CREATE_REQUEST,
    DELETE_REQUEST,
    PULL_REQUEST,
    PUSH_REQUEST,
    SHOW_REQUEST,
    parse_parameters,
)
from .engine import ModelCard
from .gojson import dumps, format_g
from .http import JSON_NO_CHARSET, TEXT, BaseHandler, ChunkedWriter, HTTPError
from .store import (
    CREATE_FROM_MODEL_ONLY,
    MODELS_DIR,
    Progress,
    ProgressError,
    Steps,
    create,
    pull,
    push,
)


def _name_parts(name: str) -> tuple[str, str, str, str]:
    """(host, namespace, model, tag) of an Ollama model reference, with Ollama's defaults."""
    parts = name.split("/")
    model, _, tag = parts[-1].partition(":")
    host, namespace = DEFAULT_HOST, DEFAULT_NAMESPACE
    if len(parts) >= 3:
        host, namespace = parts[-3], parts[-2]
    elif len(parts) == 2:
        namespace = parts[0]
    return host, namespace, model, tag or "latest"


def short_name(name: str) -> str:
    """How Ollama displays a model reference: ``echo`` → ``echo:latest``."""
    host, namespace, model, tag = _name_parts(name)
    prefix = "" if host == DEFAULT_HOST else host + "/"
    if namespace != DEFAULT_NAMESPACE or prefix:
        prefix += namespace + "/"
    return f"{prefix}{model}:{tag}"


def qualified_name(name: str) -> str:
    """The full form some Ollama errors use: ``registry.ollama.ai/library/echo:latest``."""
    return "{}/{}/{}:{}".format(*_name_parts(name))


def _parameter_count(size: str) -> int:
    units = {"K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}
    try:
        return int(float(size[:-1]) * units[size[-1].upper()])
    except (KeyError, ValueError, IndexError):
        return 0


def details(card: ModelCard, *, lengths: bool = False) -> dict[str, Any]:
    """A model's ``details``; with ``lengths`` (``/api/tags`` since Ollama 0.30) also its trained
    ``context_length`` and ``embedding_length`` (omitted when 0)."""
    body: dict[str, Any] = {
        "parent_model": card.parent_model,
        "format": card.format,
        "family": card.family,
        "families": [card.family],
        "parameter_size": card.parameter_size,
        "quantization_level": card.quantization_level,
    }
    if lengths:
        if card.context_length:
            body["context_length"] = card.context_length
        if card.embedding_length:
            body["embedding_length"] = card.embedding_length
    return body


class ModelRoutes(BaseHandler):
    """The model endpoints, as methods of the request handler."""

    # -- small endpoints ---------------------------------------------------------------------

    def _root(self) -> None:
        self._send(200, b"Ollama is running", TEXT)

    def _version(self) -> None:
        self._send_json(200, {"version": self.app.version})

    def _tags(self) -> None:
        models = []
        for card in self.app._cards():
            modified = card.modified_at or self.app._started_at
            models.append(
                (
                    modified.timestamp(),
                    {
                        "name": card.name,
                        "model": card.name,
                        "modified_at": format_time(int(modified.timestamp() * 1e9), utc=False),
                        "size": card.size,
                        "digest": card.digest,
                        "details": details(card, lengths=True),
                        "capabilities": list(card.capabilities),
                    },
                )
            )
        models.sort(key=lambda row: row[0], reverse=True)
        self._send_json(200, {"models": [row for _, row in models]})

    def _show(self) -> None:
        req = self._decode(SHOW_REQUEST)
        name = _requested_model(req)
        if not name:
            raise HTTPError(400, "model is required")
        found = self.app._find(name)
        if found is None:
            raise HTTPError(404, f"model '{short_name(name)}' not found")
        self._send_json(200, _show_body(found[1], verbose=req.get("verbose", False)))

    def _ps(self) -> None:
        models = []
        for entry, expires_ns in self.app.scheduler.loaded():
            card = entry.card
            models.append(
                {
                    "name": card.name,
                    "model": card.name,
                    "size": card.size,
                    "digest": card.digest,
                    "details": details(card),
                    "expires_at": format_time(expires_ns, utc=False),
                    "size_vram": 0,
                    "context_length": entry.num_ctx,
                }
            )
        self._send_json(200, {"models": models})

    # -- pull, push, create, copy, delete ----------------------------------------------------

    def _progress(self, steps: Steps, stream: bool) -> None:
        """Run a pull, push or create: NDJSON progress, or (``stream: false``) only the last
        object, as Ollama's waitForStream sends it (``application/json`` without charset).

        A client that hangs up ends the operation where it is (the generator is closed).
        """
        out = ChunkedWriter(self)
        last: dict[str, Any] = {"status": ""}
        try:
            for step in steps:
                if not isinstance(step, Progress):
                    self._check_alive(step.seconds)
                    continue
                last = step.body()
                if stream:
                    out.line(dumps(last) + b"\n")
                else:
                    self._check_alive()
        except ProgressError as exc:
            if stream and out.started:
                out.line(dumps({"error": str(exc)}) + b"\n")
                out.finish()
            else:
                self._send_error(exc.status, str(exc), JSON_NO_CHARSET)
            return
        finally:
            steps.close()  # after a hang-up: the operation stops where it is
        if stream:
            out.finish()
        else:
            self._send_json(200, last, JSON_NO_CHARSET)

    def _pull(self) -> None:
        req = self._decode(PULL_REQUEST)
        try:
            name = parse_name(pull_name(_requested_model(req)))
        except RefError as exc:
            raise HTTPError(400, "invalid model name" if exc.required else str(exc)) from None
        if not name.is_valid():
            raise HTTPError(400, "invalid model name")
        store = self.app.store
        self._progress(
            pull(store, store.canonical(name), self.app.pull_speed), req.get("stream", True)
        )

    def _push(self) -> None:
        req = self._decode(PUSH_REQUEST)
        given = _requested_model(req)
        if not given:
            raise HTTPError(400, "model is required")
        store = self.app.store
        name = store.canonical(parse_name(given))
        steps = push(store, name, self.app.pull_speed, authorized=self._may_push(name))
        self._progress(steps, req.get("stream", True))

    def _may_push(self, name: Name) -> bool:
        """Whether the registry would take this push: another registry (a local one) always
        does; Ollama's only for the namespaces the server holds credentials for."""
        if name.host != DEFAULT_HOST:
            return True
        return name.namespace in self.app.registry_namespaces

    def _create(self) -> None:
        """``/api/create`` from an existing model; Ollama's checks before streaming first."""
        req = self._decode(CREATE_REQUEST)
        for field_name in ("files", "draft_files"):
            for path, digest in req.get(field_name, {}).items():
                if not _valid_fs_path(path):
                    raise HTTPError(400, "file path must be relative")
                if not digest:
                    raise HTTPError(400, "invalid digest format")
        if req.get("draft_quantize") and not req.get("draft_files"):
            raise HTTPError(400, "--draft-quantize requires a DRAFT model")
        if any(not digest for digest in req.get("adapters", {}).values()):
            raise HTTPError(400, "invalid digest format")
        name = parse_name(_requested_model(req))
        if not name.is_valid():
            raise HTTPError(400, "invalid model name")
        from_files = req.get("files") and not req.get("from")
        if from_files or req.get("adapters") or req.get("draft_files"):
            raise HTTPError(400, CREATE_FROM_MODEL_ONLY)
        store = self.app.store
        steps = create(store, store.canonical(name), req, self.app.pull_speed)
        self._progress(steps, req.get("stream", True))

    def _copy(self) -> None:
        req = self._decode(COPY_REQUEST)
        source, destination = req.get("source", ""), req.get("destination", "")
        src, dst = parse_name(source), parse_name(destination)
        if not src.is_valid():
            raise HTTPError(400, f"source {go_quote(source)} is invalid")
        if not dst.is_valid():
            raise HTTPError(400, f"destination {go_quote(destination)} is invalid")
        store = self.app.store
        if not store.copy(store.canonical(src), store.canonical(dst)):
            raise HTTPError(404, f"model {go_quote(source)} not found")
        self._send(200, b"", None)

    def _delete(self) -> None:
        """``DELETE /api/delete``: the model goes, but a loaded one stays loaded (as in Ollama)."""
        req = self._decode(DELETE_REQUEST)
        given = _requested_model(req)
        try:
            name = parse_name(pull_name(given))
        except RefError as exc:  # "model is required", or a conflicting :local/:cloud
            raise HTTPError(400, str(exc)) from None
        if not name.is_valid():
            raise HTTPError(400, f"name {go_quote(given)} is invalid")
        if self.app.store.delete(name) is None:
            raise HTTPError(404, f"model '{given}' not found")
        self._send(200, b"", None)


def _requested_model(req: dict[str, Any]) -> str:
    """The request's ``model``, or the deprecated ``name`` that Ollama still accepts."""
    return str(req.get("model") or req.get("name") or "")


def _valid_fs_path(path: str) -> bool:
    """Go's ``fs.ValidPath``: relative, slash-separated, no empty, ``.`` or ``..`` element."""
    return path == "." or all(part not in ("", ".", "..") for part in path.split("/"))



def _go_value(value: Any) -> str:
    """A parameter as Ollama's show prints it (Go's ``%#v`` of a decoded JSON value)."""
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return format_g(float(value))  # JSON numbers are float64 to Go: 1e+06, not 1000000
    return json.dumps(value)


def _show_body(card: ModelCard, *, verbose: bool) -> dict[str, Any]:
    """``/api/show`` for one card, field order and omitempty as Ollama's ShowResponse."""
    arch = str(card.model_info.get("general.architecture", card.family))
    info: dict[str, Any] = {
        "general.architecture": arch,
        "general.parameter_count": _parameter_count(card.parameter_size),
        f"{arch}.context_length": card.context_length,
        **card.model_info,
    }
    if card.embedding_length:
        info.setdefault(f"{arch}.embedding_length", card.embedding_length)
    for hidden in ("general.name", "tokenizer.chat_template"):  # Ollama leaves these out
        info.pop(hidden, None)
    if not verbose:  # Ollama hides long arrays (tokenizer tables) unless asked
        info = {k: [] if isinstance(v, list) and len(v) > 5 else v for k, v in info.items()}
    params = parse_parameters(card.parameters)
    lines = []
    for key, value in params.items():
        for item in value if isinstance(value, list) else [value]:
            lines.append(f"{key:<30} {_go_value(item)}")
    modelfile = [
        '# Modelfile generated by "ollama show"',
        "# To build a new Modelfile based on this, replace FROM with:",
        f"# FROM {card.name}",
        "",
        f"FROM {MODELS_DIR}/blobs/sha256-{card.digest}",
        f'TEMPLATE """{card.template}"""',
    ]
    if card.system:
        modelfile.append(f'SYSTEM """{card.system}"""')
    modelfile += [f"PARAMETER {line}" for line in card.parameters.splitlines() if line.strip()]
    if card.license:
        modelfile.append(f'LICENSE """{card.license}"""')
    messages = [{"role": m.get("role", ""), "content": m.get("content", "")} for m in card.messages]
    modelfile += [f'MESSAGE {m["role"]} """{m["content"]}"""' for m in messages]
    body: dict[str, Any] = {
        "license": card.license,
        "modelfile": "\n".join(modelfile) + "\n",
        "parameters": "\n".join(lines),
        "template": card.template,
        "system": card.system,
        "details": details(card),
        "messages": messages,
        "model_info": dict(sorted(info.items())),  # Go writes map keys sorted
        "tensors": [dict(tensor) for tensor in card.tensors],
        "capabilities": list(card.capabilities),
    }
    body = {key: value for key, value in body.items() if value}
    modified = card.modified_at
    body["modified_at"] = (
        format_time(int(modified.timestamp() * 1e9), utc=False)
        if modified
        else (format_time(time.time_ns(), utc=False))
    )
    return body

