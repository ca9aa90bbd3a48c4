"""docker/: the compose file follows the Compose specification and wires a real cluster.

No Docker engine runs here, so the file is validated against the compose-spec
JSON schema (vendored by check-jsonschema) and checked for what workers need.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
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


def stages() -> dict[str, list[str]]:
    """The Dockerfile's build stages (name, or its index), each a list of instructions."""
    out: dict[str, list[str]] = {}
    current: list[str] = []
    text = (DOCKER / "Dockerfile").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            words = line.split()
            name = words[3] if len(words) > 3 and words[2].upper() == "AS" else str(len(out))
            current = out.setdefault(name, [])
        current.append(line)
    return out


def env_of(instructions: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in instructions:
        if line.startswith("ENV "):
            for pair in line.removeprefix("ENV ").split():
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def test_dockerfile_copies_every_package_and_installs_the_vad_without_torch() -> None:
    runtime = list(stages().values())[-1]
    text = "\n".join(runtime)
    root = DOCKER.parent
    for package in ("streams", "agents", "models", "infra"):
        assert f"COPY {package} ./{package}" in text
        assert (root / package / "__init__.py").exists()
    assert "--no-deps silero-vad==6.2.3" in text
    assert 'ENTRYPOINT ["voicestream"]' in text
    # torch is for the build stage only: the runtime installs the package without extras.
    assert "[train]" not in text and "torch" not in text.replace("declares torch", "")


def test_the_image_ships_every_model_a_worker_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.config import Settings
    from models.whisper.inference import model_dir

    all_stages = stages()
    assert "models" in all_stages, "a build stage named models converts Whisper"
    build, runtime = all_stages["models"], list(all_stages.values())[-1]
    # The build stage converts the model the workers run by default, into its model dir.
    default = Settings().asr_whisper_model
    build_env = env_of(build)
    assert any(line.startswith("RUN ") and "models build" in line and f"--whisper {default}"
               in line for line in build)
    assert any("'.[train]'" in line for line in build if line.startswith("RUN "))
    # ... and the runtime copies that directory and points the worker at it.
    root = build_env["VOICESTREAM_MODEL_DIR"]
    assert f"COPY --from=models {root} {root}" in runtime
    runtime_env = env_of(runtime)
    assert runtime_env["VOICESTREAM_MODEL_DIR"] == root
    monkeypatch.setenv("VOICESTREAM_MODEL_DIR", root)
    assert str(model_dir(default)).startswith(root)
    # The NLU model is package data, so `pip install .` in the runtime carries it.
    pyproject = (DOCKER.parent / "pyproject.toml").read_text()
    assert '"models.nlu" = ["model/*"]' in pyproject
    assert (DOCKER.parent / "models" / "nlu" / "model" / "nlu.int8.onnx").exists()
    # Metrics are scraped from outside the container.
    settings = Settings.from_env(runtime_env)
    assert settings.metrics_host == "0.0.0.0" and settings.metrics_port == 9108
    assert "EXPOSE 9108" in runtime


def test_skills_run_beside_the_workers_on_the_same_cluster(compose: dict[str, Any]) -> None:
    skills, worker = compose["services"]["skills"], compose["services"]["worker"]
    assert skills["command"] == ["skills"] and skills["image"] == worker["image"]
    assert skills["environment"] == worker["environment"]
    assert skills["deploy"]["replicas"] >= 2
