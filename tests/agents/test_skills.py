"""The example skills' handlers, driven directly with a recording context."""

from __future__ import annotations

import asyncio
from typing import Any

from agents.skills import media, smarthome, timers
from streams.directive import Directive
from streams.nlu import SlotValue


class Ctx:
    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []
        self.said: list[str] = []

    async def update_context(self, **changes: Any) -> None:
        self.updates.append(changes)

    async def announce(self, text: str) -> None:
        self.said.append(text)


def directive(intent: str, text: str = "", states: dict[str, str] | None = None,
              **slots: str) -> Directive:
    return Directive(directive_id="u/0", device_id="d", utterance_id="u", revision=0,
                     skill="x", intent=intent, text=text, states=states or {},
                     slots=tuple(SlotValue(type=t, text=v, value=v) for t, v in slots.items()))


async def test_smart_home_switches_and_reports_state() -> None:
    ctx = Ctx()
    said = await smarthome.handle(directive("iot_wemo_on", "turn on the kitchen light",
                                            house_place="kitchen"), ctx)  # type: ignore[arg-type]
    assert said == "Turning on the kitchen light."
    assert ctx.updates == [{"states": {"kitchen light": "on"}, "history": ("on:kitchen light",)}]
    oven = await smarthome.handle(directive("iot_appliance_query", states={
        "oven": "on", "oven_temperature": "180"}, device_type="oven"), ctx)  # type: ignore[arg-type]
    assert oven == "The oven is on, at 180 degrees."


async def test_smart_home_starts_and_stops_a_named_cleaner() -> None:
    ctx = Ctx()
    said = await smarthome.handle(directive("iot_cleaning", "switch off the neato vacuum",
                                            device_type="neato vacuum"), ctx)  # type: ignore[arg-type]
    assert said == "Stopping the neato vacuum."
    assert ctx.updates == [{"states": {"neato vacuum": "off"},
                            "history": ("off:neato vacuum",)}]
    said = await smarthome.handle(directive("iot_cleaning", "start cleaning the floor"),
                                  ctx)  # type: ignore[arg-type]
    assert said == "Starting the vacuum."
    assert ctx.updates[-1]["states"] == {"vacuum": "on"}


async def test_timers_set_list_and_ring() -> None:
    state, ctx = timers.Timers(), Ctx()
    assert await state.handle(directive("alarm_set", time="07:30"), ctx) == \
        "Alarm set for 07:30."  # type: ignore[arg-type]
    assert await state.handle(directive("alarm_set", time="PT0S"), ctx) == \
        "Timer set for 0 seconds."  # type: ignore[arg-type]
    await asyncio.gather(*state.timers["d"])  # the zero-length timer rings
    assert ctx.said == ["Your 0 seconds timer is done."]
    listed = await state.handle(directive("alarm_query"), ctx)  # type: ignore[arg-type]
    assert listed.startswith("Alarms: 07:30")
    assert timers.spoken_duration("PT1H30M") == "1 hour 30 minutes"
    assert timers.seconds("PT1H30M") == 5400


async def test_media_records_what_plays() -> None:
    ctx = Ctx()
    said = await media.handle(directive("play_music", music_genre="jazz"), ctx)  # type: ignore[arg-type]
    assert said == "Playing jazz."
    assert ctx.updates[-1] == {"playing": {"kind": "music", "genre": "jazz"},
                               "history": ("music:jazz",)}
    assert await media.handle(directive("media_stop"), ctx) == "Stopped."  # type: ignore[arg-type]
    assert ctx.updates[-1] == {"playing": {}}
