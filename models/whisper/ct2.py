"""Read a CTranslate2 ``model.bin`` (binary version 6) into numpy arrays.

Layout, as CTranslate2 writes it (little-endian): ``uint32`` version; the spec
name as ``uint16`` length + bytes; ``uint32`` spec revision; ``uint32`` variable
count; per variable its name, ``uint8`` rank, ``uint32`` dims, ``uint8`` dtype
id, ``uint32`` byte count and the data; then ``uint32`` alias count and
(alias, target) name pairs.
"""

from __future__ import annotations

import dataclasses
import re
import struct
from pathlib import Path

import numpy as np

#: CTranslate2's DataType enum, in order.
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


class Ct2FormatError(ValueError):
    """The file is not a CTranslate2 model this reader understands."""


@dataclasses.dataclass
class Ct2Model:
    """Variables of a CTranslate2 model by name (aliases resolved)."""

    spec: str
    revision: int
    variables: dict[str, np.ndarray]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: str) -> int:
        (value,) = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return int(value)

    def string(self) -> str:
        n = self.take("H")
        raw = self.data[self.pos:self.pos + n]
        self.pos += n
        return raw.rstrip(b"\0").decode()

    def raw(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise Ct2FormatError("truncated model file")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out


def read(path: Path) -> Ct2Model:
    """Parse ``path``; raise ``Ct2FormatError`` on anything unexpected."""
    return parse(path.read_bytes())


def parse(data: bytes) -> Ct2Model:
    """Parse a model file's bytes; raise ``Ct2FormatError`` on anything unexpected."""
    r = _Reader(data)
    version = r.take("I")
    if version != 6:
        raise Ct2FormatError(f"binary version {version}, expected 6")
    spec = r.string()
    revision = r.take("I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(r.take("I")):
        name = r.string()
        rank = r.take("B")
        dims = [r.take("I") for _ in range(rank)]
        dtype_id = r.take("B")
        nbytes = r.take("I")
        if dtype_id not in _DTYPES:
            raise Ct2FormatError(f"{name}: unsupported dtype id {dtype_id}")
        arr = np.frombuffer(r.raw(nbytes), dtype=_DTYPES[dtype_id])
        variables[name] = arr.reshape(dims) if dims else arr.reshape(())
    for _ in range(r.take("I")):
        alias, target = r.string(), r.string()
        variables[alias] = variables[target]
    return Ct2Model(spec, revision, variables)


@dataclasses.dataclass(frozen=True, slots=True)
class Dims:
    """A Whisper model's sizes (encoder and decoder have the same layer count)."""

    n_mels: int
    width: int
    heads: int
    layers: int
    vocab: int

    @classmethod
    def of(cls, model: Ct2Model) -> Dims:
        """Read the sizes from the CTranslate2 variables."""
        v = model.variables
        vocab, width = v["decoder/embeddings/weight"].shape
        layers = {int(m.group(1)) for k in v if (m := re.match(r"encoder/layer_(\d+)/", k))}
        return cls(n_mels=int(v["encoder/conv1/weight"].shape[1]), width=int(width),
                   heads=int(v["encoder/num_heads"]), layers=len(layers), vocab=int(vocab))
