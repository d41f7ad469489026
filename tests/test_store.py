"""Recordings on disk: layout, modes, the ``.part`` mark, hashes, and salvage after a crash.

A crash is real here: a forked child writes through the real writer and kills itself
with SIGKILL in the middle of a recording, leaving exactly what a dead recorder leaves.
"""

from __future__ import annotations

import hashlib
import os
import resource
import traceback
import signal
import stat
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from linetap.clock import iso, parse_iso
from linetap.index.db import open_index
from linetap.sim.line import render
from linetap.store import audio
from linetap.store.recordings import PART, Recording, recording_files, relative_path, salvage, unsalvaged

RATE = 8000
T0 = datetime(2026, 11, 28, 15, 30, 0, 125000, tzinfo=timezone.utc).timestamp()
CODECS = ["opus", "flac", "wav"]


@pytest.fixture
def lax_umask():
    """Modes must not depend on a strict umask of the caller."""
    old = os.umask(0o002)
    yield
    os.umask(old)


def speech(seconds: float, seed: int = 5) -> np.ndarray:
    pcm, _ = render([("call", seconds)], seed=seed)
    return pcm.reshape(-1, 1)


def new_recording(data_dir: Path, index, codec: str, started_at: float = T0) -> Recording:
    return Recording(data_dir, index, line="line1", codec=codec, rate=RATE, channels=1, started_at=started_at,
                     sync_interval_s=0.5)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_the_path_names_line_utc_date_start_and_id():
    assert relative_path("line1", T0, 42, "opus") == Path(
        "recordings/line1/2026/11/28/line1_20261128T153000.125Z_42.opus")
    assert relative_path("desk-2", T0, 7, "flac").name == "desk-2_20261128T153000.125Z_7.flac"
    # Just before midnight UTC is still the 28th, whatever the local time zone.
    late = datetime(2026, 11, 28, 23, 59, 59, 999000, tzinfo=timezone.utc).timestamp()
    assert relative_path("l", late, 1, "wav") == Path("recordings/l/2026/11/28/l_20261128T235959.999Z_1.wav")


@pytest.mark.parametrize("codec", CODECS)
def test_a_recording_is_a_part_file_until_finished_then_final_hashed_and_indexed(data_dir, lax_umask, codec):
    index = open_index(data_dir)
    rec = new_recording(data_dir, index, codec)
    x = speech(3.0)
    for i in range(0, len(x), 160):
        rec.write(x[i:i + 160])
    assert rec.part.name == rec.final.name + PART
    assert rec.part.exists() and not rec.final.exists()
    row = index.get_call(rec.id)
    assert (row["status"], row["path"]) == ("recording", str(rec.rel))
    assert row["started_at"] == "2026-11-28T15:30:00.125Z"

    summary = rec.finish("vox_timeout")
    assert rec.final.exists() and not rec.part.exists()
    row = index.get_call(rec.id)
    assert (row["status"], row["end_reason"]) == ("complete", "vox_timeout")
    assert row["path"] == str(rec.rel) == str(rec.final.relative_to(data_dir))
    assert row["sha256"] == hashlib.sha256(rec.final.read_bytes()).hexdigest()
    assert row["bytes"] == rec.final.stat().st_size
    assert row["duration_s"] == 3.0
    assert row["ended_at"] == iso(T0 + 3.0)
    assert summary["sha256"] == row["sha256"]
    samples, rate = audio.read(rec.final)
    assert rate == RATE and len(samples) == pytest.approx(len(x), abs=RATE * 0.03)
    if codec != "opus":
        assert np.array_equal(samples, x)
    # Files 0640, every directory the recording created 0750.
    assert mode(rec.final) == 0o640
    d = rec.final.parent
    while d != data_dir:
        assert mode(d) == 0o750, d
        d = d.parent
    index.close()


def test_a_recording_too_short_to_be_a_call_leaves_nothing(data_dir):
    index = open_index(data_dir)
    rec = new_recording(data_dir, index, "opus")
    rec.write(speech(0.5))
    rec.discard()
    assert not rec.part.exists() and not rec.final.exists()
    assert index.calls() == []


def crash_while_recording(data_dir: Path, codec: str, audio_in: np.ndarray, *, started_at: float = T0) -> None:
    """A child process records ``audio_in`` through the real writer, then dies by SIGKILL mid-call."""
    pid = os.fork()
    if pid == 0:  # the child: never returns to pytest
        try:
            index = open_index(data_dir)
            rec = new_recording(data_dir, index, codec, started_at)
            for i in range(0, len(audio_in), 160):
                rec.write(audio_in[i:i + 160])
        finally:
            os.kill(os.getpid(), signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


@pytest.mark.parametrize("codec", CODECS)
def test_salvage_finishes_a_file_cut_by_a_crash_as_a_playable_recovered_recording(data_dir, lax_umask, codec):
    x = speech(6.0, seed=21)
    crash_while_recording(data_dir, codec, x)
    (part,) = (data_dir / "recordings").rglob("*" + PART)
    index = open_index(data_dir)
    assert index.calls()[0]["status"] == "recording"

    (recovered,) = salvage(data_dir, index)
    row = index.get_call(recovered["id"])
    final = data_dir / row["path"]
    assert final == part.with_name(part.name[: -len(PART)])
    assert not part.exists() and final.exists()
    assert (row["status"], row["end_reason"]) == ("recovered", "recovered")
    samples, rate = audio.read(final)
    frames, info_rate, channels = audio.info(final)  # a finished file: its header tells its length
    assert (info_rate, channels) == (RATE, 1) and abs(frames - len(samples)) <= RATE // 50
    # Synced every 0.5 s of audio: at most that (plus an encoder frame) is lost at the end.
    assert 6.0 - 1.0 <= len(samples) / RATE <= 6.0 + 0.05
    assert row["duration_s"] == pytest.approx(len(samples) / RATE, abs=0.05)
    assert parse_iso(row["ended_at"]) == pytest.approx(T0 + row["duration_s"], abs=0.002)
    assert row["sha256"] == hashlib.sha256(final.read_bytes()).hexdigest()
    assert row["bytes"] == final.stat().st_size
    assert mode(final) == 0o640
    if codec != "opus":
        assert np.array_equal(samples, x[: len(samples)])
    # A second start finds nothing left to do.
    assert salvage(data_dir, index) == []
    assert index.get_call(row["id"]) == row


def test_salvage_indexes_a_part_file_whose_row_was_lost_from_its_name(data_dir):
    crash_while_recording(data_dir, "flac", speech(3.0))
    index = open_index(data_dir)
    (row,) = index.calls()
    index.delete_call(row["id"])  # e.g. the index was restored from a backup
    (recovered,) = salvage(data_dir, index)
    restored = index.get_call(row["id"])
    assert restored["line"] == "line1" and restored["codec"] == "flac"
    assert restored["started_at"] == row["started_at"]
    assert restored["status"] == "recovered" and restored["duration_s"] > 2.0
    assert recovered["id"] == row["id"]


def test_salvage_of_a_crash_between_rename_and_index_update_keeps_the_whole_file(data_dir):
    index = open_index(data_dir)
    rec = new_recording(data_dir, index, "wav")
    rec.write(speech(2.0))
    rec.writer.close()
    os.replace(rec.part, rec.final)  # ...and the process died before updating the row
    (recovered,) = salvage(data_dir, index)
    row = index.get_call(rec.id)
    assert (row["status"], row["end_reason"], row["duration_s"]) == ("recovered", "recovered", 2.0)
    assert row["sha256"] == hashlib.sha256(rec.final.read_bytes()).hexdigest()


def test_salvage_drops_a_row_whose_file_was_never_created(data_dir):
    index = open_index(data_dir)
    call_id = index.call_started(line="line1", started_at=iso(T0), codec="opus", rate=RATE, channels=1)
    index.update_call(call_id, path=str(relative_path("line1", T0, call_id, "opus")))
    assert salvage(data_dir, index) == []
    assert index.calls() == []


def test_salvage_keeps_an_unreadable_part_file_aside_and_says_so_in_the_index(data_dir):
    index = open_index(data_dir)
    rec = new_recording(data_dir, index, "flac")
    rec.writer.close()
    rec.part.write_bytes(b"\0" * 100)  # a power cut before any of the header reached the disk
    salvage(data_dir, index)
    row = index.get_call(rec.id)
    assert (row["status"], row["end_reason"], row["duration_s"]) == ("recovered", "recovered", 0.0)
    assert not rec.part.exists()
    assert rec.final.with_name(rec.final.name + ".unreadable").exists()


def salvage_with_file_size_limit(data_dir: Path, limit_bytes: int) -> int:
    """Salvage in a child process whose writes fail past ``limit_bytes`` (RLIMIT_FSIZE: the kernel
    refuses the write with EFBIG, as a full disk refuses it with ENOSPC). Returns how many it recovered."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails instead of killing us
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
            code = len(salvage(data_dir, open_index(data_dir)))
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status)
    return os.WEXITSTATUS(status)


@pytest.mark.parametrize("codec", ["flac", "wav"])
def test_a_disk_that_refuses_the_salvage_leaves_the_part_as_it_is_and_a_retry_recovers_it(data_dir, codec):
    crash_while_recording(data_dir, codec, speech(20.0, seed=3))
    (part,) = (data_dir / "recordings").rglob("*" + PART)
    before = part.read_bytes()
    limit = 128 * 1024  # the index and its WAL stay under it; the salvaged copy of the audio does not
    assert part.stat().st_size > limit and (data_dir / "index.db").stat().st_size < limit // 2
    assert salvage_with_file_size_limit(data_dir, limit) == 0
    index = open_index(data_dir)
    assert part.read_bytes() == before  # not renamed .unreadable, not cut
    assert not list((data_dir / "recordings").rglob("*.unreadable"))
    assert index.calls()[0]["status"] == "recording"
    assert unsalvaged(data_dir) == [part]
    # Space again (the ring buffer freed some): the retry of just that file recovers all of it.
    (recovered,) = salvage(data_dir, index, parts=unsalvaged(data_dir))
    row = index.get_call(recovered["id"])
    assert row["status"] == "recovered" and row["duration_s"] > 19.0
    assert unsalvaged(data_dir) == []


def test_a_retry_leaves_the_rows_of_running_calls_alone(data_dir):
    index = open_index(data_dir)
    live = new_recording(data_dir, index, "wav")
    live.write(speech(1.0))
    assert salvage(data_dir, index, parts=[]) == []
    assert index.get_call(live.id)["status"] == "recording" and live.part.exists()


@pytest.mark.parametrize("codec, held_back", [("flac", 1152), ("opus", 1600 + 160)])
def test_after_a_sync_the_file_on_disk_holds_all_but_a_codec_frame(tmp_path, codec, held_back):
    """What a power cut right after a sync finds: every sample written, less what the codec
    still holds for its next frame or page (FLAC at level 2: 1152 samples; Opus: pages every
    200 ms, plus one encoder frame). libsndfile's default FLAC level holds 4096 (0.5 s)."""
    x = speech(3.0).reshape(-1, 1)
    w = audio.AudioWriter(tmp_path / f"a.{codec}", codec, RATE, 1)
    written = 0
    for n in (int(1.3 * RATE), int(2.7 * RATE)):  # two moments, not one lucky frame boundary
        for i in range(written, n, 160):
            w.write(x[i:min(i + 160, n)])
        written = n
        w.sync()
        cut = tmp_path / f"cut-{n}.{codec}"
        cut.write_bytes((tmp_path / f"a.{codec}").read_bytes())  # the disk's copy, as a crash leaves it
        got = sum(len(b) for b in audio.read_blocks(cut, 160))
        assert written - held_back <= got <= written, (codec, written, got)
    w.close()


@pytest.mark.parametrize("codec", ["flac", "opus", "wav"])
def test_closing_a_file_fsyncs_all_of_it_before_it_can_be_renamed(tmp_path, monkeypatch, codec):
    """What libsndfile writes on closing (the last frames, the header it rewrites) reaches the disk
    before ``close`` returns, so the rename that follows never publishes a file the disk lacks."""
    fsynced: list[tuple[int, int]] = []
    real_fsync = os.fsync
    monkeypatch.setattr(audio.os, "fsync", lambda fd: (fsynced.append((os.fstat(fd).st_ino, os.fstat(fd).st_size)),
                                                       real_fsync(fd))[1])
    path = tmp_path / f"a.{codec}"
    w = audio.AudioWriter(path, codec, RATE, 1)
    w.write(speech(1.05).reshape(-1, 1))
    size_before_close = path.stat().st_size
    w.close()
    final = path.stat()
    assert fsynced[-1] == (final.st_ino, final.st_size)  # the whole finished file, after libsndfile closed it
    assert final.st_size > size_before_close or codec == "wav"  # closing wrote something the syncs had not
    w.close()  # a second close is harmless
    assert len(fsynced) == 1


# --- the recorder's periodic syncs, batched per pipeline round ---

class SyncSpy:
    """Counts each file's own syncs (``AudioWriter.sync``) and the batch's filesystem syncs."""

    def __init__(self, monkeypatch, fs_error: OSError | None = None, failing_file: Path | None = None):
        self.files: list[str] = []
        self.fs: list[Path] = []
        self.fs_error = fs_error
        real = audio.AudioWriter.sync

        def file_sync(w):
            name = Path(os.readlink(f"/proc/self/fd/{w._fd}")).name
            self.files.append(name)
            if failing_file is not None and name == failing_file.name:
                raise audio.AudioError(f"{name}: Input/output error")
            real(w)
        monkeypatch.setattr(audio.AudioWriter, "sync", file_sync)

    def sync_fs(self, path: Path) -> None:
        self.fs.append(path)
        if self.fs_error is not None:
            raise self.fs_error


def batched(data_dir: Path, index, batch, n: int) -> list[Recording]:
    return [Recording(data_dir, index, line=f"line{i}", codec="flac", rate=RATE, channels=1, started_at=T0,
                      sync_interval_s=0.4, syncs=batch) for i in range(n)]


def test_due_recordings_are_synced_together_by_one_filesystem_sync_per_round(data_dir, monkeypatch):
    from linetap.store.recordings import SyncBatch
    spy = SyncSpy(monkeypatch)
    index = open_index(data_dir)
    batch = SyncBatch(data_dir, sync_fs=spy.sync_fs)
    recs = batched(data_dir, index, batch, 3)  # a sync point every 0.4 s of audio
    x = speech(2.0)
    at = [0, 0, 0]

    def write(i: int, seconds: float) -> None:
        n = int(seconds * RATE)
        recs[i].write(x[at[i]:at[i] + n])
        at[i] += n

    for i in range(3):
        write(i, 0.3)  # not yet at a sync point
    assert batch.flush() == 0 and spy.fs == []
    write(0, 0.2)
    write(1, 0.2)  # both past 0.4 s: due
    assert spy.files == [] and spy.fs == []  # nothing synced inside the round
    assert batch.flush() == 2 and spy.fs == [data_dir]  # one filesystem sync for both
    assert batch.flush() == 0 and spy.fs == [data_dir]  # synced: no longer due
    # A round holding a backlog: a file due again before the round ended syncs everything due then.
    write(0, 0.4)
    write(1, 0.4)  # both past 0.8 s: due
    assert spy.fs == [data_dir]
    write(0, 0.4)  # past 1.2 s while still due from 0.8 s
    assert spy.fs == [data_dir] * 2 and batch.flush() == 1  # only its newest sync point was left
    write(2, 0.2)  # past 0.4 s: due
    rows = [r.finish("shutdown") for r in recs]  # finishing fsyncs the file itself: no longer due
    assert batch.flush() == 0 and spy.fs == [data_dir] * 3 and spy.files == []
    assert [row["duration_s"] for row in rows] == [1.3, 0.9, 0.5]


def test_if_the_filesystem_sync_fails_each_file_syncs_alone_and_a_failing_one_keeps_its_audio(data_dir, monkeypatch):
    import errno

    from linetap.store.recordings import SyncBatch
    index = open_index(data_dir)
    batch = SyncBatch(data_dir)  # placeholder, replaced below once the failing file is known
    errors: list[tuple[str, str | None]] = []
    recs = batched(data_dir, index, batch, 2)
    recs[1].on_error = lambda detail, at: errors.append((recs[1].line, detail))
    spy = SyncSpy(monkeypatch, fs_error=OSError(errno.EIO, "Input/output error"), failing_file=recs[1].part)
    batch._sync_fs = spy.sync_fs
    x = speech(2.0)
    for r in recs:
        r.write(x[:int(0.5 * RATE)])
    assert batch.flush() == 2
    assert spy.fs == [data_dir] and sorted(spy.files) == sorted([recs[0].part.name, recs[1].part.name])
    assert recs[0].error is None
    assert recs[1].error is not None and errors == [("line1", recs[1].error)]  # alarmed: DISK_WRITE_FAILED
    # The failed one keeps what comes next in RAM and writes it once the disk works again.
    recs[1].write(x[int(0.5 * RATE):int(1.0 * RATE)])
    assert recs[1].frames == int(1.0 * RATE) and recs[1].duration_s == 0.5
    spy.fs_error = None
    monkeypatch.setattr(audio.AudioWriter, "sync", lambda w: None)
    recs[1].write(x[int(1.0 * RATE):int(1.6 * RATE)])  # a second of audio later: the retry
    assert recs[1].error is None and errors[-1] == ("line1", None)
    row = recs[1].finish("shutdown")
    assert row["duration_s"] == 1.6
    assert sum(len(b) for b in audio.read_blocks(data_dir / row["path"])) == int(1.6 * RATE)


def test_a_file_found_failing_by_a_sync_within_its_own_write_keeps_the_rest_in_ram(data_dir, monkeypatch):
    import errno

    from linetap.store.recordings import SyncBatch
    index = open_index(data_dir)
    batch = SyncBatch(data_dir)
    (rec,) = batched(data_dir, index, batch, 1)
    spy = SyncSpy(monkeypatch, fs_error=OSError(errno.EIO, "Input/output error"), failing_file=rec.part)
    batch._sync_fs = spy.sync_fs
    rec.write(speech(1.0)[:int(0.9 * RATE)])  # due at 0.4 s, due again at 0.8 s: synced then, and failing
    assert spy.fs == [data_dir] and spy.files == [rec.part.name]
    assert rec.error is not None
    assert rec.duration_s == 0.8 and rec.frames == int(0.9 * RATE)  # the last 0.1 s waits in RAM


def test_syncfs_syncs_the_filesystem_of_a_directory_and_names_what_it_could_not(tmp_path):
    from linetap.store.recordings import syncfs
    syncfs(tmp_path)
    with pytest.raises(OSError, match="missing"):
        syncfs(tmp_path / "missing")


def test_recording_files_lists_every_file_of_one_call_and_no_other(data_dir):
    day = data_dir / "recordings" / "line1" / "2026" / "11" / "28"
    day.mkdir(parents=True)
    mine = ["line1_20261128T153059.500Z_81.opus", "line1_20261128T153059.500Z_81.opus.part",
            "line1_20261128T153059.500Z_81.opus.unreadable", "line1_20261128T153059.500Z_81.opus.sealed",
            "line1_20261128T153059.500Z_81.json"]
    others = ["line1_20261128T153059.500Z_812.opus", "line1_20261128T153100.000Z_8.opus"]
    for n in mine + others:
        (day / n).write_bytes(b"x")
    expected = sorted(day / n for n in mine)
    assert recording_files(day / mine[0]) == expected
    assert recording_files(day / mine[3]) == expected  # named by its sealed path
    (day / mine[0]).unlink()
    assert recording_files(day / mine[0]) == [
        p for p in expected if p.name != mine[0]]
