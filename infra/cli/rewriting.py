"""Query rewriting: mine rewrites from interaction logs, simulate logs, publish the table."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from infra.cli.base import connection_for, main, settings_for
from infra.cli.modelling import eval as eval_group

if TYPE_CHECKING:
    from collections.abc import Iterable

    from models.rewrite.logs import LogStats
    from models.rewrite.online import Embeds
    from streams.connection import Connection
    from streams.rewrite import Interaction, RewriteRule


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
@click.option("--online-out", type=click.Path(file_okay=False), default=None,
              help="Also fit the online layer on the logs and save it in this directory "
                   "(the workers' rewrite_online_dir); needs the embedder build.")
@click.option("--broker", default=None, help="kafka://HOST:PORT [default: $VOICESTREAM_BROKER].")
@click.pass_context
def rewrites_mine(ctx: click.Context, log_files: tuple[str, ...], out: str | None,
                  previous: str | None, window_ms: int, min_similarity: float,
                  min_support: int, min_probability: float, publish: bool,
                  online_out: str | None, broker: str | None) -> None:
    """Mine rewrite rules from rephrase chains (absorbing Markov chain over forms).

    With --online-out, also fit the online layer (global and personal indexes,
    ranker) on the same logs and save it for the workers to load at start.
    """
    import json

    from tqdm import tqdm

    from models.rewrite.logs import LogStats, read_interactions, read_rules, write_rules
    from models.rewrite.precomputed import MiningConfig, mine_logs, withdrawn

    config = MiningConfig(window_ms=window_ms, min_similarity=min_similarity,
                          min_support=min_support, min_probability=min_probability)
    stats = LogStats()
    started = time.perf_counter()
    now_ms = int(time.time() * 1000)
    embedder = None
    if online_out:  # before the mining: no embedder build, no work done
        from models.rewrite.embedder import Embedder, EmbedderError

        try:
            embedder = Embedder()
        except EmbedderError as exc:
            raise click.ClickException(str(exc)) from exc
    reading = tqdm(read_interactions(log_files, stats), desc="reading", unit=" records",
                   file=sys.stderr, mininterval=1.0)
    # The online layer needs the records twice; the mining alone streams them.
    records = list(reading) if embedder is not None else reading
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
    if embedder is not None and online_out:
        save_online(records, embedder, Path(online_out), window_ms)
    if publish:
        settings = settings_for(ctx, broker=broker)
        sent = asyncio.run(publish_rules(connection_for(settings), settings.topic_prefix,
                                         [*rules, *gone]))
        click.echo(f"published {sent} record(s) to {settings.topic_prefix}rewrite-rules",
                   err=True)


def save_online(records: Iterable[Interaction], embedder: Embeds, out: Path,
                window_ms: int) -> None:
    """Fit an online layer on ``records`` and save it in ``out``; report what it holds."""
    from models.rewrite.online import OnlineRewriter

    started = time.perf_counter()
    layer = OnlineRewriter(embedder, window_ms=window_ms)
    report = layer.fit(records)
    try:
        layer.save(out)
    except OSError as exc:
        raise click.ClickException(f"{out}: {exc.strerror or type(exc).__name__}") from exc
    ranker = (f"ranker fitted on {report['examples']} examples" if report.get("fitted")
              else f"ranker at its prior weights ({report.get('reason', 'not fitted')})")
    click.echo(f"online layer: {len(layer.forms)} global forms, {len(layer.users)} users, "
               f"{ranker}; saved to {out} in {time.perf_counter() - started:.1f} s", err=True)


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




@main.group()
def interactions() -> None:
    """The interaction records the pipeline writes (one per finished utterance)."""


@interactions.command("export")
@click.option("--out", type=click.Path(dir_okay=False), required=True,
              help="JSONL file to write, one interaction per line (the mining input).")
@click.option("--broker", default=None, help="kafka://HOST:PORT [default: $VOICESTREAM_BROKER].")
@click.pass_context
def interactions_export(ctx: click.Context, out: str, broker: str | None) -> None:
    """Write every record on the interactions topic, as of now, to OUT (Interaction.to_log)."""
    import json
    from pathlib import Path

    settings = settings_for(ctx, broker=broker)
    started = time.perf_counter()
    try:
        target = Path(out).open("w", encoding="utf-8")  # noqa: SIM115  (closed below)
    except OSError as exc:
        raise click.ClickException(f"{out}: {exc.strerror or type(exc).__name__}") from None
    with target:
        written, bad = asyncio.run(export_interactions(
            connection_for(settings), settings.topic_prefix,
            lambda record: target.write(json.dumps(record, ensure_ascii=False) + "\n")))
    for where in bad[:10]:
        click.echo(f"skipped undecodable record at {where}", err=True)
    if len(bad) > 10:
        click.echo(f"{len(bad)} undecodable records skipped in all", err=True)
    click.echo(f"{written} interaction(s) written to {out} in "
               f"{time.perf_counter() - started:.1f} s", err=True)


async def export_interactions(bootstrap: Connection, prefix: str,
                              write: Callable[[dict[str, Any]], object]
                              ) -> tuple[int, list[str]]:
    """Read the interactions topic from its start to its current end; ``write`` each record's
    log form. Returns how many were written and where the undecodable ones were."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from tqdm import tqdm

    from streams import topics
    from streams.codec import decode
    from streams.connection import Connection
    from streams.rewrite import Interaction
    from streams.schema import SerializationError

    name = topics.INTERACTIONS.name(prefix)
    consumer = AIOKafkaConsumer(**Connection.of(bootstrap).client(
        enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_wait_ms=100))
    await consumer.start()
    written, bad = 0, []
    try:
        parts = consumer.partitions_for_topic(name)
        for _ in range(50):
            if parts:
                break
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.1)
            parts = consumer.partitions_for_topic(name)
        if not parts:
            raise click.ClickException(f"topic {name} does not exist; is a worker running?")
        tps = [TopicPartition(name, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        starts = {tp: await consumer.position(tp) for tp in tps}
        with tqdm(total=sum(ends[tp] - starts[tp] for tp in tps), unit=" records",
                  file=sys.stderr, mininterval=1.0, disable=None) as bar:
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                batches = await consumer.getmany(timeout_ms=200)
                for tp, records in batches.items():
                    for r in records:
                        if r.offset >= ends[tp]:
                            continue  # written after the export began
                        bar.update(1)
                        try:
                            message = decode(r.value or b"", topics.INTERACTIONS.codec)
                        except SerializationError as exc:
                            bad.append(f"{r.topic}[{r.partition}]@{r.offset} ({exc.code})")
                            continue
                        if isinstance(message, Interaction):
                            write(message.to_log())
                            written += 1
    finally:
        await consumer.stop()
    return written, bad


@rewrites.command("simulate")
@click.option("--users", type=click.IntRange(1), default=200, show_default=True)
@click.option("--days", type=click.IntRange(2), default=21, show_default=True)
@click.option("--train-days", type=click.IntRange(1), default=None,
              help="Days in train.jsonl; the rest is test.jsonl [default: two thirds].")
@click.option("--requests-per-day", type=click.FloatRange(0.1), default=4.0, show_default=True,
              help="Mean requests per user and day.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--place-requests", type=click.IntRange(1), default=6, show_default=True,
              help="Requests with a place that every user puts their shorthands in.")
@click.option("--data", "data_file", type=click.Path(exists=True, dir_okay=False),
              default="../shared/data/massive-en-US/train.jsonl", show_default=True,
              help="MASSIVE-format requests to draw from.")
@click.option("--confusions", type=click.Path(exists=True, dir_okay=False), default=None,
              help="ASR confusion table [default: models/rewrite/confusions.json].")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Directory for train.jsonl and test.jsonl.")
def rewrites_simulate(users: int, days: int, train_days: int | None, requests_per_day: float,
                      seed: int, place_requests: int, data_file: str, confusions: str | None,
                      out: str) -> None:
    """Simulate users' interaction logs with real ASR and NLU defects, split by time."""
    from pathlib import Path

    from models.nlu.inference import NluModelMissing
    from models.rewrite.confusions import DEFAULT_TABLE
    from models.rewrite.logs import write_interactions
    from models.rewrite.simulate import (
        SimConfig,
        load_confusions,
        load_examples,
        nlu_interpreter,
        simulate,
    )

    try:
        config = SimConfig(users=users, days=days, train_days=train_days,
                           requests_per_day=requests_per_day, seed=seed,
                           place_requests=place_requests)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    try:
        interpret = nlu_interpreter()
    except NluModelMissing as exc:
        raise click.ClickException(str(exc)) from exc
    started = time.perf_counter()
    train, test = simulate(config, load_examples(Path(data_file)),
                           load_confusions(Path(confusions) if confusions else DEFAULT_TABLE),
                           interpret)
    Path(out).mkdir(parents=True, exist_ok=True)
    write_interactions(Path(out) / "train.jsonl", train)
    write_interactions(Path(out) / "test.jsonl", test)
    for name, part in (("train", train), ("test", test)):
        defects = sum(r.outcome.value == "defect" for r in part)
        click.echo(f"{name}: {len(part)} interactions, {defects} defects "
                   f"({defects / max(1, len(part)):.1%})", err=True)
    click.echo(f"simulated in {time.perf_counter() - started:.0f} s", err=True)


@eval_group.command("rewrite")
@click.option("--train", "train_file", type=click.Path(dir_okay=False), required=True,
              help="Interaction JSONL the layers learn from.")
@click.option("--test", "test_file", type=click.Path(dir_okay=False), required=True,
              help="Later interaction JSONL with truth, replayed in time order.")
@click.option("--min-support", type=click.IntRange(1), default=3, show_default=True,
              help="Mining: chains that must start at a form before it gets a rule.")
@click.option("--min-probability", type=click.FloatRange(0, 1, min_open=True), default=0.5,
              show_default=True, help="Mining: least absorption probability of a rewrite.")
@click.option("--online/--no-online", default=True, show_default=True,
              help="Ask the online layer (embedding retrieval, fitted on --train) after the "
                   "mined table; needs `voicestream models build`.")
@click.option("--placement", is_flag=True,
              help="Also score rewriting only requests the NLU is unsure of (confidence "
                   "gates), against rewriting every request.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def eval_rewrite(train_file: str, test_file: str, min_support: int, min_probability: float,
                 online: bool, placement: bool, as_json: bool) -> None:
    """Score rewriting: wins, losses, win:loss, defect rate before/after, coverage."""
    import functools
    import json
    from pathlib import Path

    from infra.eval_rewrite import build_layers, evaluate
    from models.nlu.inference import NluModelMissing
    from models.rewrite.precomputed import MiningConfig
    from models.rewrite.simulate import nlu_confidence, nlu_interpreter

    try:
        interpret = nlu_interpreter()
        confidence = nlu_confidence() if placement else None
    except NluModelMissing as exc:
        raise click.ClickException(str(exc)) from exc
    if online:
        from models.rewrite.embedder import Embedder, EmbedderError

        try:
            Embedder()
        except EmbedderError as exc:
            raise click.ClickException(str(exc)) from exc
    report = evaluate(Path(train_file), Path(test_file), interpret,
                      mining=MiningConfig(min_support=min_support,
                                          min_probability=min_probability),
                      make_layers=functools.partial(build_layers, online=online),
                      confidence=confidence)
    click.echo(json.dumps(report, indent=None if as_json else 2))
