"""Guarded destructive changes: a typo or a wrong clock cannot delete the recordings in one sweep.

The pure decisions (retention/plan.py) with exact tests, then the sweeper on real files and a
real index: a config change that would delete a mass of recordings keeps the previous limits
until ``storage.confirm_deletion`` covers it, retention waits for the clock, space eviction goes
on and says when it deleted a mass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from linetap.clock import FakeClock
from linetap.config import StorageConfig
from linetap.evidence.finalize import finalize_recording
from linetap.index.db import Index
from linetap.retention.plan import (DAY_S, JUMP_S, SETTLE_S, LinePolicy, Policy, RecordingInfo, Space,
                                    change_impact, clock_jump_s, confirmed, is_mass, policy_changes,
                                    policy_from_json, policy_to_json, refusal, retention_wait,
                                    without_retention)
from linetap.retention.sweeper import APPLIED_POLICY, Sweeper
from linetap.store.recordings import Recording

MB = 1024 * 1024
RATE = 8000
NOW = 1_795_000_000.0


# --- pure decisions -----------------------------------------------------------------------------

def test_ten_percent_and_ten_recordings_at_once_is_still_routine():
    assert (is_mass(10, 50), is_mass(10, 100), is_mass(11, 100), is_mass(11, 110), is_mass(11, 109)) == \
        (False, False, True, False, True)


def test_a_confirmation_covers_as_many_recordings_as_it_says_and_no_more():
    assert (confirmed(50, 50), confirmed(50, 49), confirmed(50, 5000), confirmed(1, 0)) == (True, False, True, False)


def test_the_refusal_names_the_key_and_the_value_that_allows_it():
    assert refusal("retention", 812, 1000) == ("retention would delete 812 of 1000 recordings at once; if that is "
                                               "intended, set storage.confirm_deletion = 812 in linetap.toml")


def day_old(n: int, days: float, line: str = "line1", start_id: int = 1) -> list[RecordingInfo]:
    return [RecordingInfo(start_id + i, line, NOW - days * DAY_S + i, 1 * MB, False, "complete") for i in range(n)]


def test_a_change_is_judged_by_what_it_deletes_that_the_old_policy_would_not():
    rows = day_old(5, 40) + day_old(20, 10, start_id=6)
    old = Policy(default=LinePolicy(retention_days=30))
    new = Policy(default=LinePolicy(retention_days=7))
    # The 5 past 30 days go either way; the change adds the 20 past 7 days.
    assert change_impact(rows, Space(10**12, 25 * MB), old, new, NOW) == tuple(range(6, 26))


def test_raising_the_floor_is_judged_by_the_space_it_makes_eviction_free():
    rows = day_old(100, 10)
    old = Policy(keep_free_bytes=100 * MB)
    new = Policy(keep_free_bytes=10_000_000 * MB)  # keep_free_mb = 10000000: a typo
    assert len(change_impact(rows, Space(500 * MB, 100 * MB), old, new, NOW)) == 100


def test_policy_changes_are_named_in_the_configs_words():
    old = Policy(keep_free_bytes=512 * MB, default=LinePolicy(90, 0), lines=(("sales", LinePolicy(90, 0)),))
    new = Policy(keep_free_bytes=1024 * MB, max_use_bytes=100 * MB, default=LinePolicy(90, 0),
                 lines=(("sales", LinePolicy(1, 0)),))
    assert policy_changes(old, new) == ("storage.keep_free_mb 512 -> 1024", "storage.max_use_mb 0 -> 100",
                                        "line sales retention_days 90 -> 1")


def test_a_policy_survives_the_index_as_text():
    p = Policy(5 * MB, 6 * MB, LinePolicy(30, 7), (("a", LinePolicy(2, 0)),), "evict")
    assert policy_from_json(policy_to_json(p)) == p


def test_retention_waits_for_an_unsynchronised_clock_but_not_for_an_unknown_one():
    assert retention_wait(synced=False, jumped_s=None, since_jump_s=None) == "the clock is not synchronised"
    assert retention_wait(synced=None, jumped_s=None, since_jump_s=None) is None
    assert retention_wait(synced=True, jumped_s=None, since_jump_s=None) is None


def test_retention_waits_an_hour_after_the_clock_stepped():
    assert retention_wait(synced=True, jumped_s=86400.0 * 365, since_jump_s=SETTLE_S - 1) == \
        f"the clock stepped +31536000 s {SETTLE_S - 1:.0f} s ago"
    assert retention_wait(synced=True, jumped_s=86400.0 * 365, since_jump_s=SETTLE_S) is None


def test_a_clock_step_is_the_wall_clock_against_the_monotonic_one():
    assert clock_jump_s(NOW + 10 + 3600, 110.0, NOW, 100.0) == 3600.0
    assert clock_jump_s(NOW + 10, 110.0, NOW, 100.0) == 0.0


def test_without_retention_only_the_space_rules_remain():
    p = Policy(7, 8, LinePolicy(30, 40), (("a", LinePolicy(2, 1)),), "evict")
    assert without_retention(p) == Policy(7, 8, LinePolicy(0, 30), (("a", LinePolicy(0, 1)),), "evict")


# --- the sweeper, on real files ----------------------------------------------------------------

class SteppingClock(FakeClock):
    """A fake clock whose wall time can be stepped alone, as NTP or an operator steps it."""

    def step_wall(self, seconds: float) -> None:
        with self._lock:
            self._wall += seconds


@pytest.fixture
def clock() -> SteppingClock:
    return SteppingClock(wall=NOW)


class Space_:
    def __init__(self, free_bytes: int) -> None:
        self.free = free_bytes

    def free_bytes(self) -> int:
        return self.free


def calls(index: Index, data_dir: Path, clock: FakeClock, n: int, *, age_days: float) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        rec = Recording(data_dir, index, line="line1", codec="wav", rate=RATE, channels=1,
                        started_at=clock.wall() - age_days * DAY_S + i * 60, sync_interval_s=0.5)
        rec.write(np.zeros((RATE // 10, 1), dtype=np.int16))
        row = rec.finish("vox_timeout")
        finalize_recording(index, data_dir, row, StorageConfig(codec="wav"), clock=clock)
        rows.append(row)
    return rows


def count(index: Index) -> int:
    return len(index.calls())


def sweeper(index: Index, data_dir: Path, clock: FakeClock, retention_days: int, *, confirm: int = 0,
            synced: bool | None = None, free_bytes: int = 10**12) -> Sweeper:
    return Sweeper(index, data_dir, Policy(default=LinePolicy(retention_days=retention_days)), clock=clock,
                   space=Space_(free_bytes), confirm_deletion=confirm, clock_synced=lambda: synced)


def test_a_shortened_retention_keeps_the_old_limits_until_confirmed(index, data_dir, clock):
    calls(index, data_dir, clock, 30, age_days=10)
    sweeper(index, data_dir, clock, 90).sweep()  # the applied policy: 90 days
    res = sweeper(index, data_dir, clock, 1).sweep()  # retention_days = 1: all 30 would go
    assert (count(index), res.deleted) == (30, ())
    assert res.held_back.startswith("the config change (storage retention_days 90 -> 1) would delete 30 of 30 "
                                    "recordings at once; if that is intended, set storage.confirm_deletion = 30")
    assert index.get_meta(APPLIED_POLICY) == policy_to_json(Policy(default=LinePolicy(retention_days=90)))
    res = sweeper(index, data_dir, clock, 1, confirm=30).sweep()
    assert (count(index), len(res.deleted), res.held_back) == (0, 30, "")
    assert index.get_meta(APPLIED_POLICY) == policy_to_json(Policy(default=LinePolicy(retention_days=1)))


def test_a_change_that_deletes_little_is_applied_at_once(index, data_dir, clock):
    calls(index, data_dir, clock, 30, age_days=10)
    calls(index, data_dir, clock, 3, age_days=100)
    sweeper(index, data_dir, clock, 365).sweep()
    res = sweeper(index, data_dir, clock, 90).sweep()
    assert (len(res.deleted), res.held_back, count(index)) == (3, "", 30)


def test_the_first_sweep_of_a_box_applies_its_config(index, data_dir, clock):
    calls(index, data_dir, clock, 30, age_days=10)
    s = sweeper(index, data_dir, clock, 1, confirm=30)  # nothing applied before: no change to judge
    assert (len(s.sweep().deleted), s.refused_change) == (30, "")
    assert index.get_meta(APPLIED_POLICY) == policy_to_json(Policy(default=LinePolicy(retention_days=1)))


def test_retention_waits_while_the_clock_is_unsynchronised_and_space_eviction_does_not(index, data_dir, clock):
    calls(index, data_dir, clock, 5, age_days=10)
    s = sweeper(index, data_dir, clock, 1, synced=False, confirm=5)
    res = s.sweep()
    assert (res.deleted, count(index)) == ((), 5)
    assert res.held_back == "5 recording(s) past their retention are kept while the clock is not synchronised"
    s.space = Space_(0)
    s.policy = s.active = Policy(keep_free_bytes=10**12, default=LinePolicy(retention_days=1))
    res = s.sweep()  # the disk is full: all 5 go, for space, while retention still waits
    assert (count(index), {e.why for e in res.plan.evictions}) == (0, {"space"})
    assert res.held_back.endswith("while the clock is not synchronised")


def test_retention_waits_an_hour_after_the_clock_stepped_a_year_ahead(index, data_dir, clock):
    calls(index, data_dir, clock, 5, age_days=10)
    s = sweeper(index, data_dir, clock, 30, synced=True, confirm=5)
    assert s.sweep().deleted == ()
    clock.step_wall(365 * DAY_S)  # an unauthenticated NTP answer
    clock.advance(10)
    res = s.sweep()
    assert (res.deleted, count(index)) == ((), 5)
    assert res.held_back.startswith("5 recording(s) past their retention are kept while the clock stepped +31536000 s")
    clock.advance(SETTLE_S)
    assert len(s.sweep().deleted) == 5  # the date stayed: after an hour it is taken as right


def test_retention_that_would_delete_a_mass_at_once_waits_for_confirmation(index, data_dir, clock):
    calls(index, data_dir, clock, 20, age_days=40)
    calls(index, data_dir, clock, 20, age_days=1)
    res = sweeper(index, data_dir, clock, 30, synced=True).sweep()
    assert (res.deleted, count(index)) == ((), 40)
    assert res.held_back.startswith("retention would delete 20 of 40 recordings at once")
    assert len(sweeper(index, data_dir, clock, 30, synced=True, confirm=20).sweep().deleted) == 20


def test_a_mass_eviction_for_space_goes_on_and_says_so(index, data_dir, clock):
    calls(index, data_dir, clock, 30, age_days=1)
    s = Sweeper(index, data_dir, Policy(keep_free_bytes=10**12), clock=clock, space=Space_(0))
    res = s.sweep()
    assert (len(res.deleted), res.mass_eviction) == (30, "deleted 30 of 30 recordings at once to free space")


@pytest.mark.parametrize("step_s", [JUMP_S - 1, -(JUMP_S - 1)])
def test_a_small_correction_is_not_a_step(index, data_dir, clock, step_s):
    calls(index, data_dir, clock, 5, age_days=10)
    s = sweeper(index, data_dir, clock, 1, synced=True, confirm=5)
    s.sweep()  # the anchor (retention deletes the 5 now)
    calls(index, data_dir, clock, 5, age_days=10)
    clock.step_wall(step_s)
    clock.advance(10)
    assert len(s.sweep().deleted) == 5
