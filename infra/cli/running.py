"""Commands that run things: a worker, the skills, the demo, a Kafka cluster, a broker."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from infra import logs
from infra.cli.base import (
    check_registry,
    layers,
    main,
    settings_for,
)
from infra.config import env_layer


@main.command()
@click.option("--port", type=int, default=0, help="Port of the embedded broker (0: a free one).")
@click.option("--metrics-port", type=int, default=None,
              help="Serve Prometheus metrics on this port [default: metrics_port, 0: off].")
@click.option("--metrics-host", default=None,
              help="Address the metrics endpoint binds; 0.0.0.0 for every interface, as in "
                   "a container [default: metrics_host, 127.0.0.1].")
@click.option("--skills", "with_skills", is_flag=True,
              help="Also run the example skills in this process.")
@click.pass_context
def up(ctx: click.Context, port: int, metrics_port: int | None, metrics_host: str | None,
       with_skills: bool) -> None:
    """Run a worker with every agent, and an embedded broker unless one is configured.

    Prints 'broker: URL' (tansu://HOST:PORT for the embedded broker, so that other
    workers given it get Tansu's client settings), then 'ready'; stops on SIGINT/SIGTERM.
    """
    from infra import metrics
    from infra.runner import serve

    settings = settings_for(ctx, metrics_port=metrics_port, metrics_host=metrics_host)
    check_registry(settings)

    def ready(profile: Any) -> None:
        if settings.metrics_port:
            metrics.serve(settings.metrics_port, settings.metrics_host)
        click.echo(f"broker: {profile.native_url}")
        click.echo("ready")
        sys.stdout.flush()

    asyncio.run(serve(settings, ready, embedded_port=port, skills=with_skills))


@main.command()
@click.option("--only", multiple=True,
              help="Run only this skill (smart-home, timers, media, video); repeatable.")
@click.option("--broker", default=None, help="kafka://HOST:PORT [default: $VOICESTREAM_BROKER].")
@click.pass_context
def skills(ctx: click.Context, only: tuple[str, ...], broker: str | None) -> None:
    """Run the example skills against a running broker until SIGINT/SIGTERM."""
    from infra.runner import running_skills

    settings = settings_for(ctx, broker=broker)
    if not settings.broker:
        raise click.UsageError("skills need a broker: --broker kafka://HOST:PORT")
    check_registry(settings)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with running_skills(settings, settings.broker_profile(), only) as running:
            click.echo(f"skills: {', '.join(s.name for s in running)}")
            click.echo("ready")
            sys.stdout.flush()
            await stop.wait()

    asyncio.run(run())


@main.command()
@click.option("--rebuild-audio", is_flag=True,
              help="Re-synthesise the bundled WAVs with espeak-ng, then exit.")
@click.option("--record", "record_to", type=click.Path(dir_okay=False), default=None,
              help="Also record the session's traffic to this file (for replay --check).")
@click.pass_context
def demo(ctx: click.Context, rebuild_audio: bool, record_to: str | None) -> None:
    """Start the embedded broker and a worker, stream bundled commands, trace every event."""
    from infra import demo as demo_mod

    if rebuild_audio:
        out = Path(demo_mod.__file__).parent / demo_mod.AUDIO_DIR
        demo_mod.build_audio(out)
        click.echo(f"wrote {out}")
        return
    settings = settings_for(ctx, broker="")
    check_registry(settings)
    file_layer, group_flags = layers(ctx)
    if not any("log_level" in layer for layer in (file_layer, env_layer(), group_flags)):
        logs.configure(settings.log_format, "error")  # the trace is the output here
    rows = asyncio.run(demo_mod.run(settings, Path(record_to) if record_to else None))
    click.echo(demo_mod.summary(rows))


@main.command()
@click.option("--nodes", type=click.IntRange(1, 9), default=3,
              help="Combined broker+controller nodes.")
@click.option("--dir", "folder", type=click.Path(file_okay=False), default=None,
              help="Cluster state (ports, data); kept, so a restart resumes it "
                   "[default: DATA_DIR/cluster-N].")
@click.option("--resolve-only", is_flag=True,
              help="Only fetch the Kafka jars with Maven into the cache, then exit.")
@click.pass_context
def cluster(ctx: click.Context, nodes: int, folder: str | None, resolve_only: bool) -> None:
    """Run an Apache Kafka cluster (KRaft) on loopback until SIGINT/SIGTERM.

    Fetches the pinned Kafka server jars with Maven once, formats each node's
    storage, starts NODES combined broker+controller JVMs, prints
    'broker: kafka://HOST:PORT,...', then 'ready'. Topics default to
    replication factor min(3, NODES) and min.insync.replicas 2 from 3 nodes.
    """
    from infra.cluster import ClusterError, KafkaCluster, resolve_jars

    try:
        if resolve_only:
            click.echo(f"kafka jars: {resolve_jars()}")
            return
        settings = settings_for(ctx)
        where = Path(folder) if folder else Path(settings.data_dir) / f"cluster-{nodes}"
        kafka = KafkaCluster(where, nodes)
        stop = {"now": False}

        def on_signal(_sig: int, _frame: Any) -> None:
            stop["now"] = True

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, on_signal)
        try:
            kafka.start()
            click.echo(f"broker: {kafka.url}")
            click.echo("ready")
            sys.stdout.flush()
            while not stop["now"]:
                for node in kafka.nodes:
                    if not node.running:
                        raise ClusterError(f"node {node.node_id} exited; see {node.log_file}")
                time.sleep(0.5)
        finally:
            kafka.stop()
    except ClusterError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.option("--port", type=int, default=0, help="Port to listen on (0: a free one).")
def broker(port: int) -> None:
    """Run only the embedded broker; prints 'broker: tansu://HOST:PORT', then 'ready'.

    Point workers at it with VOICESTREAM_BROKER=tansu://HOST:PORT so that they use
    the client settings Tansu needs; clients may also use kafka://HOST:PORT.
    """
    from infra.broker import EmbeddedBroker

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with EmbeddedBroker(port) as embedded:
            click.echo(f"broker: {embedded.url.replace('kafka://', 'tansu://')}")
            click.echo("ready")
            sys.stdout.flush()
            await stop.wait()

    asyncio.run(run())


@main.command("bench")
@click.option("--devices", type=int, default=6, show_default=True,
              help="Simulated devices (each speaks one request at a time).")
@click.option("--rate", type=float, default=0.5, show_default=True,
              help="Utterances per second across the fleet.")
@click.option("--duration", "duration_s", type=float, default=60.0, show_default=True,
              help="Seconds of load per mode.")
@click.option("--workers", type=int, default=1, show_default=True,
              help="Worker processes in the group (started and stopped by the bench).")
@click.option("--mode", type=click.Choice(["speculative", "final-only", "semantic", "both",
                                           "all", "partials"]),
              default="both", show_default=True,
              help="both: the same audio on fresh workers with and without speculation; "
                   "semantic: speculation with the semantic final end-pointer; all: the three; "
                   "partials: speculation with and without partial transcripts.")
@click.option("--broker", "broker_url", default="",
              help="Broker URL (kafka://... or tansu://...); default: an embedded one.")
@click.option("--out", type=click.Path(file_okay=False), default="bench-out",
              show_default=True, help="Folder for bench.json, the plots and report.md.")
@click.option("--speech", type=click.Choice(["massive", "demo"]), default="massive",
              show_default=True, help="MASSIVE dev sentences in flite voices, or the bundled "
              "commands.")
@click.option("--sentences", type=int, default=40, show_default=True,
              help="How many MASSIVE dev sentences (used in turn).")
@click.option("--shared", type=click.Path(file_okay=False), default="../shared/data",
              show_default=True, help="The shared data folder (MASSIVE).")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE",
              help="A worker setting for both modes, e.g. endpointer__semantic=true.")
@click.option("--rates", default="",
              help="Comma-separated utterance rates: a load sweep (latency against load) "
                   "in the first mode instead of one run; writes sweep.json and "
                   "latency_vs_load.png.")
@click.option("--ingest", "ingest_per_device", type=click.IntRange(1, 1000), default=None,
              metavar="UTTERANCES",
              help="Instead: audio frames/s one worker ingests (end-pointing only), from a "
                   "backlog of UTTERANCES 4 s utterances per device written before it "
                   "starts; writes ingest.json.")
@click.option("--frame-ms", type=click.IntRange(10, 250), default=20, show_default=True,
              help="Audio per frame the --ingest devices send.")
@click.option("--profile", is_flag=True,
              help="Sample each worker with py-spy while the load runs; the busiest area "
                   "(inference, Kafka client, Faust, decoding, stages) goes into the report.")
def bench_command(devices: int, rate: float, duration_s: float, workers: int, mode: str,
                  broker_url: str, out: str, speech: str, sentences: int, shared: str,
                  sets: tuple[str, ...], rates: str, ingest_per_device: int | None,
                  frame_ms: int, profile: bool) -> None:
    """User-perceived latency of a simulated fleet: end of speech to outcome.

    Prints the summary; writes bench.json, latency_cdf.png, waterfall.png and
    report.md into --out.
    """
    from infra import bench

    if devices < 1 or rate <= 0 or duration_s <= 0 or workers < 1:
        raise click.BadParameter("devices, rate, duration and workers must be positive")
    bad = [s for s in sets if "=" not in s]
    if bad:
        raise click.BadParameter(f"not NAME=VALUE: {bad[0]}", param_hint="--set")
    modes = {"both": bench.MODES, "all": bench.ALL_MODES,
             "partials": bench.PARTIAL_MODES}.get(mode, (mode,))
    if ingest_per_device is not None:
        from infra import ingest

        figures = asyncio.run(ingest.measure(url=broker_url, devices=devices,
                                             utterances=ingest_per_device, frame_ms=frame_ms,
                                             logs=Path(out) / "logs" / "ingest",
                                             profile=profile))
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "ingest.json").write_text(json.dumps(figures, indent=2) + "\n")
        click.echo(f"{figures['broker']}: {figures['frames']} frames of {frame_ms} ms from "
                   f"{devices} devices; one worker finished {figures['finished']} of "
                   f"{figures['utterances']} utterances in {figures['drain_s']} s: "
                   f"{figures['frames_per_s']} frames/s ({figures['audio_s_per_s']} s of audio "
                   f"per second: that many real-time streams); figures in "
                   f"{Path(out) / 'ingest.json'}")
        if profile:
            click.echo(f"busiest in the worker (py-spy): {figures['bottleneck']}")
        return
    if rates:
        try:
            swept = [float(r) for r in rates.split(",")]
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--rates") from exc
        if any(r <= 0 for r in swept):
            raise click.BadParameter("rates must be positive", param_hint="--rates")
        curve = bench.sweep(rates=swept, devices=devices, duration_s=duration_s,
                            workers=workers, mode=modes[0], broker=broker_url, out=Path(out),
                            speech=speech, sentences=sentences, shared=Path(shared),
                            settings=dict(s.split("=", 1) for s in sets), profile=profile)
        for point in curve["points"]:
            click.echo(f"{point['rate']:g} utt/s: p50 {point['p50_ms']} ms, p95 "
                       f"{point['p95_ms']} ms, p99 {point['p99_ms']} ms, lost {point['lost']}")
        sat = curve["saturation"]
        click.echo(f"sustained at p95 <= {bench.SUSTAINED_P95_MS:g} ms: "
                   f"{curve['sustained_rate']} utt/s; saturated: "
                   + (f"at {sat['rate']:g} utt/s ({sat['why']})" if sat else "no")
                   + f"; figures in {Path(out) / 'sweep.json'}, report {Path(out) / 'report.md'}")
        return
    result = bench.run(devices=devices, rate=rate, duration_s=duration_s, workers=workers,
                       modes=modes, broker=broker_url, out=Path(out), speech=speech,
                       sentences=sentences, shared=Path(shared),
                       settings=dict(s.split("=", 1) for s in sets), profile=profile)
    click.echo((Path(out) / "report.md").read_text())
    click.echo(f"lost {result['lost']}; figures in {Path(out) / 'bench.json'}")
