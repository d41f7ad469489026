"""Calls that began at different moments share their filesystem syncs (``SyncBatch``).

A ``syncfs`` pushes every file, so each plaintext recording open counts its sync interval
again from there: the filesystem is synced once per sync interval, not once per call's own
sync point. Real files and a real ``syncfs``; only the count of syncs is watched.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from linetap.index.db import open_index
from linetap.sim.line import render
from linetap.store.recordings import Recording, SyncBatch

RATE = 8000
T0 = 1_795_000_000.0
INTERVAL_S = 0.4
ROUND_S = 0.2  # the pipeline's rounds


def speech(seconds: float, seed: int) -> np.ndarray:
    pcm, _ = render([("call", seconds)], seed=seed)
    return pcm.reshape(-1, 1)


def rounds(data_dir: Path, *, align: bool, seconds: float = 10.0):
    """Four calls whose sound began 0.35, 0.25, 0.15 and 0.05 s into rounds 0, 1, 2 and 3, written
    in 200 ms rounds with the round's due syncs after each (as the pipeline does). Returns the
    number of ``syncfs`` and, for each call, the most audio it ever held written but not yet synced
    (seconds)."""
    index = open_index(data_dir)
    synced_at: dict[Recording, int] = {}
    count = [0]
    batch = SyncBatch(data_dir)
    real = batch._sync_fs

    def sync_fs(path: Path) -> None:
        real(path)
        count[0] += 1
        for r in recs.values():  # what a syncfs pushes: everything written to every file so far
            synced_at[r] = r.frames

    batch._sync_fs = sync_fs
    recs: dict[int, Recording] = {}
    audio = [speech(seconds + 1, seed=30 + i) for i in range(4)]
    pos = [0] * 4
    worst = [0.0] * 4
    step = int(ROUND_S * RATE)
    for k in range(int(seconds / ROUND_S)):
        for i in range(min(k + 1, 4)):
            if i not in recs:
                recs[i] = Recording(data_dir, index, line=f"line{i}", codec="flac", rate=RATE, channels=1,
                                    started_at=T0 + k * ROUND_S, sync_interval_s=INTERVAL_S, syncs=batch)
                if not align:
                    recs[i].synced = lambda: None  # as before: each call counted from its own sync points
                n = int((0.35 - 0.1 * i) * RATE)  # the call's first run: from its onset to the round's end
            else:
                n = step
            recs[i].write(audio[i][pos[i]:pos[i] + n])
            pos[i] += n
        batch.flush()
        for i, r in recs.items():
            worst[i] = max(worst[i], (r.frames - synced_at.get(r, 0)) / RATE)
    rows = [r.finish("shutdown") for r in recs.values()]
    assert all(row["status"] == "complete" for row in rows)
    index.close()
    return count[0], worst


def test_calls_begun_apart_share_one_filesystem_sync_per_interval_and_none_waits_longer(tmp_path):
    (tmp_path / "before").mkdir()
    (tmp_path / "after").mkdir()
    before, worst_before = rounds(tmp_path / "before", align=False)
    after, worst_after = rounds(tmp_path / "after", align=True)
    # 50 rounds (10 s). Counted from their own starts the calls' sync points fall in different
    # rounds: from the fourth call on, nearly every round syncs. Counted from the last syncfs, they
    # fall in the same rounds: one syncfs per 0.4 s interval.
    assert before >= 45, before
    assert after <= 26, after
    # Never longer unsynced than a sync interval plus the round that crosses it (the promise of
    # ``SyncBatch.due``), and no worse than before.
    assert max(worst_after) <= INTERVAL_S + ROUND_S + 1e-9, worst_after
    assert max(worst_after) <= max(worst_before) + 1e-9, (worst_after, worst_before)
