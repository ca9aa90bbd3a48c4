"""Running voicestream: broker, configuration, logging, metrics and the CLI."""
