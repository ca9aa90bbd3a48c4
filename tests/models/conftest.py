"""Fixtures shared by the model tests: the online rewriter's built embedder."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from models.rewrite.embedder import Embedder, build, is_current, model_dir

#: The NLU training/export tests need the ``train`` extra (torch), which setup.sh
#: leaves out (CI installs it after setup); without it they are not collected.
collect_ignore = [] if importlib.util.find_spec("torch") else ["test_nlu_model.py"]


@pytest.fixture(scope="session")
def embedder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedder build: the cached one when current, else a fresh build (about 10 s)."""
    cached = model_dir()
    if is_current(cached):
        return cached
    return build(tmp_path_factory.mktemp("models") / "minilm-embedder", force=True)


@pytest.fixture(scope="session")
def embedder(embedder_dir: Path) -> Embedder:
    """The embedder the build chose (int8 when it agreed with fp32), on one thread."""
    return Embedder(embedder_dir)
