"""JSON Schema of every message, derived from its dataclass: the event contract as files.

The files in ``streams/schemas/`` (one per message ``type``) are what consumers
in other languages validate against; a test checks that they match the
dataclasses, so they cannot drift. Regenerate them after changing a message::

    python -m streams.jsonschema

The schemas describe the decoded record (JSON, or msgpack on the audio topic,
where ``pcm`` is raw bytes). Extra properties are allowed: readers ignore
fields they do not know, so a later version may add some without breaking them.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import sys
import types
import typing
from enum import StrEnum
from pathlib import Path
from typing import Any, get_args, get_origin

from streams.codec import MESSAGE_CLASSES
from streams.schema import SCHEMA_VERSION, Message, _hints

#: Where the committed schema files live.
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
DIALECT = "https://json-schema.org/draft/2020-12/schema"
BASE_ID = "https://voicestream.dev/schemas/"


def of_message(cls: type[Message]) -> dict[str, Any]:
    """The JSON Schema of ``cls`` as written on the wire (schema version ``SCHEMA_VERSION``)."""
    body = _object(cls)
    body["properties"] = {
        "type": {"const": cls.TYPE.value},
        "v": {"type": "integer", "minimum": 1, "maximum": SCHEMA_VERSION},
        **{k: v for k, v in body["properties"].items() if k != "v"},
    }
    body["required"] = ["type", "v", *body["required"]]
    if cls.TYPE.value == "reset":
        # Written beside ``cancelled_revision`` (equal): every event has a revision.
        body["properties"]["revision"] = {"type": "integer", "minimum": 0}
        body["required"].append("revision")
    return {"$schema": DIALECT, "$id": f"{BASE_ID}{cls.TYPE.value}.json",
            "title": cls.TYPE.value, "description": _doc(cls), **body}


def _doc(cls: type) -> str:
    return (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ")


def _object(cls: type) -> dict[str, Any]:
    hints = _hints(cls)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for f in dataclasses.fields(cls):
        properties[f.name] = _type(hints[f.name])
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
    return {"type": "object", "properties": properties, "required": required}


def _type(hint: Any) -> dict[str, Any]:
    origin = get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return {"anyOf": [_type(a) for a in get_args(hint)]}
    if hint is type(None):
        return {"type": "null"}
    if hint is Any:
        return {}
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        return {"type": "string", "enum": [m.value for m in hint]}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return {"description": _doc(hint), **_object(hint)}
    simple = {bool: "boolean", int: "integer", float: "number", str: "string"}
    if hint in simple:
        return {"type": simple[hint]}
    if hint is bytes:
        return {"description": "raw bytes (a msgpack bin value)"}
    if origin is tuple:
        (item,) = [a for a in get_args(hint) if a is not Ellipsis]
        return {"type": "array", "items": _type(item)}
    if origin is dict:
        _, value = get_args(hint)
        return {"type": "object", "additionalProperties": _type(value)}
    raise TypeError(f"no JSON Schema for {hint!r}")


def all_schemas() -> dict[str, dict[str, Any]]:
    """File name -> schema, for every message type."""
    return {f"{t.value}.json": of_message(cls) for t, cls in sorted(MESSAGE_CLASSES.items())}


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=False) + "\n"


def load(message_type: str) -> dict[str, Any]:
    """The committed schema of ``message_type`` (e.g. ``"directive"``)."""
    data: dict[str, Any] = json.loads((SCHEMA_DIR / f"{message_type}.json").read_text())
    return data


def write(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write every schema file into ``directory``; return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for name, schema in all_schemas().items():
        path = directory / name
        path.write_text(render(schema))
        out.append(path)
    return out


if __name__ == "__main__":
    for written in write(Path(sys.argv[1]) if len(sys.argv) > 1 else SCHEMA_DIR):
        print(written)
