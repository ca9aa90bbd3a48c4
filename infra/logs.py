"""structlog setup: JSON in production, readable on a console; never audio, names or speech.

Log lines carry codes, ids, counts and sizes. Call sites log those; as a
safety net, :func:`redact` hides the values of keys that name payload,
personal names or what was said, whoever logs them, and tracebacks are
written without their exceptions' messages (a message can quote the input
that raised it).
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import MutableMapping
from typing import Any

import structlog

#: Keys whose values must never reach a log line: raw audio and payloads,
#: personal names, and what was said (transcripts, hypotheses, slot values,
#: the phrases and grammar a device expects).
REDACTED_KEYS = frozenset({
    "pcm", "audio", "samples", "raw", "payload", "excerpt_hex",
    "contacts", "appliances", "names", "states", "history", "playing",
    "text", "transcript", "nbest", "words", "hypotheses", "slots", "utterance",
    "say", "phrases", "grammar",
})
MARKER = "[redacted]"
#: How deep :func:`redact` looks into nested mappings and lists.
_DEPTH = 4


def _scrub(value: Any, depth: int) -> Any:
    if depth <= 0:
        return value
    if isinstance(value, dict):
        return {k: _hidden(k, v, depth - 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, depth - 1) for v in value]
    return value


def _hidden(key: object, value: Any, depth: int) -> Any:
    # A number under a forbidden key is a count or a size (``contacts=3``): kept.
    if key in REDACTED_KEYS and not isinstance(value, int | float):
        return MARKER
    return _scrub(value, depth)


def redact(_logger: Any, _method: str,
           event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace forbidden values (at any depth up to 4) with a marker, whoever bound them."""
    for key in list(event.keys()):
        event[key] = _hidden(key, event[key], _DEPTH)
    return event


def exception_text(exc: BaseException) -> str:
    """Return ``exc``'s traceback, its causes' too, with each message left out.

    The frames and each exception's type (and ``code``, where it has one)
    remain: enough to find the bug, nothing of the input that met it.
    """
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        name = f"{type(current).__module__}.{type(current).__qualname__}"
        code = getattr(current, "code", None)
        block = ["Traceback (most recent call last):\n",
                 *traceback.format_tb(current.__traceback__),
                 f"{name}{f' ({code})' if isinstance(code, str) else ''}: {MARKER}\n"]
        parts[:0] = block
        if current.__cause__ is not None:
            parts.insert(0, "\nThe above exception was the direct cause of the following "
                            "exception:\n\n")
            current = current.__cause__
        elif current.__context__ is not None and not current.__suppress_context__:
            parts.insert(0, "\nDuring handling of the above exception, another exception "
                            "occurred:\n\n")
            current = current.__context__
        else:
            current = None
    if parts and parts[0].startswith("\n"):  # a cause already seen: a cycle, cut
        parts.pop(0)
    return "".join(parts).rstrip("\n")


def _format_exc_info(_logger: Any, _method: str,
                     event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Render ``exc_info`` (``log.exception``) as :func:`exception_text` under ``exception``."""
    exc_info = event.pop("exc_info", None)
    if not exc_info:
        return event
    if isinstance(exc_info, BaseException):
        exc: BaseException | None = exc_info
    elif isinstance(exc_info, tuple):
        exc = exc_info[1]
    else:
        exc = sys.exc_info()[1]
    if exc is not None:
        event["exception"] = exception_text(exc)
    return event


class _Formatter(logging.Formatter):
    """Stdlib records (Faust, aiokafka, the skill SDK) with tracebacks as :func:`exception_text`."""

    def formatException(self, ei: Any) -> str:
        return exception_text(ei[1]) if ei and ei[1] is not None else ""


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
            redact,
            _format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        # One write per line: print() writes the newline apart, and a line that
        # Faust's consumer thread logged through stdlib meanwhile landed inside ours
        # (two events on one line, which no JSON reader takes).
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Faust, mode and aiokafka log through stdlib; keep them quiet unless asked.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=max(lvl, logging.WARNING), handlers=[handler])
    for name in ("faust", "mode", "aiokafka"):
        logging.getLogger(name).setLevel(max(lvl, logging.WARNING))


def get(name: str, **bound: Any) -> Any:
    """Return a logger with ``bound`` fields; it follows later calls to :func:`configure`."""
    return structlog.get_logger(name, **bound)
