"""The recorder process killed or stopped in the middle of a call, through the real CLI and ALSA path.

``linetap run`` runs as a child process reading a FIFO-backed ALSA ``file`` PCM fed at
real-time pace (real time is the point: what reaches the disk before a kill depends on
it); only the idle lead-in before the call goes as fast as the recorder takes it
(``fast_head_s``: its pace changes nothing a kill leaves, and it saves ~3 s a test). The
expected recording start is computed by running the same VOX segmenter over the fed audio,
block by block, so "all audio up to 1 s before the kill" is checked against the audio, not
against a hard-coded figure.
"""

from __future__ import annotations

import hashlib
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from linetap.index.db import open_index
from linetap.sim.line import render
from linetap.store import audio
from helpers import RecorderProcess, expected_start_frame, offset_in, row_of, salvaged_after_restart, write_config

RATE = 8000
IDLE_S = 3.0


def setup_line(alsa, tmp_path: Path, data_dir: Path, codec: str, call_s: float, seed: int):
    (line,) = alsa.lines(1)
    cfg = write_config(tmp_path / "linetap.toml", data_dir, [{"name": "line1", "pcm": line.pcm}],
                       storage={"codec": codec})
    pcm_audio, _ = render([("idle", IDLE_S), ("call", call_s)], seed=seed)
    return line, cfg, pcm_audio


def signal_mid_call(rec, feeder, data_dir: Path, at_s: float, sig: int) -> tuple[int, float]:
    """Start the recorder, let a call open and run until ``at_s`` of audio was fed, send ``sig``:
    (frames fed when it was sent, monotonic time it was sent)."""
    rec.started()
    rec.until(lambda: row_of(data_dir, "recording"))
    rec.until(lambda: feeder.sent_frames >= at_s * RATE)
    t = time.monotonic()
    rec.proc.send_signal(sig)
    return feeder.sent_frames, t


@pytest.mark.parametrize("codec", ["opus", "flac", "wav"])
def test_a_recording_cut_by_sigkill_is_recovered_playable_with_all_but_the_last_second(
        alsa, tmp_path, data_dir, codec):
    line, cfg, pcm_audio = setup_line(alsa, tmp_path, data_dir, codec, call_s=20, seed=11)
    start_frame = expected_start_frame(cfg, pcm_audio)
    feeder = line.feed(pcm_audio, speed=1.0, fast_head_s=IDLE_S)
    rec = RecorderProcess(cfg, alsa.env(), tmp_path / "run1.log")
    try:
        # 4.5 s into the call, ~7.5 s into the recording (pre-roll included). What had been fed
        # when the recorder died: an upper bound of what it could have captured.
        fed_at_kill, _ = signal_mid_call(rec, feeder, data_dir, IDLE_S + 4.5, signal.SIGKILL)
    finally:
        feeder.stop()
        rec.kill()
    killed = row_of(data_dir, "recording")
    assert killed is not None, "the call was not open at the kill"
    assert (data_dir / (killed["path"] + ".part")).exists()

    # Start again: the unfinished file is salvaged at start-up, before capture begins.
    row = salvaged_after_restart(line, cfg, alsa.env(), tmp_path / "run2.log", data_dir, seed=12)

    assert row["id"] == killed["id"]
    assert (row["status"], row["end_reason"]) == ("recovered", "recovered")
    path = data_dir / row["path"]
    assert not Path(str(path) + ".part").exists()
    samples, rate = audio.read(path)  # playable: a finished file libsndfile opens and decodes
    assert rate == RATE and len(samples) > 0
    frames, info_rate, _ = audio.info(path)
    assert info_rate == RATE and frames == pytest.approx(len(samples), abs=RATE // 50)
    assert row["duration_s"] == pytest.approx(len(samples) / RATE, abs=0.05)
    assert row["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert row["bytes"] == path.stat().st_size

    if codec in ("flac", "wav"):  # lossless: the recovered audio is exactly a stretch of what was fed
        first = offset_in(pcm_audio, samples[:, 0])
        assert abs(first - start_frame) <= 0.05 * RATE, f"starts at frame {first}, not {start_frame}"
        assert np.array_equal(samples[:, 0], pcm_audio[first:first + len(samples)])
    else:
        first = start_frame
    lost_s = (fed_at_kill - (first + len(samples))) / RATE
    assert -0.1 <= lost_s <= 1.0, (f"recovered {len(samples) / RATE:.2f} s from frame {first}: "
                                   f"ends {lost_s:.2f} s before the kill")


def test_sigterm_in_the_middle_of_a_call_finishes_it_cleanly(alsa, tmp_path, data_dir):
    line, cfg, pcm_audio = setup_line(alsa, tmp_path, data_dir, "flac", call_s=12, seed=13)
    start_frame = expected_start_frame(cfg, pcm_audio)
    feeder = line.feed(pcm_audio, speed=1.0, fast_head_s=IDLE_S)
    rec = RecorderProcess(cfg, alsa.env(), tmp_path / "run.log")
    try:
        fed_at_term, t_term = signal_mid_call(rec, feeder, data_dir, IDLE_S + 3.5, signal.SIGTERM)
        code = rec.wait()
        assert code == 0, rec.text()
        assert time.monotonic() - t_term < 5, "shutdown took too long"
    finally:
        feeder.stop()
        rec.kill()
    index = open_index(data_dir)
    rows = index.calls()
    index.close()
    assert len(rows) == 1
    (row,) = rows
    assert (row["status"], row["end_reason"]) == ("complete", "shutdown")
    path = data_dir / row["path"]
    assert not Path(str(path) + ".part").exists()
    assert row["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert row["bytes"] == path.stat().st_size
    samples, rate = audio.read(path)
    assert rate == RATE
    assert row["duration_s"] == pytest.approx(len(samples) / RATE, abs=0.001)
    first = offset_in(pcm_audio, samples[:, 0])
    assert abs(first - start_frame) <= 0.05 * RATE, f"starts at frame {first}, not {start_frame}"
    assert np.array_equal(samples[:, 0], pcm_audio[first:first + len(samples)])
    # Everything captured before the signal was written (the FIFO may still have held ~a period).
    assert -0.1 <= (fed_at_term - (first + len(samples))) / RATE <= 0.5
