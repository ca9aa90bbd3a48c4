"""The command group, its global options and what every command shares: settings in
layers, the broker, one-line errors for bad input."""

from __future__ import annotations

from typing import Any

import click

from infra import logs
from infra.config import ConfigError, Settings, env_layer
from infra.inputs import InputFileError, read_json_object
from streams.connection import Connection

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "show_default": True}


class BadInput(click.ClickException):
    """A file or setting a command was given is wrong: one line on stderr, exit status 2."""

    exit_code = 2


class _Main(click.Group):
    """The command group; a bad input file anywhere below ends in one line, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from agents.registry import RegistryError
        from models.rewrite.online import OnlineStateError

        try:
            return super().invoke(ctx)
        except (InputFileError, RegistryError, OnlineStateError) as exc:
            raise BadInput(str(exc)) from exc


def layers(ctx: click.Context) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``--config`` file's options and the group's own flags (log format and level)."""
    obj: dict[str, Any] = ctx.find_root().obj or {}
    return obj.get("file", {}), obj.get("flags", {})


def settings_for(ctx: click.Context, **flags: Any) -> Settings:
    """Settings from flags > ``VOICESTREAM_*`` > the ``--config`` file > defaults.

    ``flags`` are the command's own options; None means the flag was not given.
    """
    file_layer, group_flags = layers(ctx)
    given = {k: v for k, v in flags.items() if v is not None}
    try:
        return Settings.from_layers(file_layer, env_layer(), {**group_flags, **given})
    except ConfigError as exc:
        source = ctx.find_root().params.get("config_file")
        where = f" (with --config {source})" if source else ""
        raise BadInput(f"configuration{where}: {exc}") from exc


def check_registry(settings: Settings) -> None:
    """Read the skill registry now, so that a bad one fails before any broker starts."""
    from agents.registry import DEFAULT_REGISTRY, Registry

    Registry.load(settings.skills_registry or DEFAULT_REGISTRY)


def connection_for(settings: Settings) -> Connection:
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
    settings = settings_for(ctx)
    logs.configure(settings.log_format, settings.log_level)
