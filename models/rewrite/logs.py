"""Read interaction logs: one JSON object per line, from us or from any other system.

A malformed line (not JSON, not an object, a missing field, a wrong type) is
reported with its file and line number and skipped; the reader never stops
on one. Lines are read and decoded one at a time, so a file of a million
records never holds a million dicts at once.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import structlog

from infra.inputs import open_bytes
from streams.rewrite import Interaction, RewriteRule
from streams.schema import SerializationError

log = structlog.get_logger(__name__)

#: How many malformed lines are logged one by one before only counting them.
REPORT_LIMIT = 20

T = TypeVar("T")


@dataclasses.dataclass(frozen=True, slots=True)
class BadLine:
    """One skipped line: where it is, a kebab-case code and what is wrong."""

    path: str
    line: int
    code: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.code}: {self.problem}"


@dataclasses.dataclass(slots=True)
class LogStats:
    """What a read found: records read, lines skipped and the first skipped lines."""

    records: int = 0
    skipped: int = 0
    bad: list[BadLine] = dataclasses.field(default_factory=list)

    def add_bad(self, bad: BadLine) -> None:
        """Count a skipped line and keep (and log) the first :data:`REPORT_LIMIT` of them."""
        self.skipped += 1
        if len(self.bad) < REPORT_LIMIT:
            self.bad.append(bad)
            log.warning("interaction-log-bad-line", path=bad.path, line=bad.line,
                        code=bad.code, problem=bad.problem)


def read_interactions(paths: str | Path | Iterable[str | Path],
                      stats: LogStats | None = None) -> Iterator[Interaction]:
    """Yield the interactions of the JSONL files ``paths`` in file order, skipping bad lines.

    ``stats`` (optional) collects the counts and the first bad lines; a file
    that cannot be opened raises :class:`infra.inputs.InputFileError` naming it.
    """
    return _read(paths, Interaction.from_log, stats)


def read_rules(paths: str | Path | Iterable[str | Path],
               stats: LogStats | None = None) -> Iterator[RewriteRule]:
    """Yield the rewrite rules of mined tables (JSONL), skipping bad lines like
    :func:`read_interactions`."""
    def parse(data: Any) -> RewriteRule:
        if not isinstance(data, dict):
            raise SerializationError("wrong-type", "a rewrite rule is a JSON object")
        return RewriteRule.from_wire(data)

    return _read(paths, parse, stats)


def _read(paths: str | Path | Iterable[str | Path], parse: Callable[[Any], T],
          stats: LogStats | None) -> Iterator[T]:
    stats = stats if stats is not None else LogStats()
    if isinstance(paths, (str, Path)):
        paths = [paths]
    for path in paths:
        with open_bytes(path) as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    stats.add_bad(BadLine(str(path), number, "not-utf8",
                                          f"{exc.reason} at byte {exc.start}"))
                    continue
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                except json.JSONDecodeError as exc:
                    stats.add_bad(BadLine(str(path), number, "bad-json", exc.msg))
                    continue
                except RecursionError:
                    stats.add_bad(BadLine(str(path), number, "bad-json", "nested too deeply"))
                    continue
                try:
                    record = parse(data)
                except SerializationError as exc:
                    stats.add_bad(BadLine(str(path), number, exc.code, str(exc)))
                    continue
                stats.records += 1
                yield record
    if stats.skipped:
        log.warning("interaction-log-skipped", skipped=stats.skipped, records=stats.records)


def write_interactions(path: str | Path, records: Iterable[Interaction]) -> int:
    """Write ``records`` as JSONL at ``path``; return how many were written."""
    return _write_jsonl(path, (record.to_log() for record in records))


def write_rules(path: str | Path, rules: Iterable[RewriteRule]) -> int:
    """Write a mined table as JSONL at ``path``; return how many rules were written."""
    return _write_jsonl(path, (rule.to_wire() for rule in rules))


def _write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    n = 0
    with Path(path).open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
            out.write("\n")
            n += 1
    return n
