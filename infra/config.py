"""Configuration of a worker and the CLI: the settings and where they come from.

The settings are defined in :mod:`streams.settings`, below the agents that read
them (so that nothing under ``agents`` or ``streams`` imports ``infra``); this
module is where ``infra`` and the tools take them from. Values come in layers,
each overriding the ones below it: command-line flags, ``VOICESTREAM_*``
variables, a JSON file (``--config``), the defaults
(:meth:`Settings.from_layers`).
"""

from streams.settings import (
    ENV_PREFIX,
    BrokerProfile,
    ConfigError,
    EndpointerConfig,
    Settings,
    env_layer,
)

__all__ = ["ENV_PREFIX", "BrokerProfile", "ConfigError", "EndpointerConfig", "Settings",
           "env_layer"]
