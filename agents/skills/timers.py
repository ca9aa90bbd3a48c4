"""Timers and alarms: set (a duration is a timer, a clock time an alarm), list, cancel.

State is per device and in memory; a timer that runs out is announced with
one more ``done`` response for its directive.
"""

from __future__ import annotations

import asyncio
import re

from streams.directive import Directive
from streams.skill import Skill, SkillContext


def spoken_duration(iso: str) -> str:
    """``PT1H30M`` -> ``1 hour 30 minutes``."""
    parts = re.findall(r"(\d+)([DHMS])", iso)
    names = {"D": "day", "H": "hour", "M": "minute", "S": "second"}
    return " ".join(f"{n} {names[u]}{'' if n == '1' else 's'}" for n, u in parts) or iso


def seconds(iso: str) -> int:
    """``PT1H30M`` -> 5400."""
    mult = {"D": 86400, "H": 3600, "M": 60, "S": 1}
    return sum(int(n) * mult[u] for n, u in re.findall(r"(\d+)([DHMS])", iso))


class Timers:
    """The timers and alarms of every device, and the handler that changes them."""

    def __init__(self) -> None:
        self.alarms: dict[str, list[str]] = {}
        self.timers: dict[str, list[asyncio.Task[None]]] = {}

    async def handle(self, d: Directive, ctx: SkillContext) -> str:
        """Carry out one timers/alarms directive; return what to say."""
        when = d.slot("time")
        if d.intent == "alarm_set":
            if when is None:
                return "For when?"
            if when.value.startswith("P"):
                task = asyncio.create_task(self._ring(d, ctx, when.value))
                self.timers.setdefault(d.device_id, []).append(task)
                return f"Timer set for {spoken_duration(when.value)}."
            if re.fullmatch(r"\d\d:\d\d", when.value):
                self.alarms.setdefault(d.device_id, []).append(when.value)
                return f"Alarm set for {when.value}."
            return f"I could not read the time '{when.text}'."
        if d.intent == "alarm_query":
            alarms = sorted(self.alarms.get(d.device_id, []))
            running = [t for t in self.timers.get(d.device_id, []) if not t.done()]
            if not alarms and not running:
                return "You have no alarms or timers."
            return f"Alarms: {', '.join(alarms) or 'none'}; timers running: {len(running)}."
        if d.intent == "alarm_remove":
            n = len(self.alarms.pop(d.device_id, []))
            for t in self.timers.pop(d.device_id, []):
                t.cancel()
            return f"Cancelled {n} alarm{'s' if n != 1 else ''} and the timers."
        return "Sorry, I cannot do that with timers."

    async def _ring(self, d: Directive, ctx: SkillContext, iso: str) -> None:
        await asyncio.sleep(seconds(iso))
        await ctx.announce(f"Your {spoken_duration(iso)} timer is done.")


def attach(skill: Skill) -> Timers:
    """Make ``skill`` the timers skill; return its state."""
    timers = Timers()
    skill.handler(timers.handle)
    return timers
