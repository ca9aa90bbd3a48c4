"""Read the files commands are given, failing with the file (and line) named.

Every reader here raises :class:`InputFileError` for a file that is missing,
unreadable, not UTF-8, not JSON, or not in the shape the command needs; the
CLI turns it into one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

#: A JSON value's expected type: one type or a tuple of them.
Shape = type | tuple[type, ...]


class InputFileError(ValueError):
    """A file given to a command is missing, unreadable or not in the expected shape."""

    def __init__(self, path: str | Path, problem: str, *, line: int | None = None) -> None:
        self.path = str(path)
        self.problem = problem
        #: 1-based line number where the problem is, if it is on one line.
        self.line = line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


def open_bytes(path: str | Path) -> BinaryIO:
    """Open ``path`` for reading bytes; a file that cannot be opened is one named error."""
    try:
        return Path(path).open("rb")
    except FileNotFoundError:
        raise InputFileError(path, "no such file") from None
    except IsADirectoryError:
        raise InputFileError(path, "is a directory, not a file") from None
    except PermissionError:
        raise InputFileError(path, "permission denied") from None
    except OSError as exc:
        raise InputFileError(path, exc.strerror or type(exc).__name__) from None


def read_text(path: str | Path) -> str:
    """Return the UTF-8 text of ``path``."""
    with open_bytes(path) as handle:
        raw = handle.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputFileError(path, f"not UTF-8 text (byte {exc.start})") from None


def _type_names(shape: Shape) -> str:
    names = {dict: "an object", list: "a list", str: "a string", int: "an integer",
             float: "a number", bool: "true or false", type(None): "null"}
    kinds = shape if isinstance(shape, tuple) else (shape,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _is(value: Any, shape: Shape) -> bool:
    kinds = shape if isinstance(shape, tuple) else (shape,)
    if isinstance(value, bool) and bool not in kinds:
        return False  # JSON true is not a number here
    if float in kinds and isinstance(value, int):
        return True
    return isinstance(value, kinds)


def check_fields(path: str | Path, row: Any, fields: Mapping[str, Shape], *,
                 line: int | None = None, what: str = "a JSON object") -> dict[str, Any]:
    """Return ``row`` once it is an object holding each of ``fields`` with its type."""
    if not isinstance(row, dict):
        raise InputFileError(path, f"expected {what}, got {_type_names(type(row))}", line=line)
    for name, shape in fields.items():
        if name not in row:
            raise InputFileError(path, f"missing field {name!r}", line=line)
        if not _is(row[name], shape):
            raise InputFileError(path, f"field {name!r} must be {_type_names(shape)}, "
                                       f"got {_type_names(type(row[name]))}", line=line)
    return row


def _decode(path: str | Path, text: str, line: int | None = None) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        at = line if line is not None else exc.lineno
        raise InputFileError(path, f"not valid JSON: {exc.msg} (column {exc.colno})",
                             line=at) from None


def read_json_object(path: str | Path, fields: Mapping[str, Shape] | None = None,
                     *, what: str = "a JSON object") -> dict[str, Any]:
    """Return the JSON object in ``path``; ``fields`` are required, with their types."""
    return check_fields(path, _decode(path, read_text(path)), fields or {}, what=what)


def read_jsonl(path: str | Path, fields: Mapping[str, Shape] | None = None,
               *, what: str = "a JSON object") -> list[tuple[int, dict[str, Any]]]:
    """Return (line number, object) for each non-blank line of the JSON-lines file ``path``."""
    rows = []
    for number, text in enumerate(read_text(path).splitlines(), start=1):
        if not text.strip():
            continue
        rows.append((number, check_fields(path, _decode(path, text, number), fields or {},
                                          line=number, what=what)))
    if not rows:
        raise InputFileError(path, "no records: expected one JSON object per line")
    return rows
