"""Device context: what the device is and what is going on around it.

Published on the compacted context topic, keyed by device id; the newest
message for a device replaces the previous one in the context table.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from streams.audio import ID_RULE, valid_id
from streams.schema import Message, MessageType, require


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DeviceContext(Message):
    """A snapshot of a device's context; contacts and names never go to logs."""

    TYPE: ClassVar[MessageType] = MessageType.DEVICE_CONTEXT

    device_id: str
    device_type: str = "speaker"
    has_screen: bool = False
    #: Appliance or device states, e.g. ``{"oven": "on", "tv": "off"}``.
    states: dict[str, str] = dataclasses.field(default_factory=dict)
    #: What is playing, e.g. ``{"kind": "music", "genre": "jazz"}``; empty when idle.
    playing: dict[str, str] = dataclasses.field(default_factory=dict)
    location: str = ""
    locale: str = "en-US"
    contacts: tuple[str, ...] = ()
    appliances: tuple[str, ...] = ()
    #: What the device expects next, e.g. the ten digits while asking for a PIN:
    #: recognition is then restricted to these phrases. Empty: anything.
    grammar: tuple[str, ...] = ()
    #: Recent activity, newest last, e.g. ``("music:jazz", "video:film")``.
    history: tuple[str, ...] = ()
    #: The device's local time of day as ``HH:MM``; empty when unknown.
    local_time: str = ""
    #: Wall-clock time of the snapshot at the device, ms since epoch.
    updated_at_ms: int = 0
    #: Who is using the device, where it knows (a voice profile); empty: the device's
    #: requests are one user's (interaction records then use the device id).
    user_id: str = ""

    def __post_init__(self) -> None:
        require(valid_id(self.device_id), f"bad device_id: {ID_RULE}")

    def redacted(self) -> dict[str, object]:
        """Return the context as loggable fields: names are counted, not shown."""
        return {
            "device_type": self.device_type,
            "has_screen": self.has_screen,
            "states": len(self.states),  # keyed by appliance name
            "location": self.location,
            "contacts": len(self.contacts),
            "appliances": len(self.appliances),
        }
