"""Deterministic example instances of JSON schemas, for scripted answers to ``format``.

A scripted model cannot sample under a grammar, so it answers a ``format`` schema with a fixed,
valid-looking instance: every object property, strings derived from the property name, integers
near 42, one array item, the first ``enum`` value, ``const`` as given, and ``$ref``/``$defs`` and
``anyOf`` as pydantic emits them. Pure: no I/O.

>>> synthesize({"type": "object", "properties": {
...     "city": {"type": "string"}, "population": {"type": "integer"},
...     "tags": {"type": "array", "items": {"type": "string"}}}})
{'city': 'city', 'population': 42, 'tags': ['tags']}
"""

from __future__ import annotations

from typing import Any

_MAX_DEPTH = 8
_STRING_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "12:00:00",
    "email": "{name}@example.com",
    "uri": "https://example.com/{name}",
    "url": "https://example.com/{name}",
    "uuid": "00000000-0000-4000-8000-000000000042",
    "ipv4": "192.0.2.42",
    "ipv6": "2001:db8::42",
}


def synthesize(schema: Any, name: str = "value") -> Any:
    """A deterministic instance of ``schema``; ``name`` seeds strings at the top level."""
    return _instance(schema, schema, name, 0)


def _resolve(root: Any, ref: str) -> Any:
    if not ref.startswith("#"):
        return {}
    node = root
    for part in ref[1:].split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return {}
    return node


def _type_of(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null" if kind else None)
    if isinstance(kind, str):
        return kind
    if "properties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return None


def _instance(schema: Any, root: Any, name: str, depth: int) -> Any:
    if not isinstance(schema, dict):
        return name if schema is not False else None
    if depth > _MAX_DEPTH:
        return None
    if "$ref" in schema and isinstance(schema["$ref"], str):
        target = _resolve(root, schema["$ref"])
        resolved = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return _instance(resolved, root, name, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            chosen = next((o for o in options if not _is_null(o)), options[0])
            return _instance(chosen, root, name, depth + 1)
    if isinstance(schema.get("allOf"), list) and schema["allOf"]:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            if isinstance(part, dict):
                merged.update(part)
        merged.update({k: v for k, v in schema.items() if k != "allOf"})
        return _instance(merged, root, name, depth + 1)
    kind = _type_of(schema)
    if kind == "object":
        props = schema.get("properties")
        if not isinstance(props, dict):
            return {}
        return {key: _instance(sub, root, key, depth + 1) for key, sub in props.items()}
    if kind == "array":
        return _array(schema, root, name, depth)
    if kind == "string":
        return _string(schema, name)
    if kind == "integer":
        return int(_number(schema, 42))
    if kind == "number":
        return _number(schema, 4.2)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return name


def _is_null(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "null"


def _array(schema: dict[str, Any], root: Any, name: str, depth: int) -> list[Any]:
    prefix = schema.get("prefixItems")
    if isinstance(prefix, list) and prefix:
        return [_instance(sub, root, name, depth + 1) for sub in prefix]
    count = schema.get("minItems", 1)
    count = max(1, count) if isinstance(count, int) else 1
    item = schema.get("items", {})
    return [_instance(item, root, name, depth + 1) for _ in range(min(count, 16))]


def _string(schema: dict[str, Any], name: str) -> str:
    fmt = schema.get("format")
    text = _STRING_FORMATS.get(fmt, name).format(name=name) if isinstance(fmt, str) else name
    low = schema.get("minLength")
    if isinstance(low, int) and len(text) < low:
        text = (text + "-" + name * low)[:low]
    high = schema.get("maxLength")
    if isinstance(high, int) and len(text) > high >= 0:
        text = text[:high]
    return text


def _number(schema: dict[str, Any], preferred: float) -> float:
    value = preferred
    low, high = schema.get("minimum"), schema.get("maximum")
    xlow, xhigh = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if isinstance(low, (int, float)) and value < low:
        value = low
    if isinstance(xlow, (int, float)) and not isinstance(xlow, bool) and value <= xlow:
        value = xlow + 1
    if isinstance(high, (int, float)) and value > high:
        value = high
    if isinstance(xhigh, (int, float)) and not isinstance(xhigh, bool) and value >= xhigh:
        value = xhigh - 1
    return value
