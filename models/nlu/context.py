"""Device context resolves what the words leave open: exact, explainable rules.

The joint model reads the words; these rules read its output together with the
device's context (the context table's value for the device) and change the
interpretation only where the words are ambiguous:

* **temperature**: "what's the temperature" with no place or date means the
  appliance that is heating (oven on), else the thermostat when it runs,
  else the weather.
* **play a title**: "play Hunger Games" with no media word, artist or genre:
  music when music is playing, the film on a device with a screen, otherwise
  the audiobook.
* **turn it off/on**: "it"/"that" is the one device that is on (or off), the
  most recently used when several are; with nothing switched on but media
  playing, "turn it off" stops the media.
* **play music** with no genre, artist, song or playlist: the genre most
  frequent in the device's listening history.
* **lights** with no room: the device's own room.

Each rule records the facts it used (``"states.oven=on"``), so a skill and a
log reader can see why. Listening preference is learned from the device's
own history; the rest is rules because the behaviour must be exact.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from streams.nlu import Hypothesis, SlotValue

#: Appliances whose temperature a user asks about, hottest first.
HEATING = ("oven", "stove", "grill", "air fryer", "kettle", "sous vide")
CLIMATE = ("thermostat", "heating", "heater", "air conditioner", "ac")
ON_VALUES = frozenset({"on", "heating", "running", "preheating", "playing", "open"})
_MEDIA_WORDS = re.compile(
    r"\b(song|songs|music|album|track|tune|book|audiobook|audio book|podcast|radio|station|"
    r"movie|film|video|episode|show|series|game|playlist|trailer)\b")
_TEMPERATURE = re.compile(r"\b(temperature|temp|how hot|how warm|how cold|degrees)\b")
_WEATHER_WORDS = re.compile(
    r"\b(outside|weather|forecast|today|tomorrow|tonight|week|weekend|in [a-z]+ city)\b")
_TEMP_DESCRIPTORS = frozenset({"temperature", "the temperature", "temp", "hot", "warm", "cold",
                               "degrees"})
_QUESTION = re.compile(r"^\s*(what|what's|whats|how|is|tell|check|give)\b")
_PRONOUN = re.compile(r"\b(it|that|this|them)\b")
_MUSIC_CHOICE = ("music_genre", "artist_name", "song_name", "playlist_name", "music_album",
                 "music_descriptor", "radio_name")
_ROOMLESS_LIGHTS = ("iot_hue_lighton", "iot_hue_lightoff", "iot_hue_lightdim",
                    "iot_hue_lightup", "iot_hue_lightchange")
_SWITCH_OFF = ("iot_wemo_off", "iot_hue_lightoff", "audio_volume_mute")
_SWITCH_ON = ("iot_wemo_on", "iot_hue_lighton")


def _states(ctx: Mapping[str, Any]) -> dict[str, str]:
    states = ctx.get("states") or {}
    return {str(k).lower(): str(v).lower() for k, v in states.items()}


def _with(hyp: Hypothesis, intent: str, slots: list[SlotValue], facts: list[str]
          ) -> Hypothesis:
    return dataclasses.replace(hyp, intent=intent, slots=tuple(slots),
                               context=tuple(dict.fromkeys([*hyp.context, *facts])))


def _slot(type_: str, value: str) -> SlotValue:
    return SlotValue(type=type_, text=value, value=value)


def _temperature(hyp: Hypothesis, ctx: Mapping[str, Any], text: str) -> Hypothesis | None:
    if not _TEMPERATURE.search(text) or _WEATHER_WORDS.search(text) or \
            not _QUESTION.search(text):
        return None
    descriptor = hyp.slot("weather_descriptor")
    if hyp.slot("place_name") or hyp.slot("date") or (
            descriptor is not None and descriptor.text.lower() not in _TEMP_DESCRIPTORS):
        return None
    if not (hyp.intent == "weather_query" or hyp.intent.startswith(("qa_", "iot_", "general_"))
            or hyp.intent == "cooking_query"):
        return None
    states = _states(ctx)
    for group in (HEATING, CLIMATE):
        for name in group:
            if states.get(name) in ON_VALUES:
                return _with(hyp, "iot_appliance_query",
                             [_slot("device_type", name), _slot("attribute", "temperature")],
                             [f"states.{name}={states[name]}"])
    if hyp.intent != "weather_query":
        return _with(hyp, "weather_query", list(hyp.slots), ["states.none-heating"])
    return None


def _title(hyp: Hypothesis, text: str) -> SlotValue | None:
    """The words after "play": the model's title slot often holds only part of them."""
    m = re.search(r"\bplay\s+(?:me\s+)?(.+)$", text)
    if m and m.group(1).strip():
        start = m.start(1)
        title = hyp.text[start:].strip() if hyp.text else m.group(1)
        return SlotValue(type="title", text=title, value=title.lower(), start=start,
                         end=start + len(title))
    return None


def _play_title(hyp: Hypothesis, ctx: Mapping[str, Any], text: str) -> Hypothesis | None:
    if not hyp.intent.startswith("play_") and hyp.intent != "recommendation_movies":
        return None
    if not re.match(r"^\s*(please\s+)?(can you\s+)?play\b", text) or _MEDIA_WORDS.search(text):
        return None
    if any(hyp.slot(t) for t in ("artist_name", "music_genre", "audiobook_author",
                                 "podcast_descriptor", "radio_name")):
        return None
    title = _title(hyp, text)
    if title is None:
        return None
    playing = ctx.get("playing") or {}
    if str(playing.get("kind", "")).lower() == "music":
        return _with(hyp, "play_music", [dataclasses.replace(title, type="song_name")],
                     ["playing.kind=music"])
    if ctx.get("has_screen"):
        return _with(hyp, "play_video", [dataclasses.replace(title, type="movie_name")],
                     ["has_screen=true"])
    return _with(hyp, "play_audiobook", [dataclasses.replace(title, type="audiobook_name")],
                 ["has_screen=false"])


def _recent(ctx: Mapping[str, Any], names: list[str]) -> str:
    history = [str(h).lower() for h in ctx.get("history") or ()]
    for item in reversed(history):
        for name in names:
            if item.endswith(":" + name) or item == name:
                return name
    return sorted(names)[0]


def _switch(hyp: Hypothesis, ctx: Mapping[str, Any], text: str) -> Hypothesis | None:
    off = hyp.intent in _SWITCH_OFF or bool(re.search(r"\b(turn|switch|shut)\b.*\boff\b", text))
    on = hyp.intent in _SWITCH_ON or bool(re.search(r"\b(turn|switch)\b.*\bon\b", text))
    if not (off or on) or not _PRONOUN.search(text):
        return None
    if hyp.slot("device_type") or hyp.slot("house_place"):
        return None
    states = _states(ctx)
    want = [n for n, v in states.items() if (v in ON_VALUES) == off and v in
            (ON_VALUES | {"off", "idle", "closed", "stopped"})]
    playing = ctx.get("playing") or {}
    if not want:
        if off and playing:
            return _with(hyp, "media_stop", [], [f"playing.kind={playing.get('kind', '')}"])
        return None
    name = _recent(ctx, want) if len(want) > 1 else want[0]
    facts = [f"states.{name}={states[name]}"]
    if len(want) > 1:
        facts.append("history")
    light = "light" in name or "lamp" in name
    intent = ("iot_hue_lightoff" if off else "iot_hue_lighton") if light else \
        ("iot_wemo_off" if off else "iot_wemo_on")
    return _with(hyp, intent, [_slot("device_type", name)], facts)


def _play_music(hyp: Hypothesis, ctx: Mapping[str, Any], text: str) -> Hypothesis | None:
    if hyp.intent != "play_music" or any(hyp.slot(t) for t in _MUSIC_CHOICE):
        return None
    genres = [str(h).split(":", 1)[1].lower() for h in ctx.get("history") or ()
              if str(h).lower().startswith("music:") and ":" in str(h)]
    genres = [g for g in genres[-20:] if g]
    if not genres:
        return None
    counts = Counter(genres)
    top = max(counts.values())
    genre = next(g for g in reversed(genres) if counts[g] == top)  # ties: most recent
    return _with(hyp, "play_music", [*hyp.slots, _slot("music_genre", genre)],
                 [f"history.music={genre}"])


def _room(hyp: Hypothesis, ctx: Mapping[str, Any], text: str) -> Hypothesis | None:
    location = str(ctx.get("location") or "").strip().lower()
    if hyp.intent not in _ROOMLESS_LIGHTS or hyp.slot("house_place") or not location:
        return None
    return _with(hyp, hyp.intent, [*hyp.slots, _slot("house_place", location)],
                 [f"location={location}"])


RULES = (_temperature, _play_title, _switch, _play_music, _room)


def resolve(hyp: Hypothesis, ctx: Mapping[str, Any] | None) -> Hypothesis:
    """Return ``hyp`` conditioned on the device context ``ctx`` (a context dict)."""
    ctx = ctx or {}
    text = hyp.text.lower()
    for rule in RULES:
        changed = rule(hyp, ctx, text)
        if changed is not None:
            hyp = changed
    return hyp


def facts_consulted(ctx: Mapping[str, Any] | None) -> tuple[str, ...]:
    """Name the context fields present for a device (what the rules could look at)."""
    ctx = ctx or {}
    out = [f"has_screen={'true' if ctx.get('has_screen') else 'false'}"]
    out += [f"states.{k}" for k in sorted(_states(ctx))]
    if ctx.get("playing"):
        out.append("playing")
    if ctx.get("history"):
        out.append("history")
    if ctx.get("location"):
        out.append("location")
    if ctx.get("local_time"):
        out.append("local_time")
    return tuple(out)
