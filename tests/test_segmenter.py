"""Call segmentation, exactly: the pure state machines of calls/segmenter.py, frame by frame.

Blocks are 20 ms (160 frames at 8 kHz), as the capture delivers them. Every expected
frame number below is worked out from the config in the comment beside it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from linetap.calls.line import LineCalls
from linetap.calls.segmenter import ContinuousSegmenter, End, OffhookSegmenter, Start, VoxSegmenter
from linetap.capture import Block
from linetap.config import LineConfig

RATE = 8000
N = 160  # frames per 20 ms block
LOUD, MID, QUIET = -20.0, -40.0, -60.0  # above start (-35); between stop (-45) and start; below stop

LINE = LineConfig(name="l", pcm="null", rate=RATE, vox_start_dbfs=-35.0, vox_stop_dbfs=-45.0,
                  vox_attack_ms=60,     # 480 frames: 3 blocks
                  vox_hang_s=1.0,       # 8000 frames: 50 blocks
                  preroll_s=0.5,        # 4000 frames: 25 blocks
                  min_call_s=2.0,       # 16000 frames: 100 blocks
                  max_call_s=4 * 3600.0, offhook_debounce_ms=60)


def line(**changes) -> LineConfig:
    return dataclasses.replace(LINE, **changes)


def run(seg, inputs, first_block: int = 0) -> list[tuple[int, object]]:
    """Step ``seg`` once per block; (block number, action) for every action it answers."""
    out = []
    for k, value in enumerate(inputs, start=first_block):
        out += [(k, a) for a in seg.step(value, k * N, N)]
    return out


def levels(*spans: tuple[float, int]) -> list[float]:
    return [level for level, blocks in spans for _ in range(blocks)]


# --- VOX ----------------------------------------------------------------------

def test_vox_ignores_a_level_at_or_below_the_start_threshold():
    assert run(VoxSegmenter(LINE), levels((-35.0, 500), (MID, 500))) == []


def test_vox_starts_once_the_level_has_been_above_start_for_the_attack_time_with_the_preroll_before():
    # Loud from block 100 (frame 16000); the third loud block (102) completes 480 frames of attack.
    acts = run(VoxSegmenter(LINE), levels((QUIET, 100), (LOUD, 10)))
    assert acts == [(102, Start(16000 - 4000))]


def test_vox_preroll_is_clipped_at_the_start_of_the_stream():
    acts = run(VoxSegmenter(LINE), levels((QUIET, 10), (LOUD, 10)))
    assert acts == [(12, Start(0))]


def test_vox_a_burst_shorter_than_the_attack_starts_nothing():
    seg = VoxSegmenter(LINE)
    # Two loud blocks (320 frames < 480), quiet, two loud again: the attack restarts each time.
    assert run(seg, levels((QUIET, 100), (LOUD, 2), (QUIET, 1), (LOUD, 2), (QUIET, 100))) == []
    assert not seg.in_call


def test_vox_with_no_attack_starts_on_the_first_loud_block():
    assert run(VoxSegmenter(line(vox_attack_ms=0)), levels((QUIET, 100), (LOUD, 1))) == [(100, Start(12000))]


def test_vox_hysteresis_a_level_between_the_thresholds_keeps_a_call_alive():
    seg = VoxSegmenter(LINE)
    acts = run(seg, levels((QUIET, 100), (LOUD, 200), (MID, 5000)))  # 100 s between the thresholds
    assert acts == [(102, Start(12000))]
    assert seg.in_call


def test_vox_the_stop_threshold_itself_counts_as_voice():
    seg = VoxSegmenter(LINE)
    assert run(seg, levels((QUIET, 100), (LOUD, 200), (-45.0, 500))) == [(102, Start(12000))]


def test_vox_ends_exactly_one_hang_time_after_the_last_block_at_or_above_stop():
    # Voice in blocks 100..299, so the last voiced frame ends at 300 * 160 = 48000;
    # the call ends at 48000 + 8000 = 56000, the end of block 349.
    acts = run(VoxSegmenter(LINE), levels((QUIET, 100), (LOUD, 200), (QUIET, 200)))
    assert acts == [(102, Start(12000)), (349, End(56000, "vox_timeout"))]


def test_vox_a_word_within_the_hang_time_restarts_it():
    acts = run(VoxSegmenter(LINE), levels((QUIET, 100), (LOUD, 200), (QUIET, 49), (MID, 1), (QUIET, 100)))
    # The mid-level block 349 ends at frame 56000: the hang restarts there, ending at 64000 (block 399).
    assert acts == [(102, Start(12000)), (399, End(64000, "vox_timeout"))]


def test_vox_a_call_with_less_voice_than_the_minimum_is_discarded():
    # Voice from onset 16000 to 31840 (99 blocks): 15840 frames < 16000.
    acts = run(VoxSegmenter(LINE), levels((QUIET, 100), (LOUD, 99), (QUIET, 100)))
    assert acts == [(102, Start(12000)), (248, End(31840 + 8000, "vox_timeout", discard=True))]


def test_vox_a_call_with_exactly_the_minimum_of_voice_is_kept():
    acts = run(VoxSegmenter(LINE), levels((QUIET, 100), (LOUD, 100), (QUIET, 100)))
    assert acts == [(102, Start(12000)), (249, End(32000 + 8000, "vox_timeout"))]


def test_vox_the_hang_and_preroll_do_not_count_towards_the_minimum():
    # 1.9 s of voice in a recording of 0.5 + 1.9 + 1.0 = 3.4 s: still not a call.
    acts = run(VoxSegmenter(LINE), levels((QUIET, 100), (LOUD, 95), (QUIET, 100)))
    assert acts[-1][1].discard


def test_vox_a_new_call_can_start_after_one_ended():
    acts = run(VoxSegmenter(LINE), levels((QUIET, 100), (LOUD, 200), (QUIET, 200), (LOUD, 10)))
    # Second onset at block 500 (frame 80000), started at block 502, pre-roll 4000 frames.
    assert acts[2:] == [(502, Start(76000))]


def test_vox_max_length_splits_a_long_call_into_contiguous_continuations():
    seg = VoxSegmenter(line(max_call_s=3.0))  # 24000 frames per recording
    acts = run(seg, levels((QUIET, 100), (LOUD, 500), (QUIET, 100)))
    # Start at 12000; split when a recording reaches 24000 frames: at 36000, 60000, 84000.
    assert acts == [
        (102, Start(12000)),
        (224, End(36000, "max_length")), (224, Start(36000, continuation=True)),
        (374, End(60000, "max_length")), (374, Start(60000, continuation=True)),
        (524, End(84000, "max_length")), (524, Start(84000, continuation=True)),
        # Voice ends at 600 * 160 = 96000; the last part ends one hang later and is kept
        # although it is short: it continues a call.
        (649, End(104000, "vox_timeout")),
    ]


def test_vox_reset_forgets_a_call_and_a_pending_onset():
    seg = VoxSegmenter(LINE)
    run(seg, levels((QUIET, 100), (LOUD, 2)))
    seg.reset()
    # The two loud blocks before the reset no longer count towards the attack.
    assert run(seg, levels((LOUD, 2)), first_block=102) == []


# --- off-hook -----------------------------------------------------------------

def test_offhook_starts_after_the_debounce_with_the_preroll_before_the_hook_went_off():
    # Off-hook from block 100 (frame 16000); stable after 480 frames: block 102.
    acts = run(OffhookSegmenter(LINE), [False] * 100 + [True] * 10)
    assert acts == [(102, Start(16000 - 4000))]


def test_offhook_a_bounce_shorter_than_the_debounce_starts_nothing():
    seg = OffhookSegmenter(LINE)
    assert run(seg, [False] * 100 + [True] * 2 + [False] * 10 + [True, False] * 20) == []


def test_offhook_on_hook_ends_the_call_at_the_edge_once_debounced():
    # Off-hook blocks 100..399 (48000 frames held); on-hook from block 400, stable at block 402:
    # decided then, but the call ends where the phone was put down (block 400's first frame).
    acts = run(OffhookSegmenter(LINE), [False] * 100 + [True] * 300 + [False] * 10)
    assert acts == [(102, Start(12000)), (402, End(400 * N, "onhook"))]


def test_offhook_a_bounce_during_the_call_does_not_end_it():
    acts = run(OffhookSegmenter(LINE), [False] * 100 + [True] * 200 + [False] * 2 + [True] * 200)
    assert acts == [(102, Start(12000))]


def test_offhook_a_call_held_less_than_the_minimum_is_discarded():
    # Held from 16000 to 31840 (99 blocks): less than 16000 frames.
    acts = run(OffhookSegmenter(LINE), [False] * 100 + [True] * 99 + [False] * 10)
    assert acts == [(102, Start(12000)), (201, End(199 * N, "onhook", discard=True))]
    acts = run(OffhookSegmenter(LINE), [False] * 100 + [True] * 100 + [False] * 10)
    assert acts[-1] == (202, End(200 * N, "onhook"))


def test_offhook_edges_stamped_inside_a_block_start_and_end_the_call_at_their_frame():
    seg = OffhookSegmenter(LINE)  # debounce 480 frames, pre-roll 4000
    acts = []
    for k in range(400):
        s = k * N
        # Off-hook at frame 16037 (inside block 100), on-hook at frame 56111 (inside block 350).
        offhook, since = (True, 16037) if 16037 < s + N <= 56111 else (False, 56111 if s + N > 56111 else None)
        acts += [(k, a) for a in seg.step(offhook, s, N, since)]
    # Stable 480 frames after each edge: decided at blocks 103 and 353, dated at the edges.
    assert acts == [(103, Start(16037 - 4000)), (353, End(56111, "onhook"))]


def test_offhook_an_on_hook_edge_being_debounced_is_the_pending_end():
    seg = OffhookSegmenter(LINE)
    run(seg, [False] * 100 + [True] * 200)
    assert seg.pending_end is None
    seg.step(False, 300 * N, N, since_frame=300 * N + 17)
    assert seg.pending_end == 300 * N + 17
    seg.step(True, 301 * N, N, since_frame=301 * N + 5)  # a bounce: the call goes on
    assert seg.pending_end is None and seg.in_call


def test_an_edge_stamped_before_the_stream_or_after_the_block_is_clamped_to_it():
    seg = OffhookSegmenter(line(offhook_debounce_ms=0, preroll_s=0))
    assert seg.step(True, 0, N, since_frame=-500) == [Start(0)]
    seg2 = OffhookSegmenter(line(offhook_debounce_ms=0, preroll_s=0))
    assert seg2.step(True, 0, N, since_frame=10 * N) == []  # clamped to the block's end: not yet held


def test_offhook_max_length_splits_into_continuations():
    acts = run(OffhookSegmenter(line(max_call_s=3.0)), [False] * 100 + [True] * 400)
    assert acts == [(102, Start(12000)),
                    (224, End(36000, "max_length")), (224, Start(36000, continuation=True)),
                    (374, End(60000, "max_length")), (374, Start(60000, continuation=True))]


def test_offhook_with_no_debounce_follows_every_block():
    acts = run(OffhookSegmenter(line(offhook_debounce_ms=0, preroll_s=0)), [False, True] + [True] * 200 + [False])
    assert acts == [(1, Start(160)), (202, End(202 * N, "onhook"))]


# --- continuous -----------------------------------------------------------------

def continuous_blocks(seg, t0: float, blocks: int) -> list[tuple[int, object]]:
    out = []
    for k in range(blocks):
        out += [(k, a) for a in seg.step(t0 + k * N / RATE, k * N, N)]
    return out


def test_continuous_records_from_the_first_block_and_cuts_on_wall_clock_multiples():
    seg = ContinuousSegmenter(line(trigger="continuous", segment_s=10.0))
    # First frame at wall 1000.013 s: boundaries at 1010 (9.987 s in = frame 79896) and 1020 (frame 159896).
    acts = continuous_blocks(seg, 1000.013, 1000)
    assert acts == [(0, Start(0)),
                    (499, End(79896, "max_length")), (499, Start(79896, continuation=True)),
                    (999, End(159896, "max_length")), (999, Start(159896, continuation=True))]


def test_continuous_a_boundary_on_a_block_edge_cuts_at_that_edge():
    seg = ContinuousSegmenter(line(trigger="continuous", segment_s=10.0))
    acts = continuous_blocks(seg, 1000.5, 600)  # 1010 is 9.5 s = 76000 frames in, a block edge
    cuts = [a.frame for _, a in acts if isinstance(a, End)]
    assert cuts == [76000]


def test_continuous_after_a_reset_starts_again_at_once():
    seg = ContinuousSegmenter(line(trigger="continuous", segment_s=10.0))
    continuous_blocks(seg, 1000.0, 10)
    seg.reset()
    assert seg.step(2000.0, 0, N) == [Start(0)]


# --- the pre-roll through LineCalls -------------------------------------------------

class CountingRecording:
    def __init__(self) -> None:
        self.id, self.frames, self.caller_number, self.caller_name, self.dtmf = 1, 0, None, None, ""

    def write(self, frames: np.ndarray) -> None:
        self.frames += len(frames)

    def finish(self, end_reason: str, status: str = "complete") -> dict:
        return {"id": self.id, "duration_s": self.frames / RATE}

    def discard(self) -> None:
        pass


def test_the_recording_holds_every_frame_from_the_start_the_segmenter_chose():
    opened: list[tuple[CountingRecording, float]] = []

    def open_recording(_line, started_at):
        opened.append((CountingRecording(), started_at))
        return opened[-1][0]

    calls = LineCalls(LINE, open_recording=open_recording)
    quiet = np.full((N, 1), 10, dtype=np.int16)
    loud = np.full((N, 1), 8000, dtype=np.int16)
    t0 = 1_795_000_000.0
    for k in range(103):
        calls.on_block(Block("l", quiet if k < 100 else loud, k * N, t0 + k * N / RATE, RATE))
    (rec, started_at), = opened
    # The pre-roll reaches back from the onset (block 100), not from the block that confirmed it (102).
    # Started at frame 12000 (see the VOX tests above): through block 102 that is 103 * 160 - 12000 frames.
    assert started_at == pytest.approx(t0 + 12000 / RATE)
    assert rec.frames == 103 * N - 12000


def _state(seg: VoxSegmenter) -> tuple:
    return (seg.in_call, seg._loud_since, seg._rec_start, seg._onset, seg._last_voice_end)


@pytest.mark.parametrize("run_levels, skipped", [
    ([LOUD] * 10, True),                          # all voiced: the hang restarts at the run's end
    ([LOUD, QUIET, MID, QUIET, QUIET] * 2, True),  # a pause: the hang restarts after block 7
    ([QUIET] * 10, True),                         # 10 quiet blocks, well inside the 50-block hang
    ([LOUD] * 3 + [QUIET] * 7, True),
])
def test_vox_skip_in_a_call_leaves_the_state_that_stepping_each_block_leaves(run_levels, skipped):
    lead = levels((QUIET, 10), (LOUD, 20))  # a call from block 12, last voice at block 29
    a, b = VoxSegmenter(LINE), VoxSegmenter(LINE)
    run(a, lead)
    run(b, lead)
    start = len(lead) * N
    assert a.skip(run_levels, start, len(run_levels) * N, N) is skipped
    assert run(b, run_levels, first_block=len(lead)) == []
    assert _state(a) == _state(b)


def test_vox_skip_in_a_call_declines_a_run_that_may_reach_the_hang_and_changes_nothing():
    lead = levels((QUIET, 10), (LOUD, 20), (QUIET, 45))  # 45 of the 50 hang blocks gone
    seg = VoxSegmenter(LINE)
    run(seg, lead)
    before = _state(seg)
    assert not seg.skip([QUIET] * 10, len(lead) * N, 10 * N, N)  # block 79 would end the call
    assert _state(seg) == before
    assert not seg.skip([LOUD, QUIET] * 5, len(lead) * N, 10 * N, 0)  # blocks of unknown sizes
    assert _state(seg) == before
    # Stepped one by one it ends exactly one hang after the last voice (frame 30 * 160 + 8000).
    assert run(seg, [QUIET] * 10, first_block=len(lead)) == [(79, End(80 * N, "vox_timeout", discard=True))]


def test_a_threshold_on_sums_of_squares_answers_as_the_level_would_at_its_edge():
    """``Threshold``: no logarithm unless a block's sum of squares is within a millionth of the
    threshold's; right at it, one unit of the last place either side, and far off, the answer
    is the one ``dbfs`` of the block gives."""
    from linetap.detect.level import Threshold, energies_dbfs

    for value in (-35.0, -45.0, -57.3, -95.0):
        t = Threshold(value, N)
        edge = N * 32768.0 ** 2 * 10 ** (value / 10)
        sums = [edge * f for f in (1e-3, 1 - 2e-6, 1 - 1e-9, 1, 1 + 1e-9, 1 + 2e-6, 1e3)]
        sums += [np.nextafter(edge, 0), np.nextafter(edge, np.inf), 0.0]
        sums += [e for e in np.arange(-40, 40) * 1.0 + round(edge)]  # whole sums, as int16 blocks give
        levels = energies_dbfs(sums, N)
        assert [t.above(e) for e in sums] == [lv > value for lv in levels]
        assert [t.at_or_above(e) for e in sums] == [lv >= value for lv in levels]
        for k in range(len(sums)):
            part = sums[k:k + 5]
            assert t.any_above(part) == any(lv > value for lv in levels[k:k + 5])
            assert t.all_at_or_above(part) == all(lv >= value for lv in levels[k:k + 5])


@pytest.mark.parametrize("seed", range(4))
def test_vox_skip_on_sums_of_squares_steps_as_on_levels(seed):
    """The pipeline's runs are skipped on the blocks' sums of squares (no logarithm each): the
    same answers and the same state as on their levels, with blocks close to both thresholds."""
    from linetap.detect.level import block_dbfs, block_energies

    rng = np.random.default_rng(seed)
    # Noise blocks at levels drawn around the start and stop thresholds (and far from them).
    targets = rng.choice([-70.0, -45.2, -45.0, -44.9, -35.1, -35.0, -34.9, -20.0], size=3000,
                         p=[0.3, 0.1, 0.05, 0.1, 0.1, 0.05, 0.1, 0.2])
    x = rng.standard_normal((3000, N))
    x *= 32768.0 * 10 ** (targets[:, None] / 20) / np.sqrt((x ** 2).mean(axis=1, keepdims=True))
    audio = np.clip(np.round(x), -32768, 32767).astype(np.int16).reshape(-1, 1)
    a, b = VoxSegmenter(LINE), VoxSegmenter(LINE)
    block, answers = 0, []
    while block < 3000:
        k = int(rng.integers(2, 11))
        frames = audio[block * N:(block + k) * N]
        k = len(frames) // N
        lv, en = block_dbfs(frames, k), block_energies(frames, k)
        on_levels = a.skip(lv, block * N, k * N, N)
        assert b.skip(en, block * N, k * N, N, size=N) is on_levels
        if not on_levels:
            for i in range(k):
                assert a.step(lv[i], (block + i) * N, N) == b.step(lv[i], (block + i) * N, N)
        answers.append(on_levels)
        assert _state(a) == _state(b)
        block += k
    assert True in answers and False in answers
