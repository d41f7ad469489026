"""The archive against a real rclone remote (``rclone serve sftp`` on loopback), not a mock.

Recordings are real finished, chained files (store.recordings + evidence.finalize, as the
recorder makes them); the remote is a directory served over SFTP by rclone.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from linetap import sign
from linetap.archive import layout
from linetap.archive.rclone import Rclone, RcloneError
from linetap.archive.uploader import Archiver
from linetap.clock import FakeClock
from linetap.config import ArchiveConfig, StorageConfig
from linetap.evidence.checkpoint import Checkpointer
from linetap.evidence.export_verify import GENESIS, checkpoint_signed, digest, link
from linetap.evidence.finalize import finalize_recording
from linetap.index import archive as archive_db
from linetap.index.db import Index, public_call
from linetap.retention.plan import Policy
from linetap.retention.sweeper import Sweeper
from linetap.store.recordings import Recording
from helpers import wait_for
from rclone_remote import SftpRemote

RATE = 8000
PLAIN = StorageConfig(codec="wav")
PREFIX = "bucket/shop-01"


def make_call(index: Index, data_dir: Path, clock: FakeClock, seconds: float = 1.0) -> dict[str, Any]:
    rec = Recording(data_dir, index, line="line1", codec="wav", rate=RATE, channels=1, started_at=clock.wall(),
                    sync_interval_s=0.5)
    tone = (np.sin(np.arange(int(seconds * RATE)) * 0.3) * 8000).astype(np.int16).reshape(-1, 1)
    rec.write(tone)
    row = rec.finish("onhook")
    finalize_recording(index, data_dir, row, PLAIN, clock=clock)
    clock.advance(60)
    return index.get_call(int(row["id"]))  # type: ignore[return-value]


@pytest.fixture(autouse=True)
def rclone_at_the_tests_priority(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """rclone runs at the tests' own priority (``nice -n 0``) except beside a real recorder.

    The product nices rclone by 10 (archive/rclone.py: an upload must never take CPU from capture).
    Without a recorder there is no capture to protect, and on a machine whose two cores are busy
    with other work a nice-10 rclone gets about a tenth of a core: each call's four rclone runs then
    took seconds (the chained-archive test 21 s instead of 2.7 s under ``stress-ng --cpu 2``). The
    test beside the recorder keeps the product's nice level, since there it is the point."""
    if "alsa" not in request.fixturenames:
        monkeypatch.setattr("linetap.archive.rclone.NICE", 0)


@pytest.fixture
def remote(tmp_path: Path):
    r = SftpRemote(tmp_path / "sftp").start()
    yield r
    r.stop()


def archiver(index: Index, data_dir: Path, clock: FakeClock, remote: SftpRemote, **cfg: Any) -> Archiver:
    c = ArchiveConfig(remote=remote.remote(PREFIX), rclone_config=remote.config, bandwidth="1M", **cfg)
    return Archiver(index=index, data_dir=data_dir, cfg=c, recorder_id="shop-01", clock=clock,
                    backoff_min_s=0.05, backoff_max_s=0.2, idle_s=0.1)


def sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_recordings_arrive_intact_with_sidecars_and_are_marked_only_then(index, data_dir, clock, remote):
    calls = [make_call(index, data_dir, clock) for _ in range(3)]
    a = archiver(index, data_dir, clock, remote)
    assert archive_db.backlog(index)["count"] == 3
    assert a.round() == 3
    root = remote.root / PREFIX
    for c in calls:
        copy = root / c["path"]
        assert sha256(copy) == c["sha256"] == sha256(data_dir / c["path"])
        side = json.loads((root / layout.sidecar_path(c["path"])).read_text())
        assert side["call"]["sha256"] == c["sha256"] and side["chain_entry"]["payload"]["sha256"] == c["sha256"]
        row = index.get_call(c["id"])
        assert row["archived_at"] is not None and public_call(row)["archived_at"] == row["archived_at"]
    assert archive_db.backlog(index)["count"] == 0
    assert a.round() == 0  # nothing copied twice


def test_the_archived_chain_verifies_on_its_own(index, data_dir, clock, remote):
    for _ in range(4):
        make_call(index, data_dir, clock)
    # The box signs a checkpoint of its chain (housekeeping does this as the chain grows).
    Checkpointer(index, sign.load_or_create(data_dir), recorder_id="box-1", clock=clock,
                 publish=lambda cp: None).tick()
    archiver(index, data_dir, clock, remote).round()
    root = remote.root / PREFIX
    entries = [json.loads(line) for seg in sorted((root / "chain").iterdir()) for line in seg.read_text().splitlines()]
    prev = GENESIS
    for e in entries:  # only the remote's files and the published rule (evidence/export_verify.py)
        assert e["digest"] == digest(e["payload"]) and e["prev_hash"] == prev
        prev = link(prev, e["digest"])
        assert e["hash"] == prev
    [cp] = [json.loads(p.read_text()) for p in (root / "checkpoints").iterdir()]
    assert (cp["length"], cp["head"]) == (len(entries), prev)
    assert checkpoint_signed(cp)  # signed by the box: checkable with the standard library alone
    # every archived recording's file matches its chain entry
    for e in entries:
        assert sha256(root / e["payload"]["path"]) == e["payload"]["sha256"]


def test_a_remote_that_goes_away_and_comes_back_loses_nothing(index, data_dir, clock, remote):
    make_call(index, data_dir, clock)
    a = archiver(index, data_dir, clock, remote)
    assert a.round() == 1
    remote.stop()
    more = [make_call(index, data_dir, clock) for _ in range(3)]
    with pytest.raises(RcloneError):
        a.round()
    assert all(index.get_call(c["id"])["archived_at"] is None for c in more)  # nothing marked unverified
    a.start()  # the thread: backs off while the remote is away
    try:
        # the thread's first round meets the missing remote (rclone's own retries take a while on a busy machine)
        wait_for(lambda: a.failures >= 1, timeout=60, every=0.1)
        assert a.status()["backlog"] == 3 and a.status()["error"]
        remote.start()
        deadline = time.monotonic() + 60
        while archive_db.backlog(index)["count"] and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        a.stop()
        a.join(30)
    for c in more:
        assert sha256(remote.root / PREFIX / c["path"]) == c["sha256"]
        assert index.get_call(c["id"])["archived_at"] is not None


def test_a_copy_that_differs_on_the_remote_is_not_marked(index, data_dir, clock, remote, monkeypatch):
    c = make_call(index, data_dir, clock)
    a = archiver(index, data_dir, clock, remote)
    real_copy = Rclone.copy_file

    def corrupting_copy(self, local, rel):  # the remote ends up with other bytes (a bad upload)
        real_copy(self, local, rel)
        dest = remote.root / PREFIX / rel
        dest.write_bytes(dest.read_bytes()[:-1] + b"\x00")

    monkeypatch.setattr(Rclone, "copy_file", corrupting_copy)
    with pytest.raises(RcloneError, match="MD5"):
        a.round()
    assert index.get_call(c["id"])["archived_at"] is None


def test_required_keeps_unarchived_recordings_through_space_pressure(index, data_dir, clock, remote):
    calls = [make_call(index, data_dir, clock) for _ in range(4)]
    a = archiver(index, data_dir, clock, remote, required=True)
    a.round()  # the first four are archived
    late = [make_call(index, data_dir, clock) for _ in range(3)]  # not archived (remote away, say)
    size = max(c["bytes"] for c in calls + late)

    class FullDisk:  # keep_free asks for 6 recordings' worth more than is free
        def free_bytes(self) -> int:
            return 0

    sweeper = Sweeper(index, data_dir, Policy(keep_free_bytes=6 * size, archive_required=True), clock=clock,
                      space=FullDisk(), archive=True)
    res = sweeper.sweep()
    assert set(res.deleted) == {c["id"] for c in calls}  # every archived one went, no unarchived one
    assert all(index.get_call(c["id"]) is not None for c in late)
    assert res.disk_low and res.plan.blocked_by_archive and "not archived yet" in res.detail
    assert res.evictable_bytes == 0  # hours_left does not count on space it may not free


def test_archive_behind_is_raised_past_the_threshold():
    assert layout.behind(oldest_ended_at=None, now=1000.0, behind_after_s=60, last_error=None) == (False, "")
    assert layout.behind(oldest_ended_at=950.0, now=1000.0, behind_after_s=60, last_error=None) == (False, "")
    active, detail = layout.behind(oldest_ended_at=0.0, now=7200.0, behind_after_s=3600, last_error="refused")
    assert active and detail == "oldest unarchived recording ended 2.0 h ago; last error: refused"


def test_backoff_doubles_and_is_capped():
    assert [layout.backoff_s(n, min_s=5, max_s=600) for n in (0, 1, 2, 3, 8, 30)] == [0, 5, 10, 20, 600, 600]


# --- linetap archive status|verify ----------------------------------------------------------


def config_file(tmp_path: Path, data_dir: Path, remote: SftpRemote) -> Path:
    from helpers import write_config
    path = write_config(tmp_path / "c.toml", data_dir, [{"name": "line1", "pcm": "null"}],
                        recorder={"id": "shop-01"})
    with open(path, "a") as f:
        f.write(f'\n[archive]\nremote = "{remote.remote(PREFIX)}"\nrclone_config = "{remote.config}"\n')
    return path


def test_archive_status_and_verify_compare_the_remote_with_the_index(index, data_dir, clock, remote, tmp_path,
                                                                     capsys):
    from linetap.cli import main
    calls = [make_call(index, data_dir, clock) for _ in range(3)]
    archiver(index, data_dir, clock, remote).round()
    make_call(index, data_dir, clock)  # one left in the backlog
    cfg = str(config_file(tmp_path, data_dir, remote))
    assert main(["archive", "status", "--json", "-c", cfg]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["archived"], status["backlog"]) == (3, 1)
    assert main(["archive", "verify", "-c", cfg]) == 0
    assert "3 archived recording(s) checked" in capsys.readouterr().out

    (remote.root / PREFIX / calls[1]["path"]).unlink()  # lost on the remote
    assert main(["archive", "verify", "-c", cfg]) == 1
    out = capsys.readouterr().out
    assert f"missing: call {calls[1]['id']}" in out


def test_archive_verify_finds_an_altered_chain_on_the_remote(index, data_dir, clock, remote, tmp_path, capsys):
    from linetap.cli import main
    for _ in range(2):
        make_call(index, data_dir, clock)
    archiver(index, data_dir, clock, remote).round()
    [seg] = (remote.root / PREFIX / "chain").iterdir()
    lines = seg.read_text().splitlines()
    first = json.loads(lines[0])
    first["payload"]["bytes"] += 1
    seg.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    assert main(["archive", "verify", "-c", str(config_file(tmp_path, data_dir, remote))]) == 1
    assert "chain: " in capsys.readouterr().out


# --- in the recorder -------------------------------------------------------------------------


def test_the_recorder_records_while_the_remote_is_away_and_archives_when_it_is_back(alsa, data_dir, tmp_path,
                                                                                    remote):
    from helpers import wait_for
    from linetap.config import load
    from linetap.recorder import Recorder
    from linetap.sim.line import render
    from test_record_e2e import FAST, T0, run_until_fed

    remote.stop()  # away from the start
    (line,) = alsa.lines(1)
    script = [("idle", 3), ("call", 6), ("idle", 8), ("call", 6), ("idle", 8)]
    pcm_audio, _ = render(script, seed=3)
    cfg_path = config_file(tmp_path, data_dir, remote)
    text = cfg_path.read_text().replace('[[line]]\nname = "line1"\npcm = "null"',
                                        f'[[line]]\nname = "line1"\npcm = "{line.pcm}"')
    cfg_path.write_text(text.replace('id = "shop-01"', 'id = "shop-01"\nqueue_s = 120'))
    cfg = load(cfg_path)
    assert cfg.archive is not None and cfg.lines[0].pcm == line.pcm
    rec = Recorder(cfg, clock=FakeClock(wall=T0))
    assert rec.archiver is not None
    rec.archiver.backoff, rec.archiver.idle_s = (0.1, 0.5), 0.2
    line.feed(pcm_audio)
    rec.start()
    try:
        run_until_fed(rec, ["line1"], sum(s[1] for s in script))  # recording did not wait for the archive
        index = rec.index
        wait_for(lambda: len(index.calls()) == 2 and all(r["status"] != "recording" for r in index.calls()))
        wait_for(lambda: (rec.snapshot().get("archive") or {}).get("backlog") == 2, timeout=30)
        assert "connection refused" in rec.snapshot()["archive"]["error"]
        remote.start()
        wait_for(lambda: rec.snapshot()["archive"]["backlog"] == 0, timeout=60)
        assert rec.snapshot()["archive"]["error"] is None
    finally:
        rec.stop()
        line.feeder.stop()
    from linetap.index.db import open_index
    for row in open_index(data_dir).calls():
        assert row["archived_at"] is not None
        assert sha256(remote.root / PREFIX / row["path"]) == row["sha256"]


def test_rclones_error_is_one_line_without_its_timestamp():
    from linetap.archive.rclone import _last_error
    plain = b'2026/12/07 05:18:42 Failed to create file system for "arc:x": connection refused\n'
    assert _last_error(plain) == 'Failed to create file system for "arc:x": connection refused'
    logged = b'{"level":"error","msg":"Failed to copy: permission denied\\n","object":"a.wav"}\n'
    assert _last_error(logged) == "a.wav: Failed to copy: permission denied"
