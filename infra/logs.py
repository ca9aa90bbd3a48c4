"""structlog setup: JSON in production, readable on a console; never audio or names."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

#: Keys whose values must never reach a log line (raw audio, personal names).
REDACTED_KEYS = frozenset({"pcm", "audio", "samples", "contacts", "appliances", "names"})


def _redact(_logger: Any, _method: str,
            event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace forbidden values with a marker, whoever bound them."""
    for key in REDACTED_KEYS & event.keys():
        event[key] = "[redacted]"
    return event


def configure(fmt: str = "json", level: str = "info") -> None:
    """Configure structlog and stdlib logging once per process."""
    lvl = getattr(logging, level.upper())
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Faust, mode and aiokafka log through stdlib; keep them quiet unless asked.
    logging.basicConfig(stream=sys.stderr, level=max(lvl, logging.WARNING),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for name in ("faust", "mode", "aiokafka"):
        logging.getLogger(name).setLevel(max(lvl, logging.WARNING))


def get(name: str, **bound: Any) -> Any:
    """Return a logger with ``bound`` fields; it follows later calls to :func:`configure`."""
    return structlog.get_logger(name, **bound)
