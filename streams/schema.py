"""Base of every voicestream message: kinds, schema version, strict/lenient fields."""

from __future__ import annotations

import dataclasses
import types
import typing
from enum import StrEnum
from typing import Any, ClassVar, Self, TypeVar, get_args, get_origin, get_type_hints

#: Version written into every message as ``v``. Readers accept any version up
#: to this one and reject newer ones, which they cannot interpret safely.
SCHEMA_VERSION = 1


class MessageType(StrEnum):
    """Kinds of message on the wire; the value is the ``type`` field."""

    UTTERANCE_START = "utterance-start"
    AUDIO_FRAME = "audio-frame"
    UTTERANCE_STOP = "utterance-stop"
    DEVICE_CONTEXT = "device-context"
    ENDPOINT = "endpoint"
    RESET = "reset"
    TRANSCRIPT = "transcript"
    PARTIAL = "partial"
    INTERPRETATION = "interpretation"
    DIRECTIVE = "directive"
    DECLINED = "declined"
    SKILL_RESPONSE = "skill-response"
    SKILL_STATUS = "skill-status"
    CONTEXT_UPDATE = "context-update"
    ERROR = "error"
    DEAD_LETTER = "dead-letter"
    FEEDBACK = "feedback"
    INTERACTION = "interaction"
    REWRITE_RULE = "rewrite-rule"
    REWRITE = "rewrite"


class SerializationError(Exception):
    """A message could not be encoded or decoded; ``code`` is kebab-case."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ValidationError(ValueError):
    """A message built in code breaks one of its invariants."""


M = TypeVar("M", bound="Message")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """Base class: a frozen record with a ``type`` and a schema version.

    Built in code it is strict (``__post_init__`` checks invariants and raises
    ``ValidationError``). Read from the wire with :meth:`from_wire` it is
    lenient but explicit: unknown fields are ignored, a missing required field
    or a field of the wrong type raises ``SerializationError``.
    """

    TYPE: ClassVar[MessageType]

    v: int = SCHEMA_VERSION

    def to_wire(self) -> dict[str, Any]:
        """Return the message as a plain dict ready for a codec."""
        out: dict[str, Any] = {"type": self.TYPE.value}
        for f in dataclasses.fields(self):
            out[f.name] = _plain(getattr(self, f.name))
        return out

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Self:
        """Build the message from a decoded dict, checking names and types."""
        hints = _hints(cls)
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                required = (
                    f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                )
                if required:
                    raise SerializationError(
                        "missing-field", f"{cls.TYPE.value} has no field {f.name!r}"
                    )
                continue
            kwargs[f.name] = _coerce(data[f.name], hints[f.name], f"{cls.TYPE.value}.{f.name}")
        try:
            return cls(**kwargs)
        except ValidationError as exc:
            raise SerializationError("invalid-value", str(exc)) from exc


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    cached = _HINTS.get(cls)
    if cached is None:
        cached = _HINTS[cls] = get_type_hints(cls)
    return cached


def _plain(value: Any) -> Any:
    if isinstance(value, StrEnum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _wrong(path: str, expected: str, value: Any) -> SerializationError:
    return SerializationError(
        "wrong-type", f"{path}: expected {expected}, got {type(value).__name__}"
    )


def _coerce(value: Any, hint: Any, path: str) -> Any:
    """Check ``value`` against ``hint`` and convert wire forms (lists to tuples)."""
    origin = get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        args = get_args(hint)
        if value is None:
            if type(None) in args:
                return None
            raise _wrong(path, str(hint), value)
        for arg in args:
            if arg is type(None):
                continue
            return _coerce(value, arg, path)
    if hint is Any:
        return value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise _wrong(path, "object", value)
        hints = _hints(hint)
        kwargs = {}
        for f in dataclasses.fields(hint):
            if f.name in value:
                kwargs[f.name] = _coerce(value[f.name], hints[f.name], f"{path}.{f.name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise SerializationError("missing-field", f"{path} has no field {f.name!r}")
        try:
            return hint(**kwargs)
        except ValidationError as exc:
            raise SerializationError("invalid-value", f"{path}: {exc}") from exc
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        try:
            return hint(value)
        except ValueError as exc:
            # Not the value itself: error text reaches dead letters and logs.
            allowed = ", ".join(m.value for m in hint)
            raise SerializationError(
                "invalid-value", f"{path}: not one of {allowed}"
            ) from exc
    if hint is bool:
        if not isinstance(value, bool):
            raise _wrong(path, "bool", value)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _wrong(path, "int", value)
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _wrong(path, "float", value)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise _wrong(path, "str", value)
        return value
    if hint is bytes:
        if not isinstance(value, bytes | bytearray):
            raise _wrong(path, "bytes", value)
        return bytes(value)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise _wrong(path, "list", value)
        (item,) = [a for a in get_args(hint) if a is not Ellipsis]
        return tuple(_coerce(v, item, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise _wrong(path, "object", value)
        key_t, val_t = get_args(hint)
        # Entries by position, not by key: keys are names (appliances, states).
        return {
            _coerce(k, key_t, f"{path} key {i}"): _coerce(v, val_t, f"{path} value {i}")
            for i, (k, v) in enumerate(value.items())
        }
    raise TypeError(f"{path}: unsupported field type {hint!r}")  # a schema bug, not bad input


def require(condition: bool, message: str) -> None:
    """Raise ``ValidationError`` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ValidationError(message)
