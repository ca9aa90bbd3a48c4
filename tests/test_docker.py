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
