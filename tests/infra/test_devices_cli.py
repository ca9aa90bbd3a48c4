"""`voicestream devices`: the master key and the keys installed on devices."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from infra.cli import main
from streams import identity


def test_init_then_key_gives_the_device_its_derived_key(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("VOICESTREAM_")]:
        monkeypatch.delenv(name)
    runner = CliRunner()
    master = tmp_path / "master.key"
    assert runner.invoke(main, ["devices", "init", "--out", str(master)]).exit_code == 0
    again = runner.invoke(main, ["devices", "init", "--out", str(master)])
    assert again.exit_code == 2 and "exists" in again.output  # never overwritten
    # No master key configured: a clear usage error, not a traceback.
    none = runner.invoke(main, ["devices", "key", "kitchen-1", "--out", str(tmp_path / "k")])
    assert none.exit_code == 2 and "no master key" in none.output
    out = tmp_path / "kitchen-1.key"
    run = runner.invoke(main, ["devices", "key", "kitchen-1", "--out", str(out)],
                        env={"VOICESTREAM_DEVICE_KEYS_FILE": str(master)})
    assert run.exit_code == 0, run.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert identity.read_master_key(out) == identity.device_key(
        identity.read_master_key(master), "kitchen-1")
