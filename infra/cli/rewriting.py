"""Query rewriting: mine rewrites from interaction logs, simulate logs, publish the table."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TYPE_CHECKING

import click

from infra.cli.base import connection_for, main, settings_for

if TYPE_CHECKING:
    from models.rewrite.logs import LogStats
    from streams.connection import Connection
    from streams.rewrite import RewriteRule


@main.group()
def rewrites() -> None:
    """Mine, simulate and publish query rewrites."""


def report_skipped(stats: LogStats) -> None:
    """Tell stderr which lines were skipped and how many in all."""
    for bad in stats.bad:
        click.echo(f"skipped {bad}", err=True)
    if stats.skipped:
        more = stats.skipped - len(stats.bad)
        tail = f" ({more} more not listed)" if more > 0 else ""
        click.echo(f"{stats.skipped} malformed line(s) skipped{tail}", err=True)


@rewrites.command("mine")
@click.option("--logs", "log_files", multiple=True, required=True,
              type=click.Path(dir_okay=False), help="Interaction JSONL file (repeatable).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write the table here as JSONL [default: print it to stdout].")
@click.option("--previous", type=click.Path(dir_okay=False), default=None,
              help="The table published before: its rules missing now are withdrawn.")
@click.option("--window-ms", type=click.IntRange(1), default=45_000, show_default=True,
              help="Longest gap inside a rephrase chain.")
@click.option("--min-similarity", type=click.FloatRange(0, 100), default=40.0,
              show_default=True, help="Least token-set ratio between rephrasings (0-100).")
@click.option("--min-support", type=click.IntRange(1), default=3, show_default=True,
              help="Chains that must start at a form before it gets a rule.")
@click.option("--min-probability", type=click.FloatRange(0, 1, min_open=True), default=0.5,
              show_default=True, help="Least absorption probability of a rewrite.")
@click.option("--publish", is_flag=True,
              help="Also publish the rules (and withdrawals) to the rewrite-rules topic.")
@click.option("--broker", default=None, help="kafka://HOST:PORT [default: $VOICESTREAM_BROKER].")
@click.pass_context
def rewrites_mine(ctx: click.Context, log_files: tuple[str, ...], out: str | None,
                  previous: str | None, window_ms: int, min_similarity: float,
                  min_support: int, min_probability: float, publish: bool,
                  broker: str | None) -> None:
    """Mine rewrite rules from rephrase chains (absorbing Markov chain over forms)."""
    import json

    from tqdm import tqdm  # type: ignore[import-untyped]  # no stubs shipped

    from models.rewrite.logs import LogStats, read_interactions, read_rules, write_rules
    from models.rewrite.precomputed import MiningConfig, mine_logs, withdrawn

    config = MiningConfig(window_ms=window_ms, min_similarity=min_similarity,
                          min_support=min_support, min_probability=min_probability)
    stats = LogStats()
    started = time.perf_counter()
    now_ms = int(time.time() * 1000)
    records = tqdm(read_interactions(log_files, stats), desc="reading", unit=" records",
                   file=sys.stderr, mininterval=1.0)
    rules = mine_logs(records, config, mined_at_ms=now_ms)
    report_skipped(stats)
    gone = withdrawn(read_rules(previous), rules, mined_at_ms=now_ms) if previous else []
    elapsed = time.perf_counter() - started
    click.echo(f"{stats.records} records, {len(rules)} rules, {len(gone)} withdrawn "
               f"in {elapsed:.1f} s", err=True)
    if out:
        write_rules(out, rules)
    else:
        for rule in rules:
            click.echo(json.dumps(rule.to_wire(), ensure_ascii=False))
    if publish:
        settings = settings_for(ctx, broker=broker)
        sent = asyncio.run(publish_rules(connection_for(settings), settings.topic_prefix,
                                         [*rules, *gone]))
        click.echo(f"published {sent} record(s) to {settings.topic_prefix}rewrite-rules",
                   err=True)


async def publish_rules(bootstrap: Connection, prefix: str, rules: list[RewriteRule]) -> int:
    """Send ``rules`` to the compacted rewrite-rules topic keyed by form; wait for the acks."""
    from aiokafka import AIOKafkaProducer

    from streams import topics
    from streams.codec import encode
    from streams.connection import Connection

    producer = AIOKafkaProducer(**Connection.of(bootstrap).producer())
    await producer.start()
    try:
        name = topics.REWRITE_RULES.name(prefix)
        for rule in rules:
            await producer.send(name, encode(rule, topics.REWRITE_RULES.codec),
                                key=rule.form.encode())
        await producer.flush()
    finally:
        await producer.stop()
    return len(rules)


