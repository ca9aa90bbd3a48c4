"""Smart-home skill: switch lights, plugs, appliances and cleaners; answer appliance queries.

A switch changes the device's ``states`` through a ``ContextUpdate`` (and
records ``on:<device>`` in its history), so a later "turn it off" resolves to
what this skill just turned on.
"""

from __future__ import annotations

from streams.directive import Directive
from streams.skill import Skill, SkillContext

_OFF = {"iot_hue_lightoff", "iot_wemo_off"}
_ON = {"iot_hue_lighton", "iot_wemo_on"}


def _target(d: Directive) -> str:
    device = d.slot("device_type")
    if device is not None:
        return device.value.lower()
    place = d.slot("house_place")
    light = d.intent.startswith("iot_hue") or any(w in d.text.split() for w in
                                                  ("light", "lights", "lamp"))
    if place is not None:
        return f"{place.value.lower()} light" if light else place.value.lower()
    return "light" if light else "plug"


async def handle(d: Directive, ctx: SkillContext) -> str:
    """Carry out one smart-home directive; return what to say."""
    if d.intent in _ON or d.intent in _OFF:
        target = _target(d)
        state = "on" if d.intent in _ON else "off"
        await ctx.update_context(states={target: state},
                                 history=(f"{state}:{target}",))
        return f"Turning {state} the {target}."
    if d.intent == "iot_cleaning":
        # "switch off the Neato vacuum", "start the robot hoover"
        slot = d.slot("device_type")
        target = slot.value.lower() if slot is not None else "vacuum"
        words = d.text.lower().split()
        state = "off" if any(w in words for w in ("off", "stop", "pause")) else "on"
        await ctx.update_context(states={target: state}, history=(f"{state}:{target}",))
        return f"{'Starting' if state == 'on' else 'Stopping'} the {target}."
    if d.intent == "iot_appliance_query":
        slot = d.slot("device_type")
        device = (slot.value if slot is not None else "appliance").lower()
        state = d.states.get(device, "unknown")
        temperature = d.states.get(f"{device}_temperature")
        if temperature:
            return f"The {device} is {state}, at {temperature} degrees."
        return f"The {device} is {state}."
    if d.intent in ("iot_hue_lightdim", "iot_hue_lightup"):
        target = _target(d)
        level = "dimmed" if d.intent.endswith("dim") else "brightened"
        await ctx.update_context(states={target: "on"}, history=(f"on:{target}",))
        return f"The {target} is {level}."
    return f"Sorry, the smart-home skill cannot do {d.intent.replace('_', ' ')} yet."


def attach(skill: Skill) -> None:
    """Make ``skill`` the smart-home skill."""
    skill.handler(handle)
