"""First boot: a linetap.toml on the boot partition is applied if valid, explained if not."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from linetap import firstboot
from linetap.firstboot import Layout, StatusLed
from helpers import boot_layout, factory_config

NOW = datetime(2026, 11, 28, 15, 30, 0, tzinfo=timezone.utc)
FACTORY = firstboot.factory_config_text()


class RecordingFault:
    def __init__(self) -> None:
        self.calls: list[StatusLed | None] = []

    def __call__(self, led: StatusLed | None) -> None:
        self.calls.append(led)


@pytest.fixture
def box(tmp_path: Path) -> Layout:
    """A boot partition and a data partition running the factory config."""
    return boot_layout(tmp_path)


@pytest.fixture
def fault() -> RecordingFault:
    return RecordingFault()


def run(box: Layout, fault: RecordingFault, now: datetime = NOW) -> firstboot.Result:
    return firstboot.import_boot_config(box, now=now, signal_fault=fault, group=None)


# --- nothing to do -------------------------------------------------------------

def test_no_file_on_the_boot_partition_changes_nothing(box, fault):
    before = box.active.read_text()
    assert run(box, fault).action == "none"
    assert box.active.read_text() == before
    assert sorted(p.name for p in box.boot_dir.iterdir()) == []
    assert fault.calls == []


# --- a valid file --------------------------------------------------------------

def test_valid_file_becomes_the_running_config(box, fault):
    new = factory_config(box.data_dir, extra='\n[mqtt]\nhost = "10.0.0.2"\n')
    box.candidate.write_text(new)
    result = run(box, fault)
    assert result.action == "applied"
    assert box.active.read_text() == new


def test_valid_file_is_removed_from_the_boot_partition_with_a_receipt(box, fault):
    box.candidate.write_text(factory_config(box.data_dir, extra="# edited\n"))
    run(box, fault)
    assert not box.candidate.exists()
    assert "applied on 2026-11-28 15:30 UTC" in box.receipt.read_text()


def test_previous_config_is_kept_as_a_dated_backup(box, fault):
    old = box.active.read_text()
    box.candidate.write_text(factory_config(box.data_dir, extra="# edited\n"))
    result = run(box, fault)
    assert result.backup == box.config_dir / "linetap.toml.20261128T153000Z"
    assert result.backup.read_text() == old


def test_two_changes_in_one_second_keep_both_backups(box, fault):
    box.candidate.write_text(factory_config(box.data_dir, extra="# first\n"))
    first = run(box, fault).backup
    box.candidate.write_text(factory_config(box.data_dir, extra="# second\n"))
    second = run(box, fault).backup
    assert first != second and first.exists() and second.exists()
    assert "# first" in second.read_text()


def test_crlf_copy_of_the_running_config_is_a_change(box, fault):
    box.candidate.write_bytes(box.active.read_text().replace("\n", "\r\n").encode())
    assert run(box, fault).action == "applied"


def test_the_running_config_again_is_cleared_without_a_backup(box, fault):
    box.candidate.write_text(box.active.read_text())
    result = run(box, fault)
    assert (result.action, result.backup) == ("unchanged", None)
    assert not box.candidate.exists()
    assert sorted(p.name for p in box.config_dir.iterdir()) == ["linetap.toml"]


def test_no_temporary_files_are_left_behind(box, fault):
    box.candidate.write_text(factory_config(box.data_dir, extra="# edited\n"))
    run(box, fault)
    leftovers = [p for d in (box.boot_dir, box.config_dir) for p in d.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_windows_notepad_file_with_bom_and_crlf_is_accepted(box, fault):
    text = factory_config(box.data_dir, extra="# from notepad\n").replace("\n", "\r\n")
    box.candidate.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert run(box, fault).action == "applied"
    assert box.active.read_bytes() == text.encode()


def test_a_first_config_on_an_empty_data_partition_is_applied(box, fault):
    box.active.unlink()
    box.config_dir.rmdir()
    box.candidate.write_text(factory_config(box.data_dir))
    result = run(box, fault)
    assert (result.action, result.backup) == ("applied", None)
    assert box.active.exists()


def test_notepads_linetap_toml_txt_is_taken_for_linetap_toml(box, fault):
    new = factory_config(box.data_dir, extra="# saved by notepad\n")
    (box.boot_dir / "linetap.toml.txt").write_text(new)
    assert run(box, fault).action == "applied"
    assert box.active.read_text() == new
    assert not (box.boot_dir / "linetap.toml.txt").exists()


def test_linetap_toml_wins_over_a_stray_linetap_toml_txt(box, fault):
    good = factory_config(box.data_dir, extra="# the real one\n")
    box.candidate.write_text(good)
    (box.boot_dir / "linetap.toml.txt").write_text("broken = [")
    assert run(box, fault).action == "applied"
    assert box.active.read_text() == good


def test_a_broken_notepad_file_is_rejected_like_any_other(box, fault):
    (box.boot_dir / "linetap.toml.txt").write_text("broken = [")
    assert run(box, fault).action == "rejected"
    assert box.rejected.read_text() == "broken = ["
    assert not (box.boot_dir / "linetap.toml.txt").exists()


def test_a_valid_file_clears_an_earlier_error_report(box, fault):
    box.candidate.write_text("this is not toml")
    run(box, fault)
    box.candidate.write_text(factory_config(box.data_dir, extra="# fixed\n"))
    run(box, fault)
    assert not box.error_report.exists()


# --- a broken file ---------------------------------------------------------------

def test_broken_file_leaves_the_running_config_alone(box, fault):
    before = box.active.read_text()
    box.candidate.write_text(factory_config(box.data_dir).replace("rate = 8000", "rate = 44", 1))
    assert run(box, fault).action == "rejected"
    assert box.active.read_text() == before
    assert sorted(p.name for p in box.config_dir.iterdir()) == ["linetap.toml"]


def test_broken_file_is_kept_unchanged_as_rejected(box, fault):
    raw = factory_config(box.data_dir).replace("rate = 8000", "rate = 44", 1).encode()
    box.candidate.write_bytes(raw)
    run(box, fault)
    assert not box.candidate.exists()
    assert box.rejected.read_bytes() == raw


def test_error_report_names_every_problem_and_what_to_do(box, fault):
    text = factory_config(box.data_dir).replace("rate = 8000", "rate = 44", 1).replace("led = 19", "lde = 19")
    box.candidate.write_text(text)
    result = run(box, fault)
    report = box.error_report.read_text()
    assert len(result.errors) == 2
    for error in result.errors:
        assert error in report
    assert "linetap.toml: line[0].rate:" in report
    assert "linetap.toml: line[1].lde: unknown key" in report
    assert "What to do" in report and "linetap.toml.rejected" in report


def test_error_report_has_windows_line_endings(box, fault):
    box.candidate.write_text("[recorder\n")
    run(box, fault)
    assert b"\r\n" in box.error_report.read_bytes()


def test_broken_file_blinks_the_status_led_of_the_running_config(box, fault):
    box.active.write_text(factory_config(box.data_dir, status_pin=22))
    box.candidate.write_text("not = [valid")
    run(box, fault)
    assert fault.calls == [StatusLed(pin=22, active_high=True)]


def test_without_a_readable_running_config_the_factory_status_led_blinks(box, fault):
    box.active.write_text("garbage [")
    box.candidate.write_text("not = [valid")
    run(box, fault)
    assert fault.calls == [StatusLed(pin=5, active_high=True)]


def test_a_failing_led_does_not_stop_the_report(box):
    def broken_led(led: StatusLed | None) -> None:
        raise RuntimeError("no GPIO here")

    box.candidate.write_text("not = [valid")
    result = firstboot.import_boot_config(box, now=NOW, signal_fault=broken_led, group=None)
    assert result.action == "rejected"
    assert box.error_report.exists()


def test_a_newer_broken_file_replaces_the_older_rejected_one(box, fault):
    box.candidate.write_text("first = [")
    run(box, fault)
    box.candidate.write_text("second = [")
    run(box, fault)
    assert box.rejected.read_text() == "second = ["


def test_utf16_file_is_rejected_with_advice(box, fault):
    box.candidate.write_bytes(factory_config(box.data_dir).encode("utf-16"))
    result = run(box, fault)
    assert result.errors == ('linetap.toml: is saved as UTF-16 ("Unicode"); save it as plain text in UTF-8',)


def test_a_huge_file_is_rejected_as_the_wrong_file(box, fault):
    box.candidate.write_bytes(b"#" * (firstboot.MAX_BYTES + 1))
    result = run(box, fault)
    assert "is this the right file?" in result.errors[0]


def test_a_directory_named_linetap_toml_is_rejected(box, fault):
    box.candidate.mkdir()
    assert run(box, fault).errors == ("linetap.toml: is not a regular file",)


def test_data_dir_off_the_data_partition_is_rejected(box, fault):
    box.candidate.write_text(factory_config(Path("/home/pi/recordings")))
    result = run(box, fault)
    assert result.errors == (
        f"linetap.toml: recorder.data_dir: must be {box.data_dir} on this box "
        "(its data partition), not '/home/pi/recordings'",)


def test_factory_config_is_valid_on_the_box():
    layout = Layout(boot_dir=Path("/boot/firmware"), data_dir=Path("/var/lib/linetap"))
    assert firstboot.check_candidate(FACTORY.encode(), layout) == []


# --- the default fault signal ------------------------------------------------------

def test_default_fault_signal_blinks_the_status_pin_fast():
    from gpiozero.pins.mock import MockFactory

    factory = MockFactory()
    firstboot.blink_status_led(StatusLed(pin=5), seconds=0.45, pin_factory=factory)
    states = [s.state for s in factory.pin(5).states]
    assert states.count(True) >= 2 and states[-1] is False


def test_default_fault_signal_without_a_status_led_does_nothing():
    firstboot.blink_status_led(None, seconds=0.4, sleep=pytest.fail)


def test_default_fault_signal_honours_an_active_low_led():
    from gpiozero.pins.mock import MockFactory

    factory = MockFactory()
    firstboot.blink_status_led(StatusLed(pin=5, active_high=False), seconds=0.45, pin_factory=factory)
    states = [s.state for s in factory.pin(5).states][1:]  # [0] is the mock pin's own initial low
    assert states.count(False) >= 2 and states[-1] is True  # low = lit, high = dark


def test_firstboot_leaves_gpiozero_to_the_led_panel():
    tree = ast.parse(Path(firstboot.__file__).read_text())
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | \
        {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any("gpiozero" in m for m in modules)
    assert "linetap.leds.driver" in modules


@pytest.fixture
def mock_pins():
    """gpiozero's default pin factory swapped for MockFactory, as the box's lgpio would be used."""
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    saved = Device.pin_factory
    Device.pin_factory = MockFactory()
    yield Device.pin_factory
    Device.pin_factory.reset()
    Device.pin_factory = saved


def test_command_blinks_the_running_configs_status_led_for_a_broken_file(box, mock_pins):
    box.active.write_text(factory_config(box.data_dir, status_pin=22))
    box.candidate.write_text("broken = [")
    argv = ["--boot", str(box.boot_dir), "--data", str(box.data_dir), "--fault-blink-s", "0.45"]
    assert firstboot.main(argv) == 1
    states = [s.state for s in mock_pins.pin(22).states]
    assert states.count(True) >= 2 and states[-1] is False
    assert mock_pins.pin(5).states[-1].state is False  # the factory pin was never lit


def test_command_leaves_the_leds_alone_for_a_good_file(box, mock_pins):
    box.candidate.write_text(factory_config(box.data_dir, extra="# edited\n"))
    argv = ["--boot", str(box.boot_dir), "--data", str(box.data_dir), "--fault-blink-s", "5"]
    assert firstboot.main(argv) == 0
    assert all(s.state is False for s in mock_pins.pin(5).states)


def test_a_status_led_in_use_elsewhere_is_one_logged_line_and_the_file_is_still_reported(box, mock_pins, caplog):
    from gpiozero import LED

    squatter = LED(5)
    box.candidate.write_text("broken = [")
    result = firstboot.import_boot_config(
        box, now=NOW, group=None,
        signal_fault=lambda led: firstboot.blink_status_led(led, seconds=0.1, sleep=pytest.fail))
    squatter.close()
    assert result.action == "rejected" and box.error_report.exists()
    failures = [r for r in caplog.records if "status LED" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is None
    assert "GPIO 5" in failures[0].getMessage() or "GPIO5" in failures[0].getMessage()


# --- the machine id ------------------------------------------------------------------

ID_A = "0123456789abcdef0123456789abcdef"
ID_B = "fedcba9876543210fedcba9876543210"


def test_first_boot_saves_the_machine_id(tmp_path):
    live, saved = tmp_path / "machine-id", tmp_path / "data/system/machine-id"
    live.write_text(ID_A + "\n")
    assert firstboot.keep_machine_id(live, saved) == "saved"
    assert saved.read_text() == ID_A + "\n"


def test_later_boots_get_the_saved_machine_id_back(tmp_path):
    live, saved = tmp_path / "machine-id", tmp_path / "machine-id.saved"
    live.write_text(ID_B + "\n")
    saved.write_text(ID_A + "\n")
    assert firstboot.keep_machine_id(live, saved) == "restored"
    assert live.read_text() == ID_A + "\n"


def test_an_uninitialized_machine_id_is_not_saved(tmp_path):
    live, saved = tmp_path / "machine-id", tmp_path / "machine-id.saved"
    live.write_text("uninitialized\n")
    assert firstboot.keep_machine_id(live, saved) == "none"
    assert not saved.exists()


# --- the command ----------------------------------------------------------------------

def test_command_exits_0_when_applied_and_1_when_rejected(box, fault):
    argv = ["--boot", str(box.boot_dir), "--data", str(box.data_dir)]
    box.candidate.write_text(factory_config(box.data_dir, extra="# edited\n"))
    assert firstboot.main(argv, signal_fault=fault) == 0
    box.candidate.write_text("broken = [")
    assert firstboot.main(argv, signal_fault=fault) == 1


def test_command_keeps_the_machine_id_when_asked(box, fault, tmp_path):
    live = tmp_path / "machine-id"
    live.write_text(ID_A + "\n")
    argv = ["--boot", str(box.boot_dir), "--data", str(box.data_dir), "--machine-id", str(live)]
    assert firstboot.main(argv, signal_fault=fault) == 0
    assert box.saved_machine_id.read_text() == ID_A + "\n"


def run_command(*args: str) -> subprocess.CompletedProcess:
    """``python -m linetap.firstboot`` as the unit runs it, on mock GPIO pins."""
    return subprocess.run([sys.executable, "-m", "linetap.firstboot", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "GPIOZERO_PIN_FACTORY": "mock"})


def test_the_unit_command_reports_a_broken_file_in_the_journal_without_a_traceback(box):
    box.candidate.write_text('[recorder]\nid = "Shop 1"\n')
    proc = run_command("--boot", str(box.boot_dir), "--data", str(box.data_dir), "--fault-blink-s", "0.1")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "ERROR linetap.firstboot: rejected linetap.toml: linetap.toml: recorder.id: must match" in proc.stderr
    assert box.rejected.exists() and box.error_report.exists()


def test_a_data_partition_that_cannot_take_the_config_is_one_line_and_exit_1(box):
    shutil.rmtree(box.config_dir)
    box.config_dir.write_text("not a directory")  # e.g. a damaged data partition
    box.candidate.write_text(factory_config(box.data_dir, extra="# edited\n"))
    proc = run_command("--boot", str(box.boot_dir), "--data", str(box.data_dir))
    assert (proc.returncode, proc.stderr.count("\n")) == (1, 1)
    assert proc.stderr.startswith("ERROR linetap.firstboot: could not apply linetap.toml: ")
    assert box.candidate.exists()  # still there, to be tried again at the next boot


# --- a change that would delete or orphan the recordings ---------------------------------------

def recorded(box: Layout, n: int, *, age_days: float) -> None:
    """``n`` finished recordings ``age_days`` old in the running config's data directory."""
    import time as _time

    import numpy as np

    from linetap.index.db import open_index
    from linetap.store.recordings import Recording
    box.data_dir.mkdir(exist_ok=True)
    index = open_index(box.data_dir)
    try:
        for i in range(n):
            rec = Recording(box.data_dir, index, line="line1", codec="wav", rate=8000, channels=1,
                            started_at=_time.time() - age_days * 86400 + i * 60, sync_interval_s=0.5)
            rec.write(np.zeros((800, 1), dtype=np.int16))
            rec.finish("vox_timeout")
    finally:
        index.close()


def storage_change(box: Layout, old: str, new: str, confirm: int | None = None) -> str:
    text = factory_config(box.data_dir).replace(old, new)
    assert new in text
    if confirm is not None:
        text = text.replace("[storage]\n", f"[storage]\nconfirm_deletion = {confirm}\n")
    return text


def test_a_retention_typo_that_would_delete_the_recordings_is_rejected_naming_the_count(box, fault):
    recorded(box, 30, age_days=10)
    before = box.active.read_text()
    box.candidate.write_text(storage_change(box, "retention_days = 0", "retention_days = 1"))
    result = run(box, fault)
    assert result.action == "rejected" and box.active.read_text() == before
    assert result.errors == (
        "linetap.toml: storage: this change (storage retention_days 0 -> 1) would delete 30 of 30 recordings at "
        "once; if that is intended, set storage.confirm_deletion = 30 in linetap.toml",)


def test_a_floor_typo_is_rejected_too(box, fault):
    recorded(box, 30, age_days=10)
    box.candidate.write_text(storage_change(box, "keep_free_mb = 512", "keep_free_mb = 10000000"))
    result = run(box, fault)
    assert result.action == "rejected" and "would delete 30 of 30 recordings" in result.errors[0]


def test_the_same_change_confirmed_with_the_count_is_applied(box, fault):
    recorded(box, 30, age_days=10)
    box.candidate.write_text(storage_change(box, "retention_days = 0", "retention_days = 1", confirm=30))
    assert run(box, fault).action == "applied"


def test_judging_a_change_leaves_no_file_beside_the_index(box, fault):
    recorded(box, 30, age_days=10)
    before = sorted(p.name for p in box.data_dir.iterdir())
    box.candidate.write_text(storage_change(box, "retention_days = 0", "retention_days = 1"))
    assert run(box, fault).action == "rejected"
    # No -wal/-shm owned by root; the one new file is the rejection's marker (CONFIG_REJECTED).
    assert sorted(p.name for p in box.data_dir.iterdir()) == sorted([*before, "config-rejected.json"])


def test_a_change_that_deletes_nothing_needs_no_confirmation(box, fault):
    recorded(box, 30, age_days=10)
    box.candidate.write_text(storage_change(box, "retention_days = 0", "retention_days = 90"))
    assert run(box, fault).action == "applied"


def test_moving_the_data_dir_away_from_the_recordings_is_rejected(box, fault):
    recorded(box, 12, age_days=1)
    box.candidate.write_text(factory_config(box.data_dir / "new"))
    result = run(box, fault)
    assert result.errors == (
        f"linetap.toml: recorder.data_dir: moving it from {box.data_dir} to {box.data_dir / 'new'} would orphan "
        f"all 12 recordings (left in {box.data_dir}, out of the index, retention and legal holds); if that is "
        "intended, set storage.confirm_deletion = 12",)
