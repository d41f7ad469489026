"""``linetap firstboot``: the contract's subcommand does what ``python -m linetap.firstboot`` does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from linetap.cli import main
from linetap.firstboot import Layout
from helpers import boot_layout, factory_config


@pytest.fixture
def box(tmp_path: Path) -> Layout:
    """A boot partition and a data partition running the factory config."""
    return boot_layout(tmp_path)


def linetap(box: Layout, *args: str) -> subprocess.CompletedProcess[str]:
    """``linetap firstboot`` as a process (the console script is ``linetap.cli:main``, as ``-m linetap`` is),
    on mock GPIO pins so a rejected file's LED blink needs no Pi."""
    return subprocess.run([sys.executable, "-m", "linetap", "firstboot", "--boot", str(box.boot_dir),
                           "--data", str(box.data_dir), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "GPIOZERO_PIN_FACTORY": "mock"})


def test_a_good_file_is_applied_and_exits_0(box):
    box.candidate.write_text(factory_config(box.data_dir, extra="# edited\n"))
    proc = linetap(box)
    assert (proc.returncode, "Traceback" in proc.stderr) == (0, False)
    assert box.active.read_text().endswith("# edited\n") and not box.candidate.exists()


def test_a_broken_file_is_rejected_with_its_report_and_exits_1(box):
    box.candidate.write_text('[recorder]\nid = "Shop 1"\n')
    proc = linetap(box, "--fault-blink-s", "0.1")
    assert (proc.returncode, "Traceback" in proc.stderr) == (1, False)
    assert "ERROR linetap.firstboot: rejected linetap.toml: linetap.toml: recorder.id: must match" in proc.stderr
    assert box.rejected.exists() and box.error_report.exists()
    assert box.active.read_text() == factory_config(box.data_dir)  # the running config is untouched


def test_nothing_on_the_boot_partition_exits_0_and_changes_nothing(box, capsys):
    before = box.active.read_text()
    assert main(["firstboot", "--boot", str(box.boot_dir), "--data", str(box.data_dir)]) == 0
    assert box.active.read_text() == before and os.listdir(box.boot_dir) == []


def test_the_machine_id_option_is_passed_on(box, tmp_path):
    live = tmp_path / "machine-id"
    live.write_text("0123456789abcdef0123456789abcdef\n")
    assert main(["firstboot", "--boot", str(box.boot_dir), "--data", str(box.data_dir),
                 "--machine-id", str(live)]) == 0
    assert box.saved_machine_id.read_text() == "0123456789abcdef0123456789abcdef\n"


def test_without_the_boot_partition_it_is_a_usage_error(box, capsys):
    assert main(["firstboot", "--data", str(box.data_dir)]) == 2
    assert capsys.readouterr().err == "linetap: the following arguments are required: --boot\n"
