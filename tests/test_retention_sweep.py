"""The sweeper against real files: a ring buffer filled by continuous recording for hours of
simulated time (a user-space quota always; a real size-limited tmpfs where mounting works),
retention days, min retention, holds, and crash-safe deletion."""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from linetap.clock import FakeClock, iso
from linetap.config import StorageConfig, load
from linetap.evidence import hold
from linetap.evidence.finalize import finalize_recording
from linetap.evidence.verify import verify
from linetap.index import retention as retention_queries
from linetap.index.db import SYNC_FULL, SYNC_NORMAL, Index, open_index
from linetap.retention import deletions
from linetap.retention.plan import DAY_S, LinePolicy, Policy
from linetap.retention.sweeper import DiskSpace, SweepResult, Sweeper
from linetap.store.recordings import Recording

from helpers import write_config

MB = 1024 * 1024
RATE = 8000  # wav, mono, 16 bit: 16 000 bytes per second of audio
WAV_BPS = RATE * 2
PLAIN = StorageConfig(codec="wav")


class DirectoryQuota:
    """A quota simulated in user space: ``capacity_bytes`` minus what the files under ``path``
    occupy (whole 4 KiB blocks): a full disk without a real one (the sweeper takes any
    ``SpaceProbe``). O(number of files), fine for the tests' small stores."""

    BLOCK = 4096

    def __init__(self, path: Path, capacity_bytes: int) -> None:
        self.path = Path(path)
        self.capacity_bytes = capacity_bytes

    def used_bytes(self) -> int:
        total = 0
        for root, _dirs, files in os.walk(self.path):
            for name in files:
                try:
                    size = os.stat(os.path.join(root, name)).st_size
                except FileNotFoundError:
                    continue
                total += -(-size // self.BLOCK) * self.BLOCK
        return total

    def free_bytes(self) -> int:
        return max(0, self.capacity_bytes - self.used_bytes())


def make_call(index: Index, data_dir: Path, *, started_at: float, seconds: float = 1.0, line: str = "line1",
              number: str | None = None) -> dict[str, Any]:
    rec = Recording(data_dir, index, line=line, codec="wav", rate=RATE, channels=1, started_at=started_at,
                    sync_interval_s=0.5)
    rec.caller_number = number
    rec.write(np.zeros((int(seconds * RATE), 1), dtype=np.int16))
    row = rec.finish("vox_timeout")
    finalize_recording(index, data_dir, row, PLAIN)
    return row


def ids(index: Index) -> list[int]:
    return [r["id"] for r in index.query("select id from calls order by id")]


class QuotaGuard:
    """The test quota as the writer meets it: a write that would not fit raises ENOSPC."""

    def __init__(self, quota: DirectoryQuota) -> None:
        self.quota = quota

    def check(self, n_bytes: int) -> None:
        if self.quota.free_bytes() < n_bytes:
            raise OSError(errno.ENOSPC, "No space left on device (test quota)")


class ContinuousRecording:
    """One line recorded back to back: calls of ``call_s``, written ``block_s`` at a time, a sweep
    every block (the housekeeping thread), the clock advanced by the audio written.

    The writer syncs once a block (``sync_interval_s = block_s``), not every 0.5 s: the files'
    sizes, which are all the sweeper sees, are the same, and at ~1 ms per fsync on the
    development VM's disk the 0.5 s cadence made 20 fsyncs a block, nine tenths of these tests'
    time (the sync cadence itself is tested in tests/test_store.py and tests/test_runs.py)."""

    def __init__(self, data_dir: Path, index: Index, clock: FakeClock, sweeper: Sweeper, *, call_s: float,
                 block_s: float, guard: QuotaGuard | None = None, hold_each: bool = False) -> None:
        self.data_dir, self.index, self.clock, self.sweeper = data_dir, index, clock, sweeper
        self.call_s, self.block_s, self.guard, self.hold_each = call_s, block_s, guard, hold_each
        self.block = np.zeros((int(block_s * RATE), 1), dtype=np.int16)
        self.results: list[SweepResult] = []
        self.rec: Recording | None = None

    def blocks(self, hours: float) -> Iterator[SweepResult]:
        end = self.clock.wall() + hours * 3600
        while self.clock.wall() < end:
            if self.rec is None:
                self.rec = Recording(self.data_dir, self.index, line="line1", codec="wav", rate=RATE, channels=1,
                                     started_at=self.clock.wall(), sync_interval_s=self.block_s)
                if self.hold_each:
                    hold.hold(self.index, self.rec.id, reason="test", who="test")
            if self.guard is not None:
                self.guard.check(self.block.nbytes)
            self.rec.write(self.block)  # on the tmpfs, a full disk raises here
            self.clock.advance(self.block_s)
            if self.rec.duration_s >= self.call_s:
                row = self.rec.finish("max_length")
                finalize_recording(self.index, self.data_dir, row, PLAIN, clock=self.clock)
                self.rec = None
            result = self.sweeper.sweep()
            self.results.append(result)
            yield result

    def run(self, hours: float) -> list[SweepResult]:
        for _ in self.blocks(hours):
            pass
        return self.results


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(wall=1_795_000_000.0)


def small_wal(idx: Index) -> Index:
    # A WAL may grow to 1000 pages (4 MB) before SQLite checkpoints and reuses it: noise in a
    # quota of a few MB (it counts as used space, like any file). Checkpoint sooner here.
    idx.execute("PRAGMA wal_autocheckpoint=64")
    return idx


@pytest.fixture
def index(data_dir: Path) -> Iterator[Index]:
    idx = small_wal(open_index(data_dir))
    yield idx
    idx.close()


def deleted_in_order(index: Index) -> list[str]:
    return [r["started_at"] for r in index.query("select started_at from deletions order by id")]


# --- the ring buffer on a test quota (always runs) -------------------------------------------

@pytest.fixture
def quota_ring(data_dir: Path, index: Index, clock: FakeClock) -> ContinuousRecording:
    quota = DirectoryQuota(data_dir, 6 * MB)  # counts index.db and its WAL too
    sweeper = Sweeper(index, data_dir, Policy(keep_free_bytes=1 * MB), clock=clock, space=quota, reserve_s=30)
    return ContinuousRecording(data_dir, index, clock, sweeper, call_s=60, block_s=10, guard=QuotaGuard(quota))


@pytest.fixture(scope="module")
def three_hours(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ContinuousRecording, Index, Path]]:
    """The quota ring recorded for 3 hours of simulated time, once for the module: ~170 MB through
    a 6 MB quota (the guard raises ENOSPC if retention is late). The tests below only read what it
    left; three of them each ran their own hour of the same ring before (1.7 s each), and the
    3-hour run holds every sweep of that hour and two more."""
    data_dir = tmp_path_factory.mktemp("ring") / "data"
    data_dir.mkdir()
    idx = small_wal(open_index(data_dir))
    clock = FakeClock(wall=1_795_000_000.0)
    quota = DirectoryQuota(data_dir, 6 * MB)
    sweeper = Sweeper(idx, data_dir, Policy(keep_free_bytes=1 * MB), clock=clock, space=quota, reserve_s=30)
    ring = ContinuousRecording(data_dir, idx, clock, sweeper, call_s=60, block_s=10, guard=QuotaGuard(quota))
    ring.run(hours=3)
    yield ring, idx, data_dir
    idx.close()


def test_quota_ring_buffer_records_for_hours_without_running_out(three_hours) -> None:
    _, index, _ = three_hours
    assert index.query("select count(*) as n from deletions where why = 'space'")[0]["n"] > 150


def test_quota_ring_buffer_keeps_keep_free_free_after_every_sweep(three_hours) -> None:
    ring, _, _ = three_hours
    assert len(ring.results) == 3 * 360 and min(r.free_bytes for r in ring.results) >= 1 * MB


def test_quota_ring_buffer_evicts_the_oldest_first(three_hours) -> None:
    _, index, _ = three_hours
    started = deleted_in_order(index)
    assert len(started) > 150 and started == sorted(started)


def test_quota_ring_buffer_keeps_held_recordings(quota_ring: ContinuousRecording, index: Index) -> None:
    gen = quota_ring.blocks(hours=2)
    for _ in range(13):  # two calls finished
        next(gen)
    hold.hold(index, 1, who="test")
    hold.hold(index, 2, who="test")
    for _ in gen:
        pass
    assert ids(index)[:2] == [1, 2]


def test_quota_ring_buffer_still_verifies_clean_after_hours_of_eviction(three_hours) -> None:
    _, index, data_dir = three_hours
    assert verify(index, data_dir).problems == ()


def test_hours_left_predicts_when_the_last_recording_of_now_is_evicted(data_dir: Path, index: Index,
                                                                       clock: FakeClock) -> None:
    quota = DirectoryQuota(data_dir, 16 * MB)
    sweeper = Sweeper(index, data_dir, Policy(keep_free_bytes=1 * MB), clock=clock, space=quota, reserve_s=10)
    sim = ContinuousRecording(data_dir, index, clock, sweeper, call_s=15, block_s=5, guard=QuotaGuard(quota))
    sim.run(hours=0.5)  # the ring is full and turning
    predicted_h = sim.results[-1].hours_left
    newest = max(ids(index)[:-1])  # the newest finished recording (the last id is still being written)
    t0 = clock.wall()
    for _ in sim.blocks(hours=1):
        if index.get_call(newest) is None:
            break
    actual_h = (clock.wall() - t0) / 3600
    assert actual_h == pytest.approx(predicted_h, rel=0.10)


def test_hours_left_predicts_disk_low_when_everything_is_held(data_dir: Path, index: Index,
                                                              clock: FakeClock) -> None:
    quota = DirectoryQuota(data_dir, 16 * MB)
    sweeper = Sweeper(index, data_dir, Policy(keep_free_bytes=1 * MB), clock=clock, space=quota, reserve_s=10)
    sim = ContinuousRecording(data_dir, index, clock, sweeper, call_s=30, block_s=5, guard=QuotaGuard(quota),
                              hold_each=True)
    sim.run(hours=1 / 30)  # two minutes in, 14 to go
    predicted_h = sim.results[-1].hours_left
    t0 = clock.wall()
    for result in sim.blocks(hours=1):
        if result.disk_low:
            break
    actual_h = (clock.wall() - t0) / 3600
    assert actual_h == pytest.approx(predicted_h, rel=0.10)


def test_everything_held_raises_disk_low_and_deletes_nothing(data_dir: Path, index: Index,
                                                             clock: FakeClock) -> None:
    quota = DirectoryQuota(data_dir, 6 * MB)
    sweeper = Sweeper(index, data_dir, Policy(keep_free_bytes=1 * MB), clock=clock, space=quota, reserve_s=10)
    sim = ContinuousRecording(data_dir, index, clock, sweeper, call_s=30, block_s=5, guard=QuotaGuard(quota),
                              hold_each=True)
    result = next(r for r in sim.blocks(hours=1) if r.disk_low)
    assert (result.deleted, result.plan.blocked_by_hold, "legal hold" in result.detail) == ((), True, True)


# --- the ring buffer on a real, size-limited tmpfs (root only) -------------------------------

@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    try:
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0750", "tmpfs", str(mnt)],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"cannot mount a tmpfs here: {e}")
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root/CAP_SYS_ADMIN): {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=10)


def test_tmpfs_ring_buffer_writer_never_meets_enospc(tmpfs: Path, clock: FakeClock) -> None:
    index = small_wal(open_index(tmpfs))
    try:
        sweeper = Sweeper(index, tmpfs, Policy(keep_free_bytes=2 * MB), clock=clock, space=DiskSpace(tmpfs))
        sim = ContinuousRecording(tmpfs, index, clock, sweeper, call_s=120, block_s=10)
        results = sim.run(hours=3)  # ~170 MB through 8 MB: AudioError(ENOSPC) would fail the test
        started = deleted_in_order(index)
        assert (min(r.free_bytes for r in results) >= 1 * MB, started == sorted(started),
                verify(index, tmpfs).ok) == (True, True, True)
    finally:
        index.close()


# --- retention days, min retention ------------------------------------------------------------

def old_calls(index: Index, data_dir: Path, clock: FakeClock, ages_days: list[float], **kw: Any) -> list[int]:
    return [make_call(index, data_dir, started_at=clock.wall() - a * DAY_S, **kw)["id"] for a in ages_days]


def test_recordings_older_than_retention_days_disappear_at_the_next_sweep(data_dir: Path, index: Index,
                                                                         clock: FakeClock) -> None:
    old_calls(index, data_dir, clock, [10, 8, 6, 4, 2])
    Sweeper(index, data_dir, Policy(default=LinePolicy(retention_days=5)), clock=clock).sweep()
    assert ids(index) == [4, 5]


def test_retention_deletions_are_logged_with_why_retention(data_dir: Path, index: Index, clock: FakeClock) -> None:
    old_calls(index, data_dir, clock, [10, 2])
    Sweeper(index, data_dir, Policy(default=LinePolicy(retention_days=5)), clock=clock).sweep()
    assert [(r["call_id"], r["why"]) for r in index.query("select * from deletions")] == [(1, "retention")]


def test_retention_removes_the_files(data_dir: Path, index: Index, clock: FakeClock) -> None:
    old_calls(index, data_dir, clock, [10])
    path = data_dir / index.get_call(1)["path"]
    Sweeper(index, data_dir, Policy(default=LinePolicy(retention_days=5)), clock=clock).sweep()
    assert not path.exists()


def test_retention_prunes_emptied_day_directories(data_dir: Path, index: Index, clock: FakeClock) -> None:
    old_calls(index, data_dir, clock, [10])
    day_dir = (data_dir / index.get_call(1)["path"]).parent
    Sweeper(index, data_dir, Policy(default=LinePolicy(retention_days=5)), clock=clock).sweep()
    assert not day_dir.exists()


def test_retention_becomes_due_as_time_passes(data_dir: Path, index: Index, clock: FakeClock) -> None:
    old_calls(index, data_dir, clock, [4])
    sweeper = Sweeper(index, data_dir, Policy(default=LinePolicy(retention_days=5)), clock=clock)
    sweeper.sweep()
    clock.advance(DAY_S + 1)
    sweeper.sweep()
    assert ids(index) == []


def test_retention_spares_held_recordings(data_dir: Path, index: Index, clock: FakeClock) -> None:
    old_calls(index, data_dir, clock, [10, 9])
    hold.hold(index, 1, who="test")
    Sweeper(index, data_dir, Policy(default=LinePolicy(retention_days=5)), clock=clock).sweep()
    assert ids(index) == [1]


def test_retention_never_touches_a_recording_being_written(data_dir: Path, index: Index, clock: FakeClock) -> None:
    rec = Recording(data_dir, index, line="line1", codec="wav", rate=RATE, channels=1,
                    started_at=clock.wall() - 10 * DAY_S, sync_interval_s=0.5)
    rec.write(np.zeros((RATE, 1), dtype=np.int16))
    Sweeper(index, data_dir, Policy(default=LinePolicy(retention_days=5)), clock=clock).sweep()
    assert rec.part.exists() and ids(index) == [rec.id]


def test_per_line_retention_from_the_config(data_dir: Path, index: Index, clock: FakeClock, tmp_path: Path) -> None:
    cfg = load(write_config(tmp_path / "linetap.toml", data_dir,
                            [{"name": "sales", "pcm": "null", "retention_days": 3},
                             {"name": "legal", "pcm": "null"}], storage={"retention_days": 30}))
    old_calls(index, data_dir, clock, [5], line="sales")
    old_calls(index, data_dir, clock, [5], line="legal")
    Sweeper.from_config(index, cfg, clock=clock).sweep()
    assert [r["line"] for r in index.query("select line from calls")] == ["legal"]


def space_for(data_dir: Path, capacity_mb: float) -> DirectoryQuota:
    return DirectoryQuota(data_dir, int(capacity_mb * MB))


def test_min_retention_keeps_young_recordings_and_raises_disk_low(data_dir: Path, index: Index,
                                                                 clock: FakeClock) -> None:
    old_calls(index, data_dir, clock, [9, 6, 2, 1], seconds=30)  # 480 kB each
    pol = Policy(keep_free_bytes=2 * MB, default=LinePolicy(min_retention_days=3))
    result = Sweeper(index, data_dir, pol, clock=clock, space=space_for(data_dir, 3)).sweep()
    assert (ids(index), result.disk_low, result.plan.blocked_by_min_retention) == ([3, 4], True, True)


def test_min_retention_evict_mode_breaks_the_policy_to_keep_space(data_dir: Path, index: Index,
                                                                 clock: FakeClock) -> None:
    old_calls(index, data_dir, clock, [9, 6, 2, 1], seconds=30)
    pol = Policy(keep_free_bytes=2 * MB, default=LinePolicy(min_retention_days=3), on_min_retention_conflict="evict")
    result = Sweeper(index, data_dir, pol, clock=clock, space=space_for(data_dir, 3)).sweep()
    assert (result.overrode_min_retention, result.disk_low) == ((3,), False)


def test_hours_left_and_disk_figures_go_into_the_health_snapshot(data_dir: Path, index: Index,
                                                                 clock: FakeClock) -> None:
    old_calls(index, data_dir, clock, [2 / 24, 1 / 24], seconds=60)
    result = Sweeper(index, data_dir, Policy(keep_free_bytes=0), clock=clock, space=space_for(data_dir, 10)).sweep()
    assert set(result.health()) == {"free_mb", "used_mb", "recordings", "hours_left"}


def test_sweep_with_nothing_to_do_deletes_nothing(data_dir: Path, index: Index, clock: FakeClock) -> None:
    old_calls(index, data_dir, clock, [3, 2, 1])
    assert Sweeper(index, data_dir, Policy(keep_free_bytes=0), clock=clock).sweep().deleted == ()


# --- crash-safe deletion ----------------------------------------------------------------------

def test_a_durable_transaction_runs_at_synchronous_full_and_then_back_at_normal(index: Index) -> None:
    levels = [index.synchronous()]
    with index.durable_transaction():
        levels.append(index.synchronous())
    levels.append(index.synchronous())
    assert levels == [SYNC_NORMAL, SYNC_FULL, SYNC_NORMAL]


def test_a_failed_durable_transaction_rolls_back_and_restores_normal(index: Index) -> None:
    with pytest.raises(RuntimeError), index.durable_transaction():
        index.set_meta("k", "v")
        raise RuntimeError("boom")
    assert (index.get_meta("k"), index.synchronous()) == (None, SYNC_NORMAL)


class EventIndex(Index):
    """The index, noting each durable transaction: its synchronous level and the intents it wrote."""

    def __init__(self, path: Path, events: list[tuple[Any, ...]]) -> None:
        super().__init__(path)
        self.events = events

    @contextmanager
    def durable_transaction(self) -> Iterator[None]:
        with super().durable_transaction():
            yield
            self.events.append(("durable", self.synchronous(),
                                [r["call_id"] for r in self.query("select call_id from deleting")]))


def test_a_deletion_intent_is_on_the_disk_at_synchronous_full_before_the_file_is_unlinked(
        data_dir: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    # After a power cut, an intent lost while its unlink reached the disk would read as a file
    # removed outside linetap. So: the intent commits at FULL, then (and only then) the unlink.
    events: list[tuple[Any, ...]] = []
    index = EventIndex(data_dir / "index.db", events)
    old_calls(index, data_dir, clock, [3, 2])
    real_unlink = Path.unlink

    def unlink(path: Path, missing_ok: bool = False) -> None:
        if path.suffix == ".wav":
            con = sqlite3.connect(data_dir / "index.db")  # what another process (or a reboot) sees
            committed = [r[0] for r in con.execute("select call_id from deleting")]
            con.close()
            events.append(("unlink", path.name, committed))
        real_unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    name = Path(index.get_call(1)["path"]).name
    deletions.delete_recordings(index, data_dir, [(1, "space")], by="test")
    assert events == [("durable", SYNC_FULL, [1]), ("unlink", name, [1])]
    assert (index.synchronous(), ids(index), verify(index, data_dir).problems) == (SYNC_NORMAL, [2], ())
    index.close()


def test_a_deletion_interrupted_after_unlinking_is_finished_by_the_next_sweep(data_dir: Path, index: Index,
                                                                              clock: FakeClock) -> None:
    old_calls(index, data_dir, clock, [3, 2])
    row = index.get_call(1)
    with index.durable_transaction():
        retention_queries.intent_add(index, 1, path=row["path"], why="space", by="linetap", detail=None,
                                     queued_at=iso(clock.wall()))
    os.unlink(data_dir / row["path"])  # ...and then the power went
    Sweeper(index, data_dir, Policy(), clock=clock).sweep()
    assert (ids(index), verify(index, data_dir).problems) == ([2], ())


def test_deleting_a_held_recording_is_refused(data_dir: Path, index: Index, clock: FakeClock) -> None:
    old_calls(index, data_dir, clock, [3])
    hold.hold(index, 1, who="test")
    res = deletions.delete_recordings(index, data_dir, [(1, "space")], by="test")
    assert [r.reason for r in res.refused] == ["held"]


def test_deletions_table_is_append_only(data_dir: Path, index: Index, clock: FakeClock) -> None:
    old_calls(index, data_dir, clock, [3])
    deletions.delete_recordings(index, data_dir, [(1, "space")], by="test")
    with pytest.raises(Exception, match="append-only"):
        index.execute("delete from deletions")


def test_the_sweeper_reads_every_recording_once_oldest_first_across_pages(data_dir: Path, index: Index,
                                                                          clock: FakeClock) -> None:
    stamps = ["2026-01-01T00:00:00.000Z"] * 7 + ["2026-01-02T00:00:00.000Z"] * 2 + ["2025-12-31T00:00:00.000Z"] * 3
    for i, s in enumerate(stamps, start=1):
        index.call_recovered(id=i, line="l", started_at=s, bytes=1, status="complete")
    sweeper = Sweeper(index, data_dir, Policy(), clock=clock, page_rows=3)
    expected = [r["id"] for r in index.query("select id from calls order by started_at, id")]
    assert [r.id for r in sweeper._recordings()] == expected


def test_tight_says_when_a_sweep_is_due_before_opening_a_recording(data_dir: Path, index: Index,
                                                                   clock: FakeClock) -> None:
    sweeper = Sweeper(index, data_dir, Policy(keep_free_bytes=2 * MB), clock=clock, space=space_for(data_dir, 2.0))
    roomy = Sweeper(index, data_dir, Policy(keep_free_bytes=2 * MB), clock=clock, space=space_for(data_dir, 100))
    assert (sweeper.tight(), roomy.tight()) == (True, False)
