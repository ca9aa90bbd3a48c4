"""Recording traffic and replaying it."""

from __future__ import annotations

import asyncio
import functools
import signal
import sys
from pathlib import Path

import click

from infra.cli.base import (
    check_registry,
    connection_for,
    main,
    settings_for,
)
from streams import topics


@main.command()
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False),
              help="Recording file to write (JSON lines).")
@click.option("--duration", type=float, default=None,
              help="Seconds to record [default: until SIGINT/SIGTERM].")
@click.option("--broker", default=None, help="kafka://HOST:PORT [default: $VOICESTREAM_BROKER].")
@click.pass_context
def record(ctx: click.Context, out_file: str, duration: float | None,
           broker: str | None) -> None:
    """Record the input topics (audio, context, feedback) and the output topics."""
    from infra.replay import record as do_record

    settings = settings_for(ctx, broker=broker)
    bootstrap = connection_for(settings)

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if duration is not None:
            loop.call_later(duration, stop.set)
        started = asyncio.Event()

        def progress(n: int) -> None:
            click.echo(f"\rrecorded {n} records", nl=False, err=True)

        task = asyncio.create_task(do_record(bootstrap, Path(out_file), stop=stop,
                                             started=started, prefix=settings.topic_prefix,
                                             on_record=progress))
        await started.wait()
        click.echo("recording", err=True)
        return await task

    count = asyncio.run(run())
    click.echo(f"\n{count} records written to {out_file}", err=True)


@main.command()
@click.argument("recording", type=click.Path(exists=True, dir_okay=False))
@click.option("--check", is_flag=True, help="Compare outputs with the recorded ones.")
@click.option("--speed", type=float, default=1.0, help="Replay speed factor (2: twice as fast).")
@click.option("--timeout", type=float, default=30.0, help="Extra seconds to wait for outputs.")
@click.option("--broker", default=None,
              help="kafka://HOST:PORT with a worker running under --topic-prefix "
                   "[default: $VOICESTREAM_BROKER, else an embedded broker and worker are "
                   "started].")
@click.option("--topic-prefix", "replay_prefix", default=topics.REPLAY_PREFIX,
              help="Prefix of the topics the replay writes and reads, its own: never the "
                   "live topic_prefix without --into-live.")
@click.option("--into-live", is_flag=True,
              help="Allow --topic-prefix to name live topics (the configured topic_prefix, "
                   "real devices' and workers' topics).")
@click.pass_context
def replay(ctx: click.Context, recording: str, check: bool, speed: float, timeout: float,
           broker: str | None, replay_prefix: str, into_live: bool) -> None:
    """Republish RECORDING's inputs with their timing; with --check, diff the outputs.

    The inputs go under --topic-prefix, never into the live topics unless
    --into-live says so. Without a broker it runs its own: embedded broker,
    and a worker and the example skills under that prefix; with one, run a
    worker there under that prefix (VOICESTREAM_TOPIC_PREFIX, and an
    APP_ID of its own).

    Exit status: 0 when the outputs match (or without --check), 1 on a
    difference, 2 on a usage error (a prefix naming live topics included).
    """
    from infra.replay import LiveTopicsError, ReplayResult, check_prefix, load
    from infra.replay import replay as do_replay
    from infra.runner import broker_for, running_skills, running_worker, skill_topics, warmed_up

    if speed <= 0:
        raise click.UsageError("--speed must be positive")
    load(Path(recording))  # a bad recording fails here, before any broker or worker starts
    settings = settings_for(ctx, broker=broker)
    if not settings.broker:
        check_registry(settings)
    # The worker a replay runs, and what it checks names against, under the replay's prefix.
    ours = settings_for(ctx, broker=broker, topic_prefix=replay_prefix)
    shorts = [s.short for s in topics.ALL] + skill_topics(settings)
    try:
        check_prefix(replay_prefix, settings.topic_prefix, into_live=into_live, shorts=shorts)
    except LiveTopicsError as exc:
        raise click.UsageError(f"{exc} with --into-live") from exc

    go = functools.partial(do_replay, Path(recording), speed=speed, timeout_s=timeout,
                           prefix=replay_prefix, live_prefix=settings.topic_prefix,
                           into_live=into_live, device_master_key=settings.device_master_key())

    async def run() -> ReplayResult:
        async with broker_for(settings) as profile:
            if settings.broker:
                return await go(profile.connection)
            async with running_worker(ours, profile) as worker, \
                    running_skills(ours, profile) as skills:
                await warmed_up(worker, skills)
                return await go(profile.connection)

    result = asyncio.run(run())
    groups = len(result.expected)
    click.echo(f"replayed {result.inputs} input records; {groups} recorded output groups")
    if not check:
        return
    if result.ok:
        click.echo("check: outputs match the recording")
        return
    click.echo("check: outputs differ from the recording", err=True)
    click.echo(result.diff)
    sys.exit(1)
