"""Reading the files users hand to commands and SDKs: one clear error, never a traceback.

A file that is missing, unreadable, not JSON (or not JSON lines), or of the
wrong shape raises :class:`InputFileError` naming the file, the line where
there is one, and what was expected; never the content (it may hold names).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class InputFileError(ValueError):
    """A user's input file cannot be used; the message names the file and the line."""


def read_text(path: Path | str) -> str:
    """The file's text, or an :class:`InputFileError` saying why it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputFileError(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise InputFileError(f"{path}: is a directory, not a file") from exc
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except OSError as exc:
        raise InputFileError(f"{path}: cannot be read ({type(exc).__name__})") from exc


def read_json_object(path: Path | str, what: str = "a JSON object") -> dict[str, Any]:
    """A file holding one JSON object."""
    text = read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputFileError(f"{path}: line {exc.lineno}: not JSON ({exc.msg})") from exc
    if not isinstance(data, dict):
        raise InputFileError(f"{path}: must hold {what}, not a JSON {_kind(data)}")
    return data


def read_jsonl(path: Path | str, required: Iterable[str] = (),
               what: str = "a JSON object") -> list[dict[str, Any]]:
    """A JSON-lines file: one object per non-blank line, each with ``required`` keys."""
    need = tuple(required)
    rows = []
    for number, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputFileError(f"{path}: line {number}: not JSON ({exc.msg}); expected "
                                 f"{what} on each line (JSON lines)") from exc
        if not isinstance(row, dict):
            raise InputFileError(f"{path}: line {number}: a JSON {_kind(row)}, expected {what}")
        missing = [k for k in need if k not in row]
        if missing:
            raise InputFileError(f"{path}: line {number}: no {', '.join(map(repr, missing))}; "
                                 f"expected {what}")
        rows.append(row)
    if not rows:
        raise InputFileError(f"{path}: empty; expected {what} on each line (JSON lines)")
    return rows


def _kind(value: Any) -> str:
    return {list: "array", str: "string", int: "number", float: "number", bool: "boolean",
            type(None): "null"}.get(type(value), type(value).__name__)
