"""A config that keeps the recorder from starting is rolled back, and why survives (rollback.py).

The decisions are pure and tested exactly; the service-level test runs the real commands the unit
runs (``python -m linetap.rollback`` as ExecStartPre, ``linetap run``) as processes, several times, with a
config that fails — what systemd's ``Restart=always`` does — without rebooting anything."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from linetap import firstboot, rollback
from linetap.config import load
from linetap.firstboot import Layout
from linetap.recorder import Recorder
from linetap.rollback import GuardState, decide, marker_active
from helpers import alarm_rows, config_text, read_status, run_linetap, stop_process, wait_for, write_config

A, B, C = "a" * 64, "b" * 64, "c" * 64


# --- the decisions ---------------------------------------------------------------------------------

def test_a_config_marked_good_always_starts_and_resets_the_count() -> None:
    assert decide(A, A, GuardState(A, 7)) == ("start", GuardState(A, 0))


def test_a_new_config_gets_three_starts_and_the_fourth_rolls_back() -> None:
    state = GuardState(A, 0)
    seen = []
    for _ in range(4):
        action, state = decide(B, A, state, max_failed=3)
        seen.append((action, state.attempts))
    assert seen == [("start", 1), ("start", 2), ("start", 3), ("rollback", 0)]
    assert state == GuardState(A, 0)


def test_another_new_config_starts_counting_afresh() -> None:
    assert decide(C, A, GuardState(B, 3), max_failed=3) == ("start", GuardState(C, 1))


def test_without_a_last_good_config_nothing_is_rolled_back() -> None:
    assert decide(B, None, GuardState(B, 9), max_failed=3) == ("start", GuardState(B, 10))


def test_systemd_s_reason_is_kept_only_for_a_run_that_could_not_say_it_itself() -> None:
    assert rollback.stop_reason("success", "exited", "0") is None
    assert rollback.stop_reason("exit-code", "exited", "2") is None  # linetap run wrote its own
    assert rollback.stop_reason("watchdog", "killed", "ABRT") == "the systemd watchdog killed it (hung) (killed ABRT)"
    assert rollback.stop_reason("oom-kill", "killed", "KILL").startswith("killed for lack of memory")


def test_the_stop_step_writes_systemd_s_reason_where_linetap_status_finds_it(alsa, tmp_path: Path,
                                                                              data_dir: Path) -> None:
    cfg = write_config(tmp_path / "c.toml", data_dir, [{"name": "line1", "pcm": "null"}])
    (data_dir / rollback.GUARD_DIR).mkdir()  # made by the recorder at its first start
    env = {**alsa.env(), "SERVICE_RESULT": "watchdog", "EXIT_CODE": "killed", "EXIT_STATUS": "ABRT"}
    res = subprocess.run([sys.executable, "-m", "linetap.rollback", "--stopped", "-c", str(cfg)], env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    st = linetap(alsa, "status", "-c", str(cfg))
    assert "its last start failed" in st.stderr and "watchdog" in st.stderr


def test_a_marker_holds_while_the_config_it_kept_runs() -> None:
    assert marker_active({"kept_sha256": A}, A)
    assert not marker_active({"kept_sha256": A}, B)
    assert not marker_active(None, A) and not marker_active({"kept_sha256": A}, None)


# --- service level ---------------------------------------------------------------------------------

def linetap(alsa, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "linetap", *args], env=alsa.env(), capture_output=True,
                          text=True, timeout=timeout)


def guard(alsa, *args: str) -> subprocess.CompletedProcess:
    """The unit's ExecStartPre= step."""
    return subprocess.run([sys.executable, "-m", "linetap.rollback", *args], env=alsa.env(), capture_output=True,
                          text=True, timeout=60)


def test_a_config_that_fails_to_start_three_times_is_rolled_back_with_an_alarm_and_its_reason(
        alsa, tmp_path: Path, data_dir: Path) -> None:
    (line,) = alsa.lines(1)
    lines = [{"name": "line1", "pcm": line.pcm}]
    feeder = line.feed(_noise(), speed=1.0)
    try:
        cfg, good = _a_config_that_ran(alsa, tmp_path, data_dir, lines)
        config_dir = cfg.parent
        # The installer's new config, copied onto the box by hand (first boot would have rejected it):
        # a value the recorder cannot run with. That stays a reason not to start by design — there is
        # no config to run — while a missing key or broker file, an LED or hook pin that cannot be
        # driven, are alarms (README "Alarms"). Its data_dir is the same, so why it failed lands there.
        bad = config_text(data_dir, lines, health={"check_clock": False}, storage={"codec": "mp3"})
        cfg.write_text(bad)
        for attempt in (1, 2, 3):  # what Restart=always does: the guard, then the start that fails
            pre = guard(alsa, "-c", str(cfg))
            assert pre.returncode == 0 and cfg.read_text() == bad, pre.stderr
            run = linetap(alsa, "run", "-c", str(cfg))
            assert run.returncode == 2 and REASON in run.stderr, run.stderr
        # Not running: `linetap status` says why the last start failed (from the data partition),
        # beside the last (stale) snapshot. The bad config itself does not load (status names the key),
        # so the installer asks with the last-known-good copy the guard keeps beside it: same data_dir.
        st = linetap(alsa, "status", "-c", str(cfg))
        assert st.returncode == 2 and REASON in st.stderr, st
        last_good = config_dir / rollback.LAST_GOOD
        assert last_good.read_text() == good
        st = linetap(alsa, "status", "-c", str(last_good))
        assert "last start failure" in st.stdout and REASON in st.stdout, st
        (data_dir / "status.json").unlink()  # a box whose recorder never ran since this data dir began
        st = linetap(alsa, "status", "-c", str(last_good))
        assert st.returncode == 1 and "its last start failed" in st.stderr and REASON in st.stderr
        pre = guard(alsa, "-c", str(cfg))  # the fourth start
        assert pre.returncode == 0 and "restored" in pre.stderr
        assert cfg.read_text() == good
        assert (config_dir / rollback.ROLLED_BACK_CONFIG).read_text() == bad  # kept for the installer
        proc = run_linetap(alsa.env(), cfg)
        doc = wait_for(lambda: read_status(data_dir) if "CONFIG_ROLLED_BACK" in read_status(data_dir).get("alarms", [])
                       else None, timeout=30)
        assert REASON in doc["last_start_failure"]["reason"]
        out = stop_process(proc)
        assert proc.returncode == 0, out
        index_alarms = alarm_rows(data_dir)
        rolled = [a for a in index_alarms if a["code"] == "CONFIG_ROLLED_BACK"]
        assert rolled and rolled[0]["severity"] == "warning" and "failed to start 3 times" in rolled[0]["detail"]
        assert REASON in rolled[0]["detail"]
        # The good config starts again and again without being counted.
        for _ in range(5):
            assert guard(alsa, "-c", str(cfg)).returncode == 0
        assert cfg.read_text() == good
    finally:
        feeder.stop()


REASON = "storage.codec"  # config error: storage.codec: must be one of opus, flac, wav, not 'mp3'


def _a_config_that_ran(alsa, tmp_path: Path, data_dir: Path, lines: list[dict]) -> tuple[Path, str]:
    """``<tmp_path>/config/linetap.toml`` on ``data_dir``, started through the guard and stopped
    cleanly: the last-known-good config from now on. (its path, its text)"""
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    cfg = config_dir / "linetap.toml"
    good = config_text(data_dir, lines, health={"check_clock": False})
    cfg.write_text(good)
    assert guard(alsa, "-c", str(cfg)).returncode == 0
    proc = run_linetap(alsa.env(), cfg)
    wait_for(lambda: read_status(data_dir).get("lines"), timeout=30)
    out = stop_process(proc)
    assert proc.returncode == 0, out
    return cfg, good


def test_a_new_data_dir_that_cannot_be_used_is_rolled_back_and_says_why(alsa, tmp_path: Path,
                                                                        data_dir: Path) -> None:
    """The issue's typo, a new ``data_dir``, where a file is in the way (first boot's box checks
    reject that; a config copied by hand is not checked): ``linetap run`` exits 1 at once. Its own
    data dir cannot take the reason, so it goes to the last-good config's (rollback.failure_dirs),
    where ``linetap status``, the guard's rollback and the recorder that runs afterwards find it."""
    from linetap.bootfiles import ServiceUser, box_checks
    (line,) = alsa.lines(1)
    lines = [{"name": "line1", "pcm": line.pcm}]
    feeder = line.feed(_noise(), speed=1.0)
    try:
        cfg, good = _a_config_that_ran(alsa, tmp_path, data_dir, lines)
        in_the_way = tmp_path / "usb-disk"
        in_the_way.write_text("not a directory\n")
        bad = config_text(in_the_way, lines, health={"check_clock": False})
        cfg.write_text(bad)
        user = ServiceUser(os.getuid(), frozenset(os.getgroups()))
        assert any(p.startswith("recorder.data_dir: ") for p in box_checks(load(cfg), service=user))
        for attempt in (1, 2, 3):
            assert guard(alsa, "-c", str(cfg)).returncode == 0 and cfg.read_text() == bad
            run = linetap(alsa, "run", "-c", str(cfg))
            assert run.returncode == 1 and "File exists" in run.stderr, run.stderr
            assert in_the_way.read_text() == "not a directory\n"  # nothing written into what is there
        st = linetap(alsa, "status", "-c", str(cfg))
        assert st.returncode == 1 and "its last start failed" in st.stderr and "File exists" in st.stderr, st
        pre = guard(alsa, "-c", str(cfg))  # the fourth start
        assert "restored" in pre.stderr and "File exists" in pre.stderr and "no reason recorded" not in pre.stderr
        assert cfg.read_text() == good
        proc = run_linetap(alsa.env(), cfg)
        doc = wait_for(lambda: read_status(data_dir) if "CONFIG_ROLLED_BACK" in read_status(data_dir).get("alarms", [])
                       else None, timeout=30)
        assert "File exists" in doc["last_start_failure"]["reason"]
        detail = next(a["detail"] for a in doc["alarm_details"] if a["code"] == "CONFIG_ROLLED_BACK")
        assert "failed to start 3 times" in detail and "File exists" in detail
        out = stop_process(proc)
        assert proc.returncode == 0, out
    finally:
        feeder.stop()


def _noise():
    import numpy as np
    rng = np.random.default_rng(3)
    return (rng.normal(0, 300, 8000 * 120)).astype(np.int16)


def test_the_guard_never_fails_a_start_even_without_a_config(alsa, tmp_path: Path) -> None:
    res = guard(alsa, "-c", str(tmp_path / "nothing-here.toml"))
    assert res.returncode == 0


def test_a_config_rejected_by_first_boot_is_a_warning_until_a_later_one_is_applied(
        tmp_path: Path, data_dir: Path) -> None:
    layout = Layout(boot_dir=tmp_path / "boot", data_dir=data_dir)
    layout.boot_dir.mkdir()
    layout.config_dir.mkdir(parents=True)
    running = config_text(data_dir, [{"name": "line1", "pcm": "null"}], health={"check_clock": False})
    layout.active.write_text(running)
    now = datetime(2026, 11, 28, 15, 30, tzinfo=timezone.utc)
    layout.candidate.write_text(running.replace('pcm = "null"', 'pcm = "not a pcm name"'))
    assert firstboot.import_boot_config(layout, now=now, signal_fault=lambda led: None, group=None).action == \
        "rejected"

    def alarms_at_start() -> dict[str, str]:
        rec = Recorder(load(layout.active), mqtt=False)
        rec.start()
        try:
            return {a.code: a.detail for a in rec.alarms.active()}
        finally:
            rec.stop()

    found = alarms_at_start()
    assert "CONFIG_REJECTED" in found and "line[0].pcm" in found["CONFIG_REJECTED"]
    layout.candidate.write_text(running + "# fixed\n")
    assert firstboot.import_boot_config(layout, now=now, signal_fault=lambda led: None, group=None).action == \
        "applied"
    assert "CONFIG_REJECTED" not in alarms_at_start()


# --- the recorder's side: RunMarks ------------------------------------------------------------------

def test_a_run_marks_its_config_good_after_good_after_s_and_not_before(tmp_path: Path) -> None:
    cfg = tmp_path / "linetap.toml"
    cfg.write_bytes(b"# the config this run applies\n")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    mono = [100.0]
    marks = rollback.RunMarks(cfg, data_dir, mono=lambda: mono[0])
    marks.mark_good_when_due(clean_stop=True)  # never started: nothing to vouch for
    assert rollback.good_mark(data_dir) is None
    marks.started()
    mono[0] = 100.0 + rollback.GOOD_AFTER_S - 0.5
    marks.mark_good_when_due()
    assert rollback.good_mark(data_dir) is None
    mono[0] = 100.0 + rollback.GOOD_AFTER_S
    marks.mark_good_when_due()
    assert rollback.good_mark(data_dir) == rollback.sha256(cfg.read_bytes())


def test_a_run_stopped_cleanly_marks_its_config_good_at_once(tmp_path: Path) -> None:
    cfg = tmp_path / "linetap.toml"
    cfg.write_bytes(b"[recorder]\n")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    marks = rollback.RunMarks(cfg, data_dir, mono=lambda: 5.0)
    marks.started()
    marks.mark_good_when_due()
    assert rollback.good_mark(data_dir) is None
    marks.mark_good_when_due(clean_stop=True)
    assert rollback.good_mark(data_dir) == rollback.sha256(b"[recorder]\n")
