"""Audio stream messages, keyed by device id on the audio topic.

A device sends, per utterance: ``UtteranceStart``, then ``AudioFrame``+ with
``seq`` counting up from 0, then ``UtteranceStop``. All three share the audio
topic so that, keyed by device id, they stay on one partition and in order.
"""

from __future__ import annotations

import dataclasses
import re
from enum import StrEnum
from typing import ClassVar

from streams.schema import Message, MessageType, require

#: Sample rates the end-pointer accepts (it resamples all of them to 16 kHz).
SUPPORTED_SAMPLE_RATES_HZ = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000)
#: Longest single frame accepted; devices send 20 ms frames.
MAX_FRAME_MS = 250
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")
#: What an id must be; error text says this rather than quoting the bad id.
ID_RULE = "need 1-128 of A-Z a-z 0-9 . _ : @ -, the first alphanumeric"


class SampleFormat(StrEnum):
    """PCM sample encodings; only 16-bit little-endian signed is supported."""

    S16LE = "s16le"


def valid_id(value: str) -> bool:
    """Return whether ``value`` is a usable device or utterance id."""
    return bool(_ID.match(value))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class UtteranceStart(Message):
    """The device opened its microphone for a new utterance."""

    TYPE: ClassVar[MessageType] = MessageType.UTTERANCE_START

    device_id: str
    utterance_id: str
    sample_rate_hz: int
    sample_format: SampleFormat = SampleFormat.S16LE
    channels: int = 1
    #: Wall-clock time at the device when the microphone opened, ms since epoch.
    started_at_ms: int = 0

    def __post_init__(self) -> None:
        require(valid_id(self.device_id), f"bad device_id: {ID_RULE}")
        require(valid_id(self.utterance_id), f"bad utterance_id: {ID_RULE}")
        require(self.sample_rate_hz > 0, "sample_rate_hz must be positive")
        require(self.channels > 0, "channels must be positive")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AudioFrame(Message):
    """A chunk of 16-bit mono PCM; ``audio_ms`` is its start on the utterance's clock."""

    TYPE: ClassVar[MessageType] = MessageType.AUDIO_FRAME

    device_id: str
    utterance_id: str
    seq: int
    pcm: bytes
    sample_rate_hz: int
    #: Position of the frame's first sample, ms since the utterance's first frame.
    audio_ms: int
    sample_format: SampleFormat = SampleFormat.S16LE
    channels: int = 1

    def __post_init__(self) -> None:
        require(valid_id(self.device_id), f"bad device_id: {ID_RULE}")
        require(valid_id(self.utterance_id), f"bad utterance_id: {ID_RULE}")
        require(self.seq >= 0, "seq must be >= 0")
        require(self.sample_rate_hz > 0, "sample_rate_hz must be positive")
        require(self.audio_ms >= 0, "audio_ms must be >= 0")

    @property
    def duration_ms(self) -> float:
        """Length of the frame in ms, assuming 16-bit samples."""
        return len(self.pcm) / 2 / max(self.channels, 1) / self.sample_rate_hz * 1000.0


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class UtteranceStop(Message):
    """The device closed its microphone; ``last_seq`` is the last frame it sent."""

    TYPE: ClassVar[MessageType] = MessageType.UTTERANCE_STOP

    device_id: str
    utterance_id: str
    last_seq: int

    def __post_init__(self) -> None:
        require(valid_id(self.device_id), f"bad device_id: {ID_RULE}")
        require(valid_id(self.utterance_id), f"bad utterance_id: {ID_RULE}")


AudioMessage = UtteranceStart | AudioFrame | UtteranceStop
