"""Locale routing: what a device's locale chooses for recognition and understanding.

A pure core (no I/O): :class:`LocaleRouter` turns the ``locale`` of a device's
context into a :class:`Route` (the recogniser's language and model, the NLU
model directory, whether English sound-alike rescoring applies) or refuses it
with :class:`LocaleUnsupported`, which the stages send on as the coded outcome
``locale-unsupported``: a request in a language the worker cannot understand
is never given an English guess.

A locale is supported when it matches the ``locales`` setting, its language
has an NLU model (``nlu_models``; English has the bundled one) and the
recognition engine speaks it (PocketSphinx: English only). A device that
never published a context, or one with an empty ``locale``, is ``en-US``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import re
from collections.abc import Mapping
from typing import Any

from streams.settings import Settings

CODE = "locale-unsupported"
DEFAULT_LOCALE = "en-US"
_LOCALE = re.compile(r"([A-Za-z]{2,3})(?:[-_]([A-Za-z]{4}))?(?:[-_]([A-Za-z]{2}|[0-9]{3}))?")


class LocaleUnsupported(Exception):
    """A locale this worker does not serve; ``code`` is ``locale-unsupported``."""

    code = CODE

    def __init__(self, locale: str, reason: str) -> None:
        super().__init__(f"locale {locale!r} is not supported: {reason}")
        self.locale = locale
        self.reason = reason


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    """What a supported locale chooses."""

    #: The locale, canonical (``de-DE``).
    locale: str
    #: Its language subtag (``de``): Whisper's language token is ``<|de|>``.
    language: str
    #: Whisper model for it: empty for the configured English model(s), else the
    #: multilingual one (``asr_multilingual_model``).
    asr_model: str
    #: NLU model directory; empty for the bundled English model.
    nlu_dir: str
    #: Whether the sound-alike rescoring and its strong second search apply: their
    #: sound keys are English spelling rules, so only English locales use them (shallow
    #: fusion, which matches tokens, biases every language).
    phonetic: bool


def canonical(locale: str) -> str | None:
    """Return ``locale`` as ``ll-CC`` (``ll``, ``ll-Scrp-CC``), or None if it is no locale."""
    m = _LOCALE.fullmatch(locale.strip())
    if m is None:
        return None
    language, script, region = m.groups()
    parts = [language.lower()]
    if script:
        parts.append(script.title())
    if region:
        parts.append(region.upper())
    return "-".join(parts)


def locale_of(ctx: Mapping[str, Any] | None) -> str:
    """The locale a device's context names (``en-US`` when it names none)."""
    value = (ctx or {}).get("locale")
    return value.strip() if isinstance(value, str) and value.strip() else DEFAULT_LOCALE


class LocaleRouter:
    """Choose the route of a locale from the settings (pure; results are cached)."""

    def __init__(self, settings: Settings) -> None:
        self.patterns = settings.locale_patterns()
        self.nlu_dirs = settings.nlu_model_dirs()
        self.engine = settings.asr_engine
        self.multilingual = settings.asr_multilingual_model

    def supported(self) -> str:
        """The ``locales`` setting as one line, for logs and error messages."""
        return ",".join(self.patterns)

    @functools.lru_cache(maxsize=1024)  # noqa: B019 - one router per worker
    def route(self, locale: str) -> Route:
        """Return the route of ``locale``; raise :class:`LocaleUnsupported` with the reason."""
        name = canonical(locale)
        if name is None:
            raise LocaleUnsupported(locale, "not a BCP 47 locale (e.g. de-DE)")
        language = name.split("-", 1)[0]
        if not any(fnmatch.fnmatchcase(name, p) for p in self.patterns):
            raise LocaleUnsupported(name, f"not in locales ({self.supported()})")
        if language != "en" and language not in self.nlu_dirs:
            raise LocaleUnsupported(name, f"no NLU model for {language!r} (nlu_models)")
        if language != "en" and self.engine == "pocketsphinx":
            # Moonshine hands other languages to Whisper base (MoonshineEngine's others).
            raise LocaleUnsupported(name, f"{self.engine} recognises English only")
        english = language == "en"
        return Route(locale=name, language=language,
                     asr_model="" if english else self.multilingual,
                     nlu_dir=self.nlu_dirs.get(language, ""), phonetic=english)

    def route_context(self, ctx: Mapping[str, Any] | None) -> Route:
        """The route of the locale in a device's context (``en-US`` without one)."""
        return self.route(locale_of(ctx))
