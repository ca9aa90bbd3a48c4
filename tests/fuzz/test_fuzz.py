"""The wire fuzzer, bounded, as a test: no input may crash a decoder or the assembler."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.fuzz.wire import one_input, write_seeds

ROOT = Path(__file__).resolve().parents[2]
#: Inputs per CI run (about 25 s here); the README gives a 10**6 run's figures.
RUNS = int(os.environ.get("VOICESTREAM_FUZZ_RUNS", "100000"))


def test_the_seeds_reach_every_target(tmp_path: Path) -> None:
    seeds = sorted(write_seeds(tmp_path).iterdir())
    assert {p.read_bytes()[0] % 4 for p in seeds} == {0, 1, 2, 3}
    for seed in seeds:
        one_input(seed.read_bytes())  # valid records go through without a crash


def test_fuzzing_the_wire_finds_no_crash(tmp_path: Path) -> None:
    corpus = write_seeds(tmp_path / "corpus")
    run = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.wire", f"-atheris_runs={RUNS}", "-seed=1",
         f"-artifact_prefix={tmp_path}/", str(corpus)],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    tail = "\n".join(run.stderr.splitlines()[-30:])
    crashes = list(tmp_path.glob("crash-*"))
    assert run.returncode == 0 and not crashes, tail
    assert f"Done {RUNS} " in run.stderr  # it ran them all
