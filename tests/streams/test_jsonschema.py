"""The JSON Schema files: current with the dataclasses, and in agreement with the decoder."""

from __future__ import annotations

import dataclasses
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from streams import jsonschema as schemas
from streams.codec import MESSAGE_CLASSES, Codec, decode, encode, from_dict, loads
from streams.directive import Directive, directive_id
from streams.schema import Message, SerializationError, ValidationError
from tests.streams.test_wire_properties import json_values, plausible


def validator(message_type: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schemas.load(message_type))


def test_the_committed_files_are_the_dataclasses_schemas() -> None:
    committed = {p.name for p in schemas.SCHEMA_DIR.glob("*.json")}
    generated = schemas.all_schemas()
    assert committed == set(generated), "run: python -m streams.jsonschema"
    for name, schema in generated.items():
        jsonschema.Draft202012Validator.check_schema(schema)
        assert (schemas.SCHEMA_DIR / name).read_text() == schemas.render(schema), \
            f"{name} is stale: run python -m streams.jsonschema"


def fixed_for(cls: type[Message]) -> dict[str, Any]:
    if cls is Directive:  # its id is derived from the utterance and revision
        return {"utterance_id": "u", "revision": 0, "directive_id": directive_id("u", 0)}
    return {}


def draw_message(cls: type[Message], data: st.DataObject) -> Message:
    try:
        return data.draw(plausible(cls, **fixed_for(cls)))
    except ValidationError:
        assume(False)  # an invariant between fields (e.g. at_ms <= t_ms) not met
        raise


@pytest.mark.parametrize("cls", list(MESSAGE_CLASSES.values()), ids=lambda c: c.TYPE.value)
@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow,
                                                  HealthCheck.filter_too_much])
@given(data=st.data())
def test_every_message_we_write_validates(cls: type[Message], data: st.DataObject) -> None:
    message = draw_message(cls, data)
    binary = any(isinstance(getattr(message, f.name), bytes) for f in dataclasses.fields(cls))
    codec = Codec.MSGPACK if binary else Codec.JSON
    validator(cls.TYPE.value).validate(loads(encode(message, codec), codec))


@pytest.mark.parametrize("cls", list(MESSAGE_CLASSES.values()), ids=lambda c: c.TYPE.value)
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow,
                                                  HealthCheck.filter_too_much])
@given(data=st.data())
def test_what_the_schema_refuses_the_decoder_refuses(cls: type[Message],
                                                     data: st.DataObject) -> None:
    """A field set to a value of any shape: the decoder may be stricter (invariants
    between fields), never looser."""
    wire = loads(encode(draw_message(cls, data), Codec.MSGPACK), Codec.MSGPACK)
    binary = {f.name for f in dataclasses.fields(cls)
              if isinstance(wire.get(f.name), bytes)}  # JSON Schema has no bytes type
    # A reset's ``revision`` is written for readers and derived, not read, on decoding.
    derived = {"revision"} if cls.TYPE.value == "reset" else set()
    field = data.draw(st.sampled_from(sorted(set(wire) - {"type"} - binary - derived)))
    wire[field] = data.draw(json_values)
    if data.draw(st.booleans()):
        del wire[field]
    try:
        from_dict(wire)
        accepted = True
    except SerializationError as exc:
        accepted = False
        code = exc.code
    valid = validator(cls.TYPE.value).is_valid(wire)
    if accepted:
        assert valid, (field, wire.get(field, "missing"))
    elif valid:  # the schema cannot say it: a range or an invariant between fields
        assert code in ("invalid-value", "unsupported-schema-version") or (
            # JSON Schema counts 1.0 as an integer; the decoder wants an int.
            code == "wrong-type" and integral_float(wire.get(field))), (code, field)


def integral_float(value: Any) -> bool:
    if isinstance(value, float):
        return value.is_integer()
    if isinstance(value, list):
        return any(integral_float(v) for v in value)
    if isinstance(value, dict):
        return any(integral_float(v) for v in value.values())
    return False


def test_a_directive_without_its_skill_or_with_a_bad_reason_is_invalid() -> None:
    good = decode(encode(Directive(directive_id="u/0", device_id="d", utterance_id="u",
                                   revision=0, skill="timers", intent="alarm_set"),
                         Codec.JSON), Codec.JSON).to_wire()
    validator("directive").validate(good)
    assert not validator("directive").is_valid({k: v for k, v in good.items() if k != "skill"})
    assert not validator("declined").is_valid({
        "type": "declined", "v": 1, "device_id": "d", "utterance_id": "u", "revision": 0,
        "reason": "bored"})
