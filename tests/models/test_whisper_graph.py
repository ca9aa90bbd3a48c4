"""The torch-free Whisper graph writer (models/whisper/graph.py).

Against the torch export, layer by layer, where torch is installed (the
``train`` extra); and, with torch blocked, a build and a greedy decode of real
audio that must give CTranslate2's tokens.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import wave
from pathlib import Path

import ctranslate2  # type: ignore[import-untyped]
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import soxr

from models.whisper import graph
from models.whisper.build import SOURCES
from models.whisper.ct2 import Ct2Model, Dims
from models.whisper.features import log_mel

ROOT = Path(__file__).resolve().parents[2]
FSDD = ROOT.parent / "shared" / "data" / "fsdd-dev"
#: Largest absolute difference allowed between the two float32 computations.
TOLERANCE = 1e-3


def _torch_or_skip() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        pytest.skip("torch is not installed (the train extra): no torch export to compare with")


@pytest.fixture(scope="module")
def tiny() -> Ct2Model:
    return SOURCES["tiny.en"].read()


def _session(model: object) -> ort.InferenceSession:
    assert isinstance(model, onnx.ModelProto)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_graphs_declare_the_inference_interface(tiny: Ct2Model) -> None:
    """inference.py reads L and D from the decoder's self_k input: they must be fixed ints."""
    dims = Dims.of(tiny)
    dec = _session(graph.decoder(tiny))
    assert [i.name for i in dec.get_inputs()] == ["tokens", "self_k", "self_v", "cross_k",
                                                  "cross_v"]
    assert [o.name for o in dec.get_outputs()] == ["logits", "new_self_k", "new_self_v"]
    shape = dec.get_inputs()[1].shape
    assert (shape[0], shape[3]) == (dims.layers, dims.width) == (4, 384)
    enc = _session(graph.encoder(tiny))
    assert [o.name for o in enc.get_outputs()] == ["cross_k", "cross_v"]
    scorer = _session(graph.scorer(tiny))
    assert [i.name for i in scorer.get_inputs()] == ["tokens", "targets", "self_k", "self_v",
                                                     "cross_k", "cross_v"]
    assert [o.name for o in scorer.get_outputs()] == ["logp"]


@pytest.mark.parametrize("model", ["tiny.en", "base"])
def test_graphs_agree_with_the_torch_export_per_layer(model: str) -> None:
    _torch_or_skip()
    import torch

    from models.whisper.torch_model import load_ct2

    weights = SOURCES[model].read()
    ref = load_ct2(weights)
    dims = ref.dims
    rng = np.random.default_rng(0)
    mel = log_mel(rng.standard_normal(16000 * 2).astype(np.float32) * 0.1, frames=300)[None]
    k, v = _session(graph.encoder(weights)).run(None, {"mel": mel})
    with torch.no_grad():
        tk, tv = ref.encode(torch.from_numpy(mel))
    assert k.shape == tuple(tk.shape) == (dims.layers, 1, 150, dims.width)
    for i in range(dims.layers):  # the encoder's output as each decoder layer sees it
        assert np.abs(k[i] - tk[i].numpy()).max() < TOLERANCE, i
        assert np.abs(v[i] - tv[i].numpy()).max() < TOLERANCE, i

    dec = _session(graph.decoder(weights))
    first = np.array([[50257, 50362, 383], [50257, 50362, 921]], np.int64)  # batch 2, n 3
    kb, vb = np.repeat(k, 2, axis=1), np.repeat(v, 2, axis=1)
    empty = np.zeros((dims.layers, 2, 0, dims.width), np.float32)
    logits, sk, sv = dec.run(None, {"tokens": first, "self_k": empty, "self_v": empty,
                                    "cross_k": kb, "cross_v": vb})
    with torch.no_grad():
        tl, tsk, tsv = ref.decode_step(torch.from_numpy(first), torch.from_numpy(empty),
                                       torch.from_numpy(empty), torch.from_numpy(kb),
                                       torch.from_numpy(vb))
    assert np.abs(logits - tl.numpy()).max() < TOLERANCE
    for i in range(dims.layers):  # each layer's self-attention cache
        assert np.abs(sk[i] - tsk[i].numpy()).max() < TOLERANCE, i
        assert np.abs(sv[i] - tsv[i].numpy()).max() < TOLERANCE, i
    step = np.array([[262], [286]], np.int64)  # one more token on the cache of three
    logits2, sk2, _ = dec.run(None, {"tokens": step, "self_k": sk, "self_v": sv,
                                     "cross_k": kb, "cross_v": vb})
    with torch.no_grad():
        tl2, _, _ = ref.decode_step(torch.from_numpy(step), tsk, tsv, torch.from_numpy(kb),
                                    torch.from_numpy(vb))
    assert sk2.shape[2] == 4
    assert np.abs(logits2 - tl2.numpy()).max() < TOLERANCE
    assert int(logits2[0].argmax()) == int(tl2[0].argmax())

    (w,) = _session(graph.aligner(weights)).run(None, {"tokens": first[:1], "cross_k": k,
                                                       "cross_v": v})
    with torch.no_grad():
        tw = ref.cross_weights(torch.from_numpy(first[:1]), torch.from_numpy(k),
                               torch.from_numpy(v))
    assert w.shape == tuple(tw.shape) == (dims.layers, dims.heads, 3, 150)
    assert np.abs(w - tw.numpy()).max() < TOLERANCE


_NO_TORCH = textwrap.dedent("""
    import json, sys
    sys.modules["torch"] = None  # any `import torch` now raises ImportError
    from pathlib import Path
    import numpy as np
    from models.whisper.build import build
    from models.whisper.inference import WhisperOnnx
    out = build(Path(sys.argv[1]), "tiny.en", force=True)
    audio = np.load(sys.argv[2])
    model = WhisperOnnx(out, quantized=False)
    hyp = model.transcribe(audio, trim=False, beam_size=1)[0]
    int8 = WhisperOnnx(out, quantized=True, min_window_s=10.0).transcribe(
        np.load(sys.argv[3]))[0]
    print(json.dumps({"tokens": list(hyp.tokens), "int8": int8.text,
                      "prompt": list(model.tokenizer.prompt),
                      "torch_loaded": "torch" in sys.modules and sys.modules["torch"] is not None}))
""")


def _fsdd(name: str) -> np.ndarray:
    with wave.open(str(FSDD / name), "rb") as w:
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
        out: np.ndarray = soxr.resample(x, w.getframerate(), 16000).astype(np.float32)
        return out


def test_build_and_decode_with_torch_blocked(tmp_path: Path) -> None:
    """The setup path (build) and the inference path run with torch unimportable; the greedy
    tokens on a real recording (FSDD) equal CTranslate2's on the packaged weights."""
    if not FSDD.is_dir():
        pytest.skip(f"FSDD recordings not found at {FSDD}")
    audio = _fsdd("7_jackson_8.wav")
    np.save(tmp_path / "audio.npy", audio)
    with wave.open(str(ROOT / "infra" / "demo_audio" / "light_on.wav"), "rb") as w:
        assert w.getframerate() == 16000
        demo = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
    np.save(tmp_path / "demo.npy", demo)
    proc = subprocess.run([sys.executable, "-c", _NO_TORCH, str(tmp_path / "model"),
                           str(tmp_path / "audio.npy"), str(tmp_path / "demo.npy")],
                          cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["torch_loaded"] is False
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest["writer"] == "onnx.helper"

    reference = ctranslate2.models.Whisper(str(SOURCES["tiny.en"].directory()), device="cpu",
                                           compute_type="float32", intra_threads=1)
    mel = log_mel(audio, frames=3000)[None]
    ref = reference.generate(ctranslate2.StorageView.from_array(mel), [got["prompt"]],
                             beam_size=1, suppress_blank=True)[0].sequences_ids[0]
    assert got["tokens"] == list(ref)
    # The int8 graphs on the demo's command. The bare model, without the engine's clean-up,
    # repeats it into the padding, exactly as the torch-exported graphs do.
    assert got["int8"].strip().lower().startswith("turn on the kitchen light")
