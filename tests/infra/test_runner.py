"""Starting a worker: what exists on the broker before its consumer joins the group."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from infra.app import build_app
from infra.config import Settings
from infra.runner import ensure_changelogs, resolve


@pytest.mark.broker
def test_table_changelogs_exist_with_leaders_before_the_worker_starts(broker_url: str) -> None:
    settings = Settings(broker=broker_url, app_id=f"changelogs-{uuid.uuid4().hex[:8]}")

    async def run() -> list[dict[str, object]]:
        profile = await resolve(settings.broker_profile())
        worker = build_app(settings, profile)
        names = sorted(t.changelog_topic.get_topic_name() for t in worker.app.tables.values())
        assert names == [f"{settings.app_id}-device-context-changelog",
                         f"{settings.app_id}-utterances-changelog"]
        await ensure_changelogs(worker, profile)
        await ensure_changelogs(worker, profile)  # again: they exist, nothing to do
        admin = AIOKafkaAdminClient(**profile.connection.client())
        await admin.start()
        try:
            described: list[dict[str, object]] = await admin.describe_topics(names)
            return described
        finally:
            await admin.close()

    described = asyncio.run(run())
    assert [d["error_code"] for d in described] == [0, 0]
    for d in described:
        partitions = d["partitions"]
        assert isinstance(partitions, list) and len(partitions) == settings.partitions
        assert all(p["leader"] >= 0 for p in partitions)
