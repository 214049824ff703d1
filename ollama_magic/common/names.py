"""Model names parsed and validated as Ollama's Go code does, so lookups and errors agree.

``model.ParseName`` fills in ``registry.ollama.ai``, ``library`` and ``latest``; a part that a
separator promised but that is empty makes the name invalid, and every part has its own
alphabet. ``modelref.ParseRef`` first trims blanks and takes off a ``:local``/``:cloud`` source
suffix (pull, delete, create's ``from``). Pure: no I/O.

>>> parse_name("echo").display_shortest()
'echo:latest'
>>> str(parse_name("me/model:7b"))
'registry.ollama.ai/me/model:7b'
>>> parse_name("echo:").is_valid(), parse_name("a b").is_valid()
(False, False)
"""

from __future__ import annotations

from dataclasses import dataclass

from .goquote import go_quote

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
_MISSING = "!MISSING!"  # Go's MissingPart: never valid


class RefError(ValueError):
    """A reference ``ParseRef`` rejects: ``str()`` is Ollama's text; ``required`` if blank."""

    def __init__(self, message: str, *, required: bool = False) -> None:
        super().__init__(message)
        self.required = required


@dataclass(frozen=True)
class Name:
    """Host, namespace, model and tag of a model reference, with Ollama's defaults applied."""

    host: str
    namespace: str
    model: str
    tag: str
    scheme: str = "https"

    def __str__(self) -> str:
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    def key(self) -> str:
        """What two references must share to name the same model (Ollama folds case)."""
        return str(self).lower()

    def is_valid(self) -> bool:
        return (
            _valid_part("host", self.host)
            and _valid_part("namespace", self.namespace)
            and _valid_part("model", self.model)
            and _valid_part("tag", self.tag)
        )

    def display_shortest(self) -> str:
        """How ``/api/tags`` lists it: ``echo:latest``, ``me/model:7b``, ``host/ns/model:tag``."""
        if self.host.lower() != DEFAULT_HOST:
            prefix = f"{self.host}/{self.namespace}/"
        elif self.namespace.lower() != DEFAULT_NAMESPACE:
            prefix = f"{self.namespace}/"
        else:
            prefix = ""
        return f"{prefix}{self.model}:{self.tag}"


def _cut_promised(text: str, sep: str) -> tuple[str, str, bool]:
    before, found, after = text.rpartition(sep)
    if not found:
        return text, "", False
    return before or _MISSING, after or _MISSING, True


def parse_name(text: str) -> Name:
    """Go's ``model.ParseName``: not necessarily valid (see :meth:`Name.is_valid`)."""
    tag = ""
    if text.rfind(":") > text.rfind("/"):
        text, tag, _ = _cut_promised(text, ":")
    host = namespace = ""
    scheme = "https"
    text, model, promised = _cut_promised(text, "/")
    if not promised:
        model = text
    else:
        text, namespace, promised = _cut_promised(text, "/")
        if not promised:
            namespace = text
        else:
            given_scheme, found, rest = text.partition("://")
            host = rest if found else given_scheme
            scheme = given_scheme if found else scheme
    return Name(
        host or DEFAULT_HOST, namespace or DEFAULT_NAMESPACE, model, tag or DEFAULT_TAG, scheme
    )


def _valid_part(kind: str, part: str) -> bool:
    if not 1 <= len(part) <= (350 if kind == "host" else 80):
        return False
    for index, char in enumerate(part):
        if not char.isascii():
            return False
        word = char.isalnum() or char == "_"
        if index == 0:
            if not word:
                return False
        elif char == ".":
            if kind == "namespace":
                return False
        elif char == ":":
            if kind != "host":
                return False
        elif not word and char != "-":
            return False
    return True


def _source_suffix(raw: str) -> tuple[str, str]:
    """``(base, source)``: source is ``"local"``, ``"cloud"`` or ``""`` when not given."""
    base, found, suffix = raw.rpartition(":")
    if found:
        folded = suffix.strip().lower()
        if folded in ("cloud", "local"):
            return base, folded
        if "/" not in suffix and folded.endswith("-cloud"):
            return f"{base}:{suffix.strip()[: -len('-cloud')]}", "cloud"
    return raw, ""


def parse_ref(raw: str) -> tuple[str, str]:
    """Ollama's ``modelref.ParseRef``: ``(base, source)`` after trimming blanks.

    Raises :class:`RefError`: ``model is required`` for a blank reference, Ollama's
    conflicting-suffix text for ``x:local:cloud``.
    """
    raw = raw.strip()
    if not raw:
        raise RefError("model is required", required=True)
    base, source = _source_suffix(raw)
    if source and _source_suffix(base)[1]:
        raise RefError(f"use either :local or :cloud, not both: {go_quote(raw)}")
    return base, source


def pull_name(raw: str) -> str:
    """``modelref.NormalizePullName``: a cloud reference becomes its legacy ``-cloud`` tag."""
    base, source = parse_ref(raw)
    if source != "cloud":
        return base
    explicit_tag = base.rfind(":") > base.rfind("/")
    return base + ("-cloud" if explicit_tag else ":cloud")
