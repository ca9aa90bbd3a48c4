"""Commands a device or an operator uses: send, context, listen, device keys."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import uuid
from typing import Any

import click

from infra.cli.base import (
    BadInput,
    connection_for,
    main,
    settings_for,
)
from infra.config import Settings
from infra.inputs import read_json_object
from streams import topics


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
    settings = settings_for(ctx, broker=broker)
    key = _device_key(settings, device, key_file)
    bootstrap = connection_for(settings)
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
@click.option("--device", required=True, help="Device id to send as.")
@click.option("--utterance", required=True, help="The utterance the feedback is about.")
@click.option("--kind", required=True,
              type=click.Choice(["barge-in", "confirm", "reject", "misheard", "repeat",
                                 "abandon"]),
              help="What the user did: barge-in, confirm, reject, misheard, repeat, abandon.")
@click.option("--broker", default=None, help="kafka://HOST:PORT [default: $VOICESTREAM_BROKER].")
@click.option("--key-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The device's key to sign with [default: derived from device_keys_file].")
@click.pass_context
def feedback(ctx: click.Context, device: str, utterance: str, kind: str, broker: str | None,
             key_file: str | None) -> None:
    """Tell the pipeline what the user made of an utterance (it decides its interaction record).

    Feedback counts when it arrives within interaction_window_s of the
    utterance's outcome; reject, misheard, barge-in, repeat and abandon make
    the interaction a defect.
    """
    from streams.audio import valid_id
    from streams.client import DeviceClient

    if not valid_id(utterance):
        raise click.BadParameter(f"{utterance!r} is not an utterance id", param_hint="--utterance")
    settings = settings_for(ctx, broker=broker)
    signing = _device_key(settings, device, key_file)
    bootstrap = connection_for(settings)

    async def run() -> None:
        async with DeviceClient(bootstrap, device, topic_prefix=settings.topic_prefix,
                                key=signing) as dev:
            await dev.feedback(utterance, kind)

    asyncio.run(run())
    click.echo(f"{kind} feedback published for {device}/{utterance}")


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
    settings = settings_for(ctx, broker=broker)
    signing = _device_key(settings, device, key_file)
    bootstrap = connection_for(settings)

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

    settings = settings_for(ctx, broker=broker)
    bootstrap = connection_for(settings)
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

    master = settings_for(ctx).device_master_key()
    if master is None:
        raise click.UsageError("no master key: set device_keys_file (voicestream devices init)")
    fd = os.open(out_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(identity.device_key(master, device).hex() + "\n")
    click.echo(f"key of {device} written to {out_file}")
