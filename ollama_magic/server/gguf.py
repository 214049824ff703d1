"""A small pure-Python reader for the header of a GGUF file.

``/api/tags`` and ``/api/show`` must describe a model without loading its weights, so this reads
only the key/value metadata and the tensor table at the start of the file (a few MB at most) and
never touches the tensor data. Standard library only.
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "GGUFError",
    "GGUFHeader",
    "file_sha256",
    "file_type_name",
    "human_number",
    "read_header",
    "tensor_type_name",
]

_MAGIC = b"GGUF"

# GGUF value types -> struct format of one scalar (8: string, 9: array are special).
_SCALAR_FORMATS: dict[int, str] = {
    0: "<B",  # uint8
    1: "<b",  # int8
    2: "<H",  # uint16
    3: "<h",  # int16
    4: "<I",  # uint32
    5: "<i",  # int32
    6: "<f",  # float32
    7: "<?",  # bool
    10: "<Q",  # uint64
    11: "<q",  # int64
    12: "<d",  # float64
}
_STRING = 8
_ARRAY = 9

# llama.cpp's ``enum llama_ftype`` (``general.file_type``) -> the name Ollama shows.
_FILE_TYPES: dict[int, str] = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4",
}


class GGUFError(ValueError):
    """The file is not a GGUF file this reader understands."""


@dataclass(frozen=True)
class GGUFHeader:
    """The metadata of one GGUF file.

    ``metadata`` holds every key/value pair; arrays longer than ``keep_arrays`` (given to
    :func:`read_header`) are not decoded and appear as ``[]`` with their true length in
    ``array_lengths``, so a 49k-entry vocabulary costs neither time nor memory.
    """

    version: int
    metadata: dict[str, Any]
    array_lengths: dict[str, int] = field(default_factory=dict)
    tensor_count: int = 0
    parameter_count: int = 0  # sum over the tensor table of the product of each tensor's dims
    tensors: tuple[tuple[str, str, tuple[int, ...]], ...] = ()  # (name, ggml type, shape)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    @property
    def context_length(self) -> int | None:
        value = self.metadata.get(f"{self.architecture}.context_length")
        return int(value) if value is not None else None

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) else None

    @property
    def file_type(self) -> str:
        """The quantization level, e.g. ``"Q4_1"`` (``"unknown"`` when absent)."""
        value = self.metadata.get("general.file_type")
        return file_type_name(value) if isinstance(value, int) else "unknown"

    @property
    def parameters(self) -> int:
        """``general.parameter_count`` when present, else the count from the tensor table."""
        value = self.metadata.get("general.parameter_count")
        return int(value) if isinstance(value, int) and value > 0 else self.parameter_count

    def model_info(self) -> dict[str, Any]:
        """The key/value pairs as Ollama's ``/api/show`` gives them: arrays longer than 5 as ``[]``.

        ``general.parameter_count`` is always present (Ollama adds it too).
        """
        info = {
            key: ([] if isinstance(value, list) and len(value) > 5 else value)
            for key, value in self.metadata.items()
        }
        info.setdefault("general.parameter_count", self.parameters)
        return dict(sorted(info.items()))


class _Reader:
    """Buffered little-endian reads from a binary file."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def take(self, size: int) -> bytes:
        data = self._stream.read(size)
        if len(data) != size:
            raise GGUFError("unexpected end of file in the GGUF header")
        return data

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def skip(self, size: int) -> None:
        self._stream.seek(size, 1)

    def string(self) -> str:
        length = self.unpack("<Q")
        return self.take(length).decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        self.skip(self.unpack("<Q"))

    def value(self, value_type: int, keep_arrays: int) -> tuple[Any, int | None]:
        """One value; for arrays also their length (long arrays are skipped, returned as [])."""
        if value_type == _STRING:
            return self.string(), None
        if value_type == _ARRAY:
            item_type = self.unpack("<I")
            count = self.unpack("<Q")
            if count > keep_arrays:
                self._skip_items(item_type, count)
                return [], count
            return [self.value(item_type, keep_arrays)[0] for _ in range(count)], count
        fmt = _SCALAR_FORMATS.get(value_type)
        if fmt is None:
            raise GGUFError(f"unknown GGUF value type {value_type}")
        return self.unpack(fmt), None

    def _skip_items(self, item_type: int, count: int) -> None:
        fmt = _SCALAR_FORMATS.get(item_type)
        if fmt is not None:
            self.skip(struct.calcsize(fmt) * count)
        elif item_type == _STRING:
            for _ in range(count):
                self.skip_string()
        elif item_type == _ARRAY:
            for _ in range(count):
                self.value(_ARRAY, 0)
        else:
            raise GGUFError(f"unknown GGUF array item type {item_type}")


def read_header(path: str | Path, keep_arrays: int = 5) -> GGUFHeader:
    """Read the metadata and tensor table of the GGUF file at ``path`` (not the weights)."""
    with open(path, "rb") as stream:
        reader = _Reader(stream)
        if reader.take(4) != _MAGIC:
            raise GGUFError(f"{path} is not a GGUF file (bad magic)")
        version = reader.unpack("<I")
        if version not in (2, 3):
            raise GGUFError(f"{path}: unsupported GGUF version {version}")
        tensor_count = reader.unpack("<Q")
        kv_count = reader.unpack("<Q")
        metadata: dict[str, Any] = {}
        array_lengths: dict[str, int] = {}
        for _ in range(kv_count):
            key = reader.string()
            value_type = reader.unpack("<I")
            value, length = reader.value(value_type, keep_arrays)
            metadata[key] = value
            if length is not None:
                array_lengths[key] = length
        parameter_count = 0
        tensors = []
        for _ in range(tensor_count):
            name = reader.string()
            n_dims = reader.unpack("<I")
            dims = struct.unpack(f"<{n_dims}Q", reader.take(8 * n_dims))
            ggml_type = reader.unpack("<I")
            reader.skip(8)  # data offset
            parameter_count += math.prod(dims)
            tensors.append((name, tensor_type_name(ggml_type), tuple(dims)))
    return GGUFHeader(
        version=version,
        metadata=metadata,
        array_lengths=array_lengths,
        tensor_count=tensor_count,
        parameter_count=parameter_count,
        tensors=tuple(tensors),
    )


# ggml's ``enum ggml_type`` -> its name, as Ollama's ``/api/show`` lists each tensor's ``type``.
_TENSOR_TYPES = (
    "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K", "Q3_K",
    "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S",
    "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16", "Q4_0_4_4", "Q4_0_4_8",
    "Q4_0_8_8", "TQ1_0", "TQ2_0", "IQ4_NL_4_4", "IQ4_NL_4_8", "IQ4_NL_8_8", "MXFP4",
)


def tensor_type_name(ggml_type: int) -> str:
    """The name of a ggml tensor type, e.g. ``3`` → ``"Q4_1"``."""
    if 0 <= ggml_type < len(_TENSOR_TYPES):
        return _TENSOR_TYPES[ggml_type]
    return f"unknown type {ggml_type}"


def file_type_name(file_type: int) -> str:
    """The name of a ``general.file_type`` value, e.g. ``3`` -> ``"Q4_1"``.

    >>> file_type_name(7)
    'Q8_0'
    """
    return _FILE_TYPES.get(file_type, f"unknown ({file_type})")


def human_number(count: int) -> str:
    """A parameter count the way Ollama prints it (``format.HumanNumber``).

    >>> human_number(134_515_008), human_number(135_000_000), human_number(7_241_732_096)
    ('134.52M', '135M', '7.2B')
    """
    for scale, suffix, decimals in ((1e9, "B", 1), (1e6, "M", 2), (1e3, "K", 0)):
        if count >= scale:
            number = count / scale
            if suffix != "K" and number == math.floor(number):
                return f"{number:.0f}{suffix}"
            return f"{number:.{decimals}f}{suffix}"
    return str(count)


def file_sha256(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """The hex sha256 of a file, read in chunks (about 0.3 s for 100 MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
