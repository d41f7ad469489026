"""Line health from the audio: dead (zeros, stuck) vs quiet-but-live, clipping, stalls."""

from __future__ import annotations

import numpy as np
import pytest

from linetap.detect.dead import Change, LineHealthDetector, StallWatch, stall_check

RATE = 8000
BLOCK = 160  # 20 ms, as the capture reader delivers
T0 = 1_795_000_000.0
NOISE_FLOOR_LSB = 32768 * 10 ** (-70 / 20)  # -70 dBFS RMS: about 10 LSB


def detector(channels: int = 1, **kw) -> LineHealthDetector:
    kw = {"dead_after_ms": 500, "clipping_fraction": 0.01, "clipping_after_s": 2.0, **kw}
    return LineHealthDetector(RATE, channels, **kw)


def feed(det: LineHealthDetector, signal: np.ndarray, t0: float = T0) -> list[tuple[Change, float]]:
    """Feed a signal in 20 ms blocks; returns each change with the end time of the block that reported it."""
    if signal.ndim == 1:
        signal = signal[:, None]
    out = []
    for i in range(0, len(signal), BLOCK):
        block = signal[i:i + BLOCK]
        t = t0 + i / RATE
        for change in det.feed(block, t):
            out.append((change, t + len(block) / RATE))
    return out


def noise(seconds: float, rms: float = NOISE_FLOOR_LSB, seed: int = 1, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.rint(rng.normal(0.0, rms, size=(int(seconds * RATE), channels)))
    return np.clip(x, -32768, 32767).astype(np.int16)


def const(seconds: float, value: int, channels: int = 1) -> np.ndarray:
    return np.full((int(seconds * RATE), channels), value, dtype=np.int16)


# --- dead ---

def test_digital_silence_raises_line_dead_dated_at_its_onset():
    onset_s = 1.0 + 37 / RATE  # mid-block: the onset is found to the sample
    signal = np.concatenate([noise(onset_s), const(3.0, 0)])
    (change, reported_at), = feed(detector(), signal)
    assert change == Change("LINE_DEAD", True, T0 + onset_s, "digital silence")
    assert reported_at - change.at <= 0.5 + BLOCK / RATE  # within dead_after_ms plus one block


def test_a_stuck_sample_value_raises_line_dead_with_the_value():
    signal = np.concatenate([noise(1.0), const(2.0, 1234)])
    (change, _), = feed(detector(), signal)
    assert (change.code, change.active, change.detail) == ("LINE_DEAD", True, "stuck at 1234")
    assert change.at == T0 + 1.0


def test_a_dead_line_that_comes_back_clears_at_the_first_live_sample():
    back_s = 3.0 + 11 / RATE
    signal = np.concatenate([noise(1.0), const(back_s - 1.0, 0), noise(1.0, seed=2)])
    changes = [c for c, _ in feed(detector(), signal)]
    assert [(c.code, c.active) for c in changes] == [("LINE_DEAD", True), ("LINE_DEAD", False)]
    assert changes[1].at == pytest.approx(T0 + back_s)


def test_silence_shorter_than_dead_after_ms_raises_nothing():
    signal = np.concatenate([noise(1.0), const(0.45, 0), noise(1.0, seed=3)])
    assert feed(detector(), signal) == []


def test_a_line_dead_from_the_first_sample_is_dated_at_the_first_sample():
    (change, _), = feed(detector(), const(1.0, 0))
    assert change.at == T0


def test_an_idle_line_at_minus_70_dbfs_raises_nothing_for_an_hour():
    det = detector()
    for minute in range(60):
        assert feed(det, noise(60.0, seed=minute), t0=T0 + 60 * minute) == []


def test_an_idle_line_of_only_a_few_lsb_raises_nothing_for_an_hour():
    # Quieter than the quietest real line: most samples 0, a few +-1 or +-2.
    det = detector()
    for minute in range(60):
        assert feed(det, noise(60.0, rms=0.7, seed=100 + minute), t0=T0 + 60 * minute) == []


def test_one_dead_channel_of_a_stereo_line_is_a_dead_line():
    signal = np.concatenate([noise(1.0, channels=2), np.hstack([noise(2.0, seed=5), const(2.0, 0)])])
    (change, _), = feed(detector(channels=2), signal)
    assert (change.active, change.detail, change.at) == (True, "digital silence on channel 2", T0 + 1.0)


def test_a_reopened_stream_ends_the_dead_condition_and_starts_afresh():
    det = detector()
    feed(det, const(1.0, 0))
    assert det.reset(at=T0 + 1.0) == [Change("LINE_DEAD", False, T0 + 1.0)]
    assert det.reset(at=T0 + 1.0) == []


# --- clipping ---

def clipped(seconds: float, fraction: float, seed: int = 7) -> np.ndarray:
    """Loud speech-like noise with ``fraction`` of its samples at full scale."""
    x = noise(seconds, rms=3000, seed=seed)
    n = len(x)
    rng = np.random.default_rng(seed)
    idx = rng.choice(n, size=int(n * fraction), replace=False)
    x[idx, 0] = np.where(rng.random(len(idx)) < 0.5, 32767, -32768)
    return x


def test_sustained_clipping_raises_line_clipping_after_clipping_after_s():
    signal = np.concatenate([noise(1.0), clipped(4.0, 0.05)])
    changes = feed(detector(), signal)
    (change, reported_at), = changes
    assert (change.code, change.active) == ("LINE_CLIPPING", True)
    # Dated when the window's fraction first passed the threshold: 0.2 s into 5 % clipping.
    assert change.at == pytest.approx(T0 + 1.2, abs=0.06)
    assert reported_at - change.at == pytest.approx(2.0, abs=0.03)


def test_a_brief_burst_of_clipping_raises_nothing():
    signal = np.concatenate([noise(1.0), clipped(0.1, 0.5), noise(5.0, seed=9)])
    assert feed(detector(), signal) == []


def test_clipping_below_the_fraction_raises_nothing():
    assert feed(detector(), clipped(5.0, 0.005)) == []


def test_clipping_clears_once_the_level_comes_down():
    signal = np.concatenate([clipped(4.0, 0.05), noise(3.0, seed=9)])
    changes = [c for c, _ in feed(detector(), signal)]
    assert [(c.code, c.active) for c in changes] == [("LINE_CLIPPING", True), ("LINE_CLIPPING", False)]
    # Once the 1 s window holds under 1 % clipped samples: 0.8 s after the last clip.
    assert changes[1].at == pytest.approx(T0 + 4.8, abs=0.03)


def test_a_line_stuck_at_full_scale_is_dead_not_clipping():
    changes = [c for c, _ in feed(detector(), np.concatenate([noise(0.5), const(4.0, 32767)]))]
    assert [(c.code, c.active, c.detail) for c in changes] == [("LINE_DEAD", True, "stuck at 32767")]


# --- stalled PCM (no frames at all) ---

def test_a_pcm_is_stalled_once_no_frames_came_for_stall_after_ms():
    assert not stall_check(100.0, 100.5, 500)
    assert stall_check(100.0, 100.51, 500)


def test_a_pcm_that_opened_and_never_delivered_is_stalled():
    assert stall_check(None, 101.0, 500, since_mono=100.0)


def test_with_nothing_to_measure_from_there_is_no_stall():
    assert not stall_check(None, 1e9, 500)


def test_the_stall_watch_reports_only_transitions_dated_by_the_last_frame():
    watch = StallWatch(500)
    assert watch.check(100.0, 100.2, T0 + 0.2) is None
    change = watch.check(100.0, 100.6, T0 + 0.6)
    assert (change.code, change.active, change.at) == ("LINE_DEAD", True, pytest.approx(T0))
    assert "stalled" in change.detail
    assert watch.check(100.0, 100.7, T0 + 0.7) is None
    back = watch.check(101.0, 101.05, T0 + 1.05)
    assert (back.active, back.at) == (False, pytest.approx(T0 + 1.0))


def test_resetting_the_stall_watch_ends_a_stall_in_progress():
    watch = StallWatch(500)
    watch.check(100.0, 101.0, T0)
    assert watch.reset(T0 + 1) == Change("LINE_DEAD", False, T0 + 1)
    assert watch.reset(T0 + 2) is None


# --- runs: the fast path on the blocks' sums (shared with the line's levels) ---

def test_block_stats_are_each_blocks_exact_sum_and_sum_of_squares_and_the_last_run_is_kept():
    from linetap.detect.level import block_energies, block_stats

    rng = np.random.default_rng(5)
    x = np.clip(np.rint(rng.normal(0, 1, (10 * BLOCK, 1)) * np.geomspace(1, 40000, 10 * BLOCK)[:, None]),
                -32768, 32767).astype(np.int16)
    x[:BLOCK] = -32768  # the largest sums there are
    sums, energies = block_stats(x, 10)
    blocks = x.astype(np.int64).reshape(10, BLOCK)
    assert sums == blocks.sum(axis=1).tolist() and energies == (blocks * blocks).sum(axis=1).tolist()
    assert energies == block_energies(x, 10)
    assert block_stats(x, 10) is block_stats(x, 10)  # asked twice for one run: computed once
    y = x.copy()
    assert block_stats(y, 10) == (sums, energies) and block_stats(y, 10) is not block_stats(x, 10)


@pytest.mark.parametrize("rms", [300, 3000])  # blocks' energies under 32767 ** 2, and over it
@pytest.mark.parametrize("value", [0, 5, -1, 32766, -32766, 32767, -32767, -32768])
def test_a_run_of_blocks_tells_constant_and_railed_blocks_as_their_minima_and_maxima(value, rms):
    """``feed_blocks`` on a run takes its fast path ("nothing happens here") from the blocks' sums
    and sums of squares: exactly when every block varies and none reaches +-32767 (their minima
    and maxima); otherwise it goes block by block. Either way, the changes of ``feed``."""

    class Counting(LineHealthDetector):
        fed = 0

        def feed(self, frames, t_wall):
            self.fed += 1
            return super().feed(frames, t_wall)

    base = np.clip(noise(0.2, rms=rms, seed=3), -32766, 32766)  # ten blocks of noise
    cases = [base]
    for k in range(10):
        x = base.copy()
        x[k * BLOCK:(k + 1) * BLOCK] = value  # one block of one value
        y = base.copy()
        y[k * BLOCK + 7] = value  # one sample of it
        z = base.copy()
        z[k * BLOCK:(k + 1) * BLOCK] = 0
        z[k * BLOCK + 3] = value  # one sample of it in a silent block
        cases += [x, y, z]
    for x in cases:
        blocks = x.reshape(10, BLOCK)
        fast = bool(blocks.max() < 32767 and blocks.min() > -32767
                    and (blocks.min(axis=1) < blocks.max(axis=1)).all())
        items = [type("B", (), {"frames": x[i * BLOCK:(i + 1) * BLOCK], "t_wall": T0 + i * BLOCK / RATE})()
                 for i in range(10)]
        det, one_by_one = Counting(RATE, 1), LineHealthDetector(RATE, 1)
        assert det.feed_blocks(items, x, BLOCK) == [c for b in items for c in one_by_one.feed(b.frames, b.t_wall)]
        assert (det.fed == 0) is fast
        assert det._run_value == one_by_one._run_value and det._prev is items[-1].frames
