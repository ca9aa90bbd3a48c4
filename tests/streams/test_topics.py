"""Topic hygiene: compaction where the latest record per key counts, retention on the rest."""

from __future__ import annotations

import time

from agents.arbiter import HEARTBEAT_TTL, ArbiterService
from agents.registry import DEFAULT_REGISTRY, Registry
from infra.config import Settings
from infra.runner import topic_configs
from streams import topics
from streams.directive import SkillState, SkillStatus
from streams.topics import DAY_MS


def configs(spec: topics.TopicSpec) -> dict[str, str]:
    return topic_configs(Settings().broker_profile("kafka://h:1,h:2,h:3"), spec)


def test_journals_are_compacted_and_expire_the_context_is_kept_the_rest_expires() -> None:
    assert configs(topics.CONTEXT)["cleanup.policy"] == "compact"
    assert "retention.ms" not in configs(topics.CONTEXT)  # a device's newest context stays
    for journal in (topics.RESPONSES, topics.SKILLS):
        assert configs(journal)["cleanup.policy"] == "compact,delete"
        assert int(configs(journal)["retention.ms"]) >= DAY_MS
    assert configs(topics.AUDIO) == {**configs(topics.AUDIO), "cleanup.policy": "delete",
                                     "retention.ms": str(DAY_MS)}
    for spec in topics.ALL:
        got = configs(spec)
        assert spec.compacted or got["cleanup.policy"] == "delete"
        assert spec.compacted or "retention.ms" in got, spec.short  # nothing grows forever
    assert configs(topics.SKILL_DIRECTIVES)["cleanup.policy"] == "delete"


def test_a_silent_skill_instance_is_forgotten() -> None:
    service = ArbiterService(Settings(skill_timeout_s=10), lambda *a: None,  # type: ignore[arg-type, return-value]
                             Registry.load(DEFAULT_REGISTRY))
    now = int(time.time() * 1000)
    for i in range(50):  # instances that crashed long ago, never saying they are down
        service.on_status(SkillStatus(skill="media", instance=f"old{i}", state=SkillState.UP,
                                      at_ms=now - 3600_000))
    service.on_status(SkillStatus(skill="timers", instance="t1", state=SkillState.UP,
                                  at_ms=now - (HEARTBEAT_TTL - 1) * 10_000), now_ms=now)
    assert "media" not in service.heartbeats
    assert list(service.heartbeats["timers"]) == ["t1"]
    later = now + (HEARTBEAT_TTL + 1) * 10_000  # t1 has been silent too long by now
    service.on_status(SkillStatus(skill="media", instance="new", state=SkillState.UP,
                                  at_ms=later), now_ms=later)
    assert list(service.heartbeats) == ["media"] and service.live("media", now_ms=later)
