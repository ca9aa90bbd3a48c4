"""The layers of the layout: streams (the wire, settings, SDKs) < models < agents < infra.

Read from the source with ``ast``: what each package imports at module level
or inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imports_of(package: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        out[str(path.relative_to(ROOT))] = names
    return out


@pytest.mark.parametrize(("package", "forbidden"), [
    ("streams", ("agents", "models", "infra")),
    ("agents", ("infra.config", "infra.cli", "infra.runner", "infra.app")),
])
def test_a_layer_never_imports_the_ones_above_it(package: str,
                                                 forbidden: tuple[str, ...]) -> None:
    bad = {f"{path}: {name}" for path, names in imports_of(package).items() for name in names
           if any(name == f or name.startswith(f"{f}.") for f in forbidden)}
    assert not bad


def test_infra_config_takes_the_settings_from_below() -> None:
    assert not {n for n in imports_of("infra")["infra/config.py"] if n.startswith("agents")}
