"""Example skills built on the skill SDK (:mod:`streams.skill`).

``smart-home`` switches devices and answers appliance queries, feeding state
changes back into the context table; ``timers`` sets, lists and cancels
timers and alarms; ``media`` and ``video`` play and stop media. Each handler
is a plain coroutine over a ``Directive``; :func:`build` wires them to skills.
"""

from __future__ import annotations

from streams import topics
from streams.connection import BrokerTarget
from streams.skill import Skill


def build(bootstrap: BrokerTarget, *, topic_prefix: str = topics.DEFAULT_PREFIX,
          only: tuple[str, ...] = ()) -> list[Skill]:
    """Create the example skills (those named in ``only``, or all)."""
    from agents.skills import media, smarthome, timers

    makers = {"smart-home": smarthome.attach, "timers": timers.attach,
              "media": media.attach_media, "video": media.attach_video}
    out = []
    for name, attach in makers.items():
        if only and name not in only:
            continue
        skill = Skill(name, bootstrap, topic_prefix=topic_prefix)
        attach(skill)
        out.append(skill)
    return out
