"""The skill registry: which skills exist, what they handle and need (a TOML file).

A pure core, validated on load: a malformed entry is refused with a
``RegistryError`` naming the entry and the field.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from streams import topics

#: Bundled registry of the example skills.
DEFAULT_REGISTRY = Path(__file__).resolve().parent / "skills" / "registry.toml"
CAPABILITIES = frozenset({"screen", "speaker"})
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


class RegistryError(ValueError):
    """The skill registry is malformed; the message names the entry and the field."""


@dataclasses.dataclass(frozen=True, slots=True)
class SkillSpec:
    """One skill: what it handles, what it needs, and how it ranks."""

    name: str
    intents: tuple[str, ...]
    topic: str
    requires: frozenset[str] = frozenset()
    priority: int = 0
    min_confidence: float = 0.3
    description: str = ""
    #: Languages the skill serves (ISO 639-1, from the request's locale); ``*``: any.
    languages: tuple[str, ...] = ("*",)

    def handles(self, intent: str) -> bool:
        """Whether one of the skill's intent patterns (``iot_*``) matches ``intent``."""
        return any(fnmatch.fnmatchcase(intent, p) for p in self.intents)

    def serves(self, language: str) -> bool:
        """Whether the skill takes requests made in ``language`` (``de``)."""
        return "*" in self.languages or language in self.languages


_FIELDS = {"name", "intents", "topic", "requires", "priority", "min_confidence", "description",
           "languages"}


class Registry:
    """The skills, in file order; built from TOML ``[[skill]]`` tables."""

    def __init__(self, skills: Sequence[SkillSpec]) -> None:
        self.skills = tuple(skills)

    @classmethod
    def load(cls, path: Path | str = DEFAULT_REGISTRY) -> Registry:
        """Read and validate a registry file; raise ``RegistryError`` naming what is wrong."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise RegistryError(f"{path}: {exc.strerror or type(exc).__name__}") from exc
        except UnicodeDecodeError as exc:
            raise RegistryError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
        except tomllib.TOMLDecodeError as exc:
            # Python 3.11 writes the place into the message: "... (at line 3, column 15)".
            at = re.search(r"\(at line (\d+), column (\d+)\)$", str(exc))
            if at is None:
                raise RegistryError(f"{path}: not valid TOML: {exc}") from exc
            raise RegistryError(f"{path}:{at[1]}: not valid TOML: {str(exc)[:at.start()]}"
                                f"(column {at[2]})") from exc
        return cls.parse(data, str(path))

    @classmethod
    def parse(cls, data: Mapping[str, Any], source: str = "registry") -> Registry:
        """Validate a decoded registry document."""
        extra = set(data) - {"skill"}
        if extra:
            raise RegistryError(f"{source}: unknown top-level keys {sorted(extra)}; "
                                "use [[skill]] tables")
        entries = data.get("skill")
        if not isinstance(entries, list) or not entries:
            raise RegistryError(f"{source}: no [[skill]] entries")
        skills: list[SkillSpec] = []
        for i, entry in enumerate(entries):
            where = f"{source}: skill #{i + 1}"
            if not isinstance(entry, dict):
                raise RegistryError(f"{where}: must be a table")
            unknown = set(entry) - _FIELDS
            if unknown:
                raise RegistryError(f"{where}: unknown keys {sorted(unknown)}; "
                                    f"valid: {sorted(_FIELDS)}")
            name = entry.get("name")
            if not isinstance(name, str) or not _NAME.match(name):
                raise RegistryError(f"{where}: name must be lower-case letters, digits, '-'")
            where = f"{source}: skill {name!r}"
            if any(s.name == name for s in skills):
                raise RegistryError(f"{where}: defined twice")
            intents = entry.get("intents")
            if not isinstance(intents, list) or not intents or not all(
                    isinstance(x, str) and re.fullmatch(r"[a-z0-9_*]+", x) for x in intents):
                raise RegistryError(f"{where}: intents must be a non-empty list of intent "
                                    "names (lower case, '*' as a wildcard)")
            requires = entry.get("requires", [])
            if not isinstance(requires, list) or not set(requires) <= CAPABILITIES:
                raise RegistryError(f"{where}: requires must list capabilities from "
                                    f"{sorted(CAPABILITIES)}")
            priority = entry.get("priority", 0)
            if isinstance(priority, bool) or not isinstance(priority, int):
                raise RegistryError(f"{where}: priority must be an integer")
            conf = entry.get("min_confidence", 0.3)
            if isinstance(conf, bool) or not isinstance(conf, int | float) or not 0 <= conf <= 1:
                raise RegistryError(f"{where}: min_confidence must be a number in 0..1")
            topic = entry.get("topic", f"{topics.SKILL_TOPIC_PREFIX}{name}")
            if not isinstance(topic, str) or not re.fullmatch(r"[A-Za-z0-9._-]{1,200}", topic):
                raise RegistryError(f"{where}: topic must be a Kafka topic name")
            languages = entry.get("languages", ["*"])
            if not isinstance(languages, list) or not languages or not all(
                    isinstance(x, str) and re.fullmatch(r"\*|[a-z]{2,3}", x) for x in languages):
                raise RegistryError(f"{where}: languages must be a non-empty list of language "
                                    "codes (de, ar, zh; '*' for any)")
            skills.append(SkillSpec(name, tuple(intents), topic, frozenset(requires), priority,
                                    float(conf), str(entry.get("description", "")),
                                    tuple(languages)))
        return cls(skills)

    def get(self, name: str) -> SkillSpec | None:
        """The skill called ``name``."""
        return next((s for s in self.skills if s.name == name), None)

    def handling(self, intent: str) -> list[SkillSpec]:
        """Skills that handle ``intent``, highest priority first, then by name."""
        return sorted((s for s in self.skills if s.handles(intent)),
                      key=lambda s: (-s.priority, s.name))
