"""Media skills: ``media`` plays audio on the speaker, ``video`` plays films on a screen.

Both record what plays in the device context (``playing`` and a history item
such as ``music:jazz``), which is what "play music" and "turn it off" read.
"""

from __future__ import annotations

from streams.directive import Directive
from streams.skill import Skill, SkillContext

_KIND = {"play_music": "music", "play_audiobook": "audiobook", "play_podcasts": "podcast",
         "play_radio": "radio", "play_video": "video"}
_TITLE = ("song_name", "audiobook_name", "podcast_name", "radio_name", "movie_name",
          "playlist_name", "music_album", "artist_name")


async def handle(d: Directive, ctx: SkillContext) -> str:
    """Carry out one media directive; return what to say."""
    if d.intent == "media_stop":
        await ctx.update_context(playing={})
        return "Stopped."
    if d.intent.startswith("audio_volume"):
        return f"Volume {d.intent.removeprefix('audio_volume_')}."
    kind = _KIND.get(d.intent, "media")
    title = next((s.value for t in _TITLE if (s := d.slot(t)) is not None), "")
    genre_slot = d.slot("music_genre")
    genre = genre_slot.value if genre_slot is not None else ""
    playing = {"kind": kind}
    if title:
        playing["title"] = title
    if genre:
        playing["genre"] = genre
    await ctx.update_context(playing=playing, history=(f"{kind}:{genre or title or kind}",))
    what = " ".join(x for x in (genre, title) if x) or kind
    noun = {"audiobook": "the audiobook", "video": "the film", "podcast": "the podcast"}
    return f"Playing {noun[kind] + ' ' if kind in noun else ''}{what}."


def attach_media(skill: Skill) -> None:
    """Make ``skill`` the speaker media skill."""
    skill.handler(handle)


def attach_video(skill: Skill) -> None:
    """Make ``skill`` the screen video skill."""
    skill.handler(handle)
