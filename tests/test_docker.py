"""docker/: the compose file follows the Compose specification and wires a real cluster.

No Docker engine runs here, so the file is validated against the compose-spec
JSON schema (vendored by check-jsonschema) and checked for what workers need;
the Dockerfile is read stage by stage, and the runtime image's model files are
laid out from its COPY lines (linked to this machine's builds of the same
files) and loaded the way a worker loads them.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import re
import shlex
import subprocess
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
import yaml

from infra.config import BrokerProfile, Settings

DOCKER = Path(__file__).resolve().parent.parent / "docker"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    return data


def test_compose_file_matches_the_compose_spec(compose: dict[str, Any]) -> None:
    schema_file = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    jsonschema.validate(compose, schema)


def test_three_kraft_brokers_form_one_quorum(compose: dict[str, Any]) -> None:
    brokers = {k: v for k, v in compose["services"].items() if k.startswith("kafka-")}
    assert len(brokers) == 3
    voters = {v["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] for v in brokers.values()}
    assert len(voters) == 1
    ids = sorted(v["environment"]["KAFKA_NODE_ID"] for v in brokers.values())
    assert ids == ["1", "2", "3"]
    for node_id in ids:
        assert f"{node_id}@kafka-{node_id}:9093" in next(iter(voters))
    for broker in brokers.values():
        assert broker["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert broker["image"].startswith("apache/kafka:")


def test_workers_use_every_broker_with_replication(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    env = worker["environment"]
    settings = Settings.from_env(env)
    profile = settings.broker_profile()
    assert isinstance(profile, BrokerProfile) and not profile.embedded
    assert set(profile.hosts) == {"kafka-1:9092", "kafka-2:9092", "kafka-3:9092"}
    assert profile.replication_factor == 3
    assert worker["deploy"]["replicas"] >= 2
    assert worker["build"]["dockerfile"] == "docker/Dockerfile"


def test_dockerfile_copies_every_package_and_installs_the_vad_without_torch() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    root = DOCKER.parent
    for package in ("streams", "agents", "models", "infra"):
        assert f"COPY {package} ./{package}" in text
        assert (root / package / "__init__.py").exists()
    assert "--no-deps silero-vad==6.2.3" in text
    assert 'ENTRYPOINT ["voicestream"]' in text


def test_skills_run_beside_the_workers_on_the_same_cluster(compose: dict[str, Any]) -> None:
    skills, worker = compose["services"]["skills"], compose["services"]["worker"]
    assert skills["command"] == ["skills"] and skills["image"] == worker["image"]
    assert skills["environment"] == worker["environment"]
    assert skills["deploy"]["replicas"] >= 2


# --- the Dockerfile, read without a Docker engine ----------------------------------------

@dataclasses.dataclass
class Stage:
    name: str
    #: (INSTRUCTION, arguments) in order, continuation lines joined.
    steps: list[tuple[str, str]]

    def args(self, instruction: str) -> list[str]:
        return [a for i, a in self.steps if i == instruction]

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for args in self.args("ENV"):
            out.update(p.split("=", 1) for p in shlex.split(args))  # type: ignore[misc]
        return out

    def copies_from(self, stage: str) -> list[tuple[list[str], str]]:
        """(sources, destination) of each ``COPY --from=stage``."""
        out = []
        for args in self.args("COPY"):
            words = shlex.split(args)
            if f"--from={stage}" in words:
                paths = [w for w in words if not w.startswith("--")]
                out.append((paths[:-1], paths[-1]))
        return out


def dockerfile() -> list[Stage]:
    text = re.sub(r"\\\n\s*", " ", (DOCKER / "Dockerfile").read_text())
    stages: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        if instruction.upper() == "FROM":
            words = args.split()
            stages.append(Stage(words[2] if len(words) == 3 else f"stage-{len(stages)}", []))
        stages[-1].steps.append((instruction.upper(), args.strip()))
    return stages


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    found = dockerfile()
    return {"models": next(s for s in found if s.name == "models"), "runtime": found[-1]}


def worker_settings(compose: dict[str, Any], runtime: Stage) -> Settings:
    """What a worker container runs with: the image's ENV, then compose's environment."""
    env = {**runtime.env(), **compose["services"]["worker"]["environment"]}
    return Settings.from_env(env)


def test_no_stage_installs_torch(stages: dict[str, Stage]) -> None:
    """The Whisper graphs are written without torch, so neither stage installs it."""
    pyproject = tomllib.loads((DOCKER.parent / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    assert any(r.startswith("torch==") for r in extras["train"])
    assert not any(r.startswith("torch") for r in pyproject["project"]["dependencies"])
    build = " ".join(stages["models"].args("RUN"))
    assert '".[whisper-base]"' in build
    runtime = " ".join(stages["runtime"].args("RUN"))
    for stage in (build, runtime):
        assert "torch==" not in stage and "train" not in stage
    assert "pip install --no-cache-dir ." in runtime


def test_the_image_builds_the_models_the_workers_run(
        compose: dict[str, Any], stages: dict[str, Stage]) -> None:
    settings = worker_settings(compose, stages["runtime"])
    assert settings.asr_engine == "moonshine"
    build = " ".join(stages["models"].args("RUN"))
    built = re.search(r"voicestream .*models build --whisper (\S+)", build)
    assert built is not None
    assert "--no-moonshine" not in build  # built by default
    # Whisper base decodes what Moonshine hands on: other languages, narrowband audio.
    assert settings.asr_multilingual_model in built[1].split(",")
    assert settings.asr_narrowband_model in built[1].split(",")
    assert settings.asr_whisper_model in built[1].split(",")  # asr_engine=whisper


def model_env_vars() -> set[str]:
    """The ``VOICESTREAM_*`` variables inference code reads (modules that never import torch)."""
    names: set[str] = set()
    for path in (DOCKER.parent / "models").rglob("*.py"):
        text = path.read_text()
        if re.search(r"^\s*(import|from) torch\b", text, re.M):
            continue  # training and export: build stage only
        names |= set(re.findall(r"VOICESTREAM_[A-Z_]+", text))
    # models/minilm.py's override of where the packaged MiniLM weights are: read only
    # when building (`models build`, training), never by a worker; and where
    # models/nlu/dictionaries.py caches the code-switching dictionaries (training only).
    return names - {"VOICESTREAM_ENCODER_DIR", "VOICESTREAM_CACHE"}


def test_the_runtime_stage_sets_every_model_variable_inference_reads(
        stages: dict[str, Stage]) -> None:
    wanted = model_env_vars()
    assert wanted == {"VOICESTREAM_MODEL_DIR", "VOICESTREAM_VAD_MODEL"}
    env = stages["runtime"].env()
    assert wanted <= set(env)
    copied = {dest.rstrip("/") for _, dest in stages["runtime"].copies_from("models")}
    assert env["VOICESTREAM_VAD_MODEL"] in copied
    assert any(d.startswith(env["VOICESTREAM_MODEL_DIR"] + "/") for d in copied)


def _runtime_tree(stages: dict[str, Stage], root: Path) -> dict[str, str]:
    """Lay out under ``root`` the model files the runtime stage copies, linked to this
    machine's builds of the same files; return the runtime ENV with paths under ``root``."""
    from models.moonshine.build import model_dir as moonshine_dir
    from models.rewrite.embedder import model_dir as embedder_dir
    from models.vad import find_model
    from models.whisper.inference import model_dir

    build_dir = stages["models"].env()["VOICESTREAM_MODEL_DIR"]
    build_runs = " ".join(stages["models"].args("RUN"))
    vad_built = re.search(rf"shutil\.copy\(find_model\(\), '({build_dir}/[^']+)'\)", build_runs)
    assert vad_built is not None, "the build stage copies the VAD's ONNX file into its model dir"

    def local(source: str) -> Path:
        if source == vad_built[1]:
            return find_model()
        embedder = re.fullmatch(rf"{build_dir}/minilm-embedder/([^/]+)", source)
        if embedder is not None:
            return embedder_dir() / embedder[1]
        moonshine = re.fullmatch(rf"{build_dir}/moonshine-base/([^/]+)", source)
        if moonshine is not None:
            return moonshine_dir() / moonshine[1]
        whisper = re.fullmatch(rf"{build_dir}/whisper-([^/]+)/([^/]+)", source)
        assert whisper is not None, f"{source} is not made by the build stage"
        return model_dir(whisper[1]) / whisper[2]

    for sources, dest in stages["runtime"].copies_from("models"):
        for source in sources:
            target = root / dest.lstrip("/")
            if dest.endswith("/"):
                target = target / Path(source).name
            if not local(source).is_file():
                pytest.skip(f"{local(source)} is not built here (setup.sh builds it)")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(local(source))
    return {k: str(root / v.lstrip("/")) if v.startswith("/opt/") else v
            for k, v in stages["runtime"].env().items()}


def pyproject_package_data(package: str) -> list[str]:
    pyproject = tomllib.loads((DOCKER.parent / "pyproject.toml").read_text())
    patterns: list[str] = pyproject["tool"]["setuptools"]["package-data"][package]
    return patterns


def test_the_image_file_list_loads_every_model_a_worker_loads(
        compose: dict[str, Any], stages: dict[str, Stage], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import soxr

    from infra.app import asr_engine
    from models.asr import MoonshineEngine, WhisperEngine, create, decoder_name
    from models.eot import EotModel
    from models.nlu import inference as nlu
    from models.vad import SileroVad, find_model
    from streams.client import read_wav

    env = _runtime_tree(stages, tmp_path)
    for name in model_env_vars():
        monkeypatch.setenv(name, env[name])
    settings = worker_settings(compose, stages["runtime"])
    # As a worker builds it (infra/app.py): Moonshine, handing other languages and
    # narrowband audio to Whisper base (with word times).
    engine = asr_engine(settings)
    pcm, rate = read_wav(DOCKER.parent / "infra" / "demo_audio" / "light_on.wav")
    assert rate == 16000
    audio = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768
    assert "light" in engine.transcribe(audio, nbest=1)[0].text.lower()
    assert decoder_name(engine, audio) == "moonshine"
    narrow = soxr.resample(soxr.resample(audio, 16000, 8000), 8000, 16000).astype(np.float32)
    assert "light" in engine.transcribe(narrow, nbest=1)[0].text.lower()
    assert decoder_name(engine, narrow) == "whisper"
    assert isinstance(engine, MoonshineEngine) and isinstance(engine._other, WhisperEngine)
    assert engine._other.model.aligner is not None  # word times need aligner.onnx
    # Teacher forcing in one pass (the second opinion, the sound-alike rescoring).
    assert engine.model.scorer is not None and engine._other.model.scorer is not None
    # asr_engine=whisper: tiny.en, as copied.
    tiny = create("whisper", model=settings.asr_whisper_model)
    assert "light" in tiny.transcribe(audio, nbest=1)[0].text.lower()
    assert isinstance(tiny, WhisperEngine) and tiny.model.scorer is not None
    assert find_model() == Path(env["VOICESTREAM_VAD_MODEL"])
    SileroVad()
    # The end-of-turn model (semantic end-pointing) is package data too.
    assert "eot.npz" in pyproject_package_data("models")
    EotModel.load()
    # So is the requests' language model that reorders Moonshine's n-best.
    from models.lm import BUNDLED, bundled

    assert BUNDLED.name in pyproject_package_data("models")
    assert bundled().trigrams
    # The online rewriter's embedder (a worker with rewrite_online_dir loads it), as copied.
    from models.rewrite.embedder import Embedder
    from models.rewrite.embedder import model_dir as embedder_dir

    assert embedder_dir() == Path(env["VOICESTREAM_MODEL_DIR"]) / "minilm-embedder"
    assert Embedder().embed(["turn on the light"]).shape == (1, 384)
    # The NLU model is package data: what pip installs from a checkout is what git tracks
    # and pyproject's package-data names.
    patterns = pyproject_package_data("models.nlu")
    tracked = subprocess.run(["git", "ls-files", "models/nlu/model"], cwd=DOCKER.parent,
                             capture_output=True, text=True, check=True).stdout.split()
    installed = tmp_path / "site-packages" / "models" / "nlu" / "model"
    installed.mkdir(parents=True)
    for rel in tracked:
        inside = Path(rel).relative_to("models/nlu").as_posix()
        if any(fnmatch.fnmatch(inside, p) for p in patterns):
            (installed / Path(rel).name).symlink_to(DOCKER.parent / rel)
    assert nlu.DEFAULT_DIR.relative_to(Path(nlu.__file__).parent) == Path("model")
    model = nlu.NluOnnx(installed)
    assert model.interpret_batch(["turn on the lights"], top_k=1)[0][0].intent


def test_compose_and_the_image_agree_on_metrics(compose: dict[str, Any],
                                                stages: dict[str, Stage]) -> None:
    runtime = stages["runtime"]
    image = Settings.from_env(runtime.env())
    assert image.metrics_host == "0.0.0.0"  # reachable from outside the container
    worker = worker_settings(compose, runtime)
    assert worker.metrics_host == "0.0.0.0"
    assert str(worker.metrics_port) in runtime.args("EXPOSE")
    assert str(worker.metrics_port) in compose["services"]["worker"]["expose"]
