"""The retention planner: pure decisions, one assert each."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from linetap.retention.plan import (DAY_S, LinePolicy, Policy, RecordingInfo, Space, hours_left, plan,
                                    recordings_by_age, space_needed)

NOW = 1_800_000_000.0
MB = 1024 * 1024


def rec(i: int, age_days: float, size: int = MB, *, line: str = "line1", held: bool = False,
        status: str = "complete") -> RecordingInfo:
    return RecordingInfo(i, line, NOW - age_days * DAY_S, size, held, status)


def store(n: int = 10) -> list[RecordingInfo]:
    """n recordings of 1 MB, id 1 the oldest (n days old) ... id n (1 day old)."""
    return [rec(i, n + 1 - i) for i in range(1, n + 1)]


ROOMY = Space(free_bytes=100 * MB, used_bytes=10 * MB)


def test_plenty_of_space_and_no_retention_deletes_nothing() -> None:
    assert plan(store(), ROOMY, Policy(keep_free_bytes=10 * MB), NOW).evictions == ()


def test_space_eviction_takes_the_oldest_first() -> None:
    p = plan(store(), Space(free_bytes=7 * MB, used_bytes=10 * MB), Policy(keep_free_bytes=10 * MB), NOW)
    assert p.ids == (1, 2, 3)


def test_space_eviction_frees_just_enough() -> None:
    p = plan(store(), Space(free_bytes=int(9.5 * MB), used_bytes=10 * MB), Policy(keep_free_bytes=10 * MB), NOW)
    assert p.ids == (1,)


def test_space_evictions_are_marked_space() -> None:
    p = plan(store(), Space(free_bytes=8 * MB, used_bytes=10 * MB), Policy(keep_free_bytes=10 * MB), NOW)
    assert {e.why for e in p.evictions} == {"space"}


def test_reserve_is_kept_free_on_top_of_keep_free() -> None:
    p = plan(store(), Space(free_bytes=10 * MB, used_bytes=10 * MB), Policy(keep_free_bytes=10 * MB), NOW,
             reserve_bytes=2 * MB)
    assert p.ids == (1, 2)


def test_quota_evicts_down_to_max_use() -> None:
    p = plan(store(), Space(free_bytes=100 * MB, used_bytes=10 * MB), Policy(max_use_bytes=7 * MB), NOW)
    assert p.ids == (1, 2, 3)


def test_a_recording_being_written_is_never_evicted() -> None:
    recs = [rec(1, 10, status="recording"), *store(5)[1:]]
    p = plan(recs, Space(free_bytes=0, used_bytes=5 * MB), Policy(keep_free_bytes=1 * MB), NOW)
    assert 1 not in p.ids


def test_a_held_recording_is_never_evicted() -> None:
    recs = [rec(1, 10, held=True), *store(5)[1:]]
    p = plan(recs, Space(free_bytes=0, used_bytes=5 * MB), Policy(keep_free_bytes=1 * MB), NOW)
    assert p.ids == (2,)


def test_everything_held_reports_a_shortfall_instead_of_deleting() -> None:
    recs = [rec(i, 10 - i, held=True) for i in range(1, 6)]
    p = plan(recs, Space(free_bytes=0, used_bytes=5 * MB), Policy(keep_free_bytes=2 * MB), NOW)
    assert (p.evictions, p.shortfall_bytes, p.disk_low) == ((), 2 * MB, True)


def test_everything_held_is_flagged_blocked_by_hold() -> None:
    recs = [rec(i, 10 - i, held=True) for i in range(1, 6)]
    p = plan(recs, Space(free_bytes=0, used_bytes=5 * MB), Policy(keep_free_bytes=2 * MB), NOW)
    assert p.blocked_by_hold


def test_enough_space_is_not_flagged_blocked_even_with_holds() -> None:
    recs = [rec(1, 10, held=True), *store(5)[1:]]
    p = plan(recs, Space(free_bytes=0, used_bytes=5 * MB), Policy(keep_free_bytes=1 * MB), NOW)
    assert not p.blocked_by_hold


def test_retention_deletes_what_is_older_than_retention_days() -> None:
    p = plan(store(), ROOMY, Policy(default=LinePolicy(retention_days=7)), NOW)
    assert p.ids == (1, 2, 3, 4)  # 10, 9, 8 and 7 days old


def test_retention_deletions_are_marked_retention() -> None:
    p = plan(store(), ROOMY, Policy(default=LinePolicy(retention_days=7)), NOW)
    assert {e.why for e in p.evictions} == {"retention"}


def test_retention_never_deletes_a_held_recording() -> None:
    recs = [rec(1, 30, held=True), rec(2, 1)]
    assert plan(recs, ROOMY, Policy(default=LinePolicy(retention_days=7)), NOW).ids == ()


def test_retention_zero_keeps_everything() -> None:
    assert plan([rec(1, 10_000)], ROOMY, Policy(default=LinePolicy(retention_days=0)), NOW).ids == ()


def test_retention_freed_space_counts_towards_the_space_need() -> None:
    # 4 expire (4 MB); 3 MB was needed: no extra space eviction.
    p = plan(store(), Space(free_bytes=7 * MB, used_bytes=10 * MB),
             Policy(keep_free_bytes=10 * MB, default=LinePolicy(retention_days=7)), NOW)
    assert [e.why for e in p.evictions] == ["retention"] * 4


def test_per_line_retention_override_applies_to_its_line_only() -> None:
    recs = [rec(1, 10, line="sales"), rec(2, 10, line="support")]
    pol = Policy(default=LinePolicy(retention_days=0), lines=(("sales", LinePolicy(retention_days=5)),))
    assert plan(recs, ROOMY, pol, NOW).ids == (1,)


def test_min_retention_stops_space_eviction_of_young_recordings() -> None:
    p = plan(store(), Space(free_bytes=0, used_bytes=10 * MB),
             Policy(keep_free_bytes=8 * MB, default=LinePolicy(min_retention_days=5)), NOW)
    assert p.ids == (1, 2, 3, 4, 5, 6)  # 10..5 days old; 4..1 days old are protected


def test_min_retention_conflict_in_alarm_mode_reports_a_shortfall() -> None:
    p = plan(store(), Space(free_bytes=0, used_bytes=10 * MB),
             Policy(keep_free_bytes=8 * MB, default=LinePolicy(min_retention_days=5)), NOW)
    assert (p.shortfall_bytes, p.blocked_by_min_retention) == (2 * MB, True)


def test_min_retention_conflict_in_evict_mode_evicts_the_oldest_protected() -> None:
    p = plan(store(), Space(free_bytes=0, used_bytes=10 * MB),
             Policy(keep_free_bytes=8 * MB, default=LinePolicy(min_retention_days=5),
                    on_min_retention_conflict="evict"), NOW)
    assert p.overrode_min_retention == (7, 8)


def test_evict_mode_prefers_unprotected_recordings_of_other_lines() -> None:
    recs = [rec(1, 3, line="a"), rec(2, 2, line="b")]
    pol = Policy(keep_free_bytes=1 * MB, lines=(("a", LinePolicy(min_retention_days=5)),),
                 on_min_retention_conflict="evict")
    assert plan(recs, Space(free_bytes=0, used_bytes=2 * MB), pol, NOW).ids == (2,)


def test_per_line_min_retention_override_protects_its_line_only() -> None:
    recs = [rec(1, 2, line="legal"), rec(2, 1, line="shop")]
    pol = Policy(keep_free_bytes=1 * MB, lines=(("legal", LinePolicy(min_retention_days=30)),))
    assert plan(recs, Space(free_bytes=0, used_bytes=2 * MB), pol, NOW).ids == (2,)


def test_min_retention_above_retention_is_capped_at_retention() -> None:
    assert LinePolicy(retention_days=7, min_retention_days=30).effective() == LinePolicy(7, 7)


def test_evictions_come_out_oldest_first_across_reasons() -> None:
    recs = [rec(1, 20, line="shop"), rec(2, 10, line="legal"), rec(3, 5, line="shop")]
    pol = Policy(keep_free_bytes=2 * MB, lines=(("legal", LinePolicy(retention_days=7)),))
    assert plan(recs, Space(free_bytes=0, used_bytes=3 * MB), pol, NOW).ids == (1, 2)


def test_planner_stops_reading_once_the_plan_is_decided() -> None:
    read: list[int] = []

    def lazily() -> object:
        for r in store(1000):
            read.append(r.id)
            yield r

    plan(lazily(), Space(free_bytes=8 * MB, used_bytes=1000 * MB), Policy(keep_free_bytes=10 * MB), NOW)
    assert len(read) <= 3


def test_space_needed_is_zero_when_keep_free_is_met() -> None:
    assert space_needed(Space(free_bytes=10 * MB, used_bytes=0), Policy(keep_free_bytes=10 * MB)) == 0


def test_policy_from_config_merges_line_overrides_with_storage_defaults() -> None:
    storage = SimpleNamespace(keep_free_mb=512, max_use_mb=0, retention_days=90, min_retention_days=7,
                              on_min_retention_conflict="alarm")
    lines = [SimpleNamespace(name="a", retention_days=None, min_retention_days=30),
             SimpleNamespace(name="b", retention_days=10, min_retention_days=None)]
    pol = Policy.from_config(storage, lines)
    assert (pol.for_line("a"), pol.for_line("b"), pol.for_line("zz")) == \
        (LinePolicy(90, 30), LinePolicy(10, 7), LinePolicy(90, 7))


def test_recordings_by_age_sorts_by_start_then_id() -> None:
    assert [r.id for r in recordings_by_age([rec(2, 1), rec(1, 1), rec(3, 5)])] == [3, 1, 2]


def test_hours_left_counts_free_space_above_keep_free_and_evictable_bytes() -> None:
    left = hours_left(free_bytes=20 * MB, used_bytes=0, evictable_bytes=26 * MB, rate_bytes_per_s=36 * MB / 3600,
                      policy=Policy(keep_free_bytes=10 * MB))
    assert left == pytest.approx(1.0)


def test_hours_left_respects_the_quota() -> None:
    left = hours_left(free_bytes=1000 * MB, used_bytes=30 * MB, evictable_bytes=0, rate_bytes_per_s=6 * MB / 3600,
                      policy=Policy(max_use_bytes=36 * MB))
    assert left == pytest.approx(1.0)


def test_hours_left_is_unknown_before_anything_was_recorded() -> None:
    assert hours_left(free_bytes=MB, used_bytes=0, evictable_bytes=0, rate_bytes_per_s=None, policy=Policy()) is None


def test_planner_stops_reading_where_min_retention_protects_every_line() -> None:
    read: list[int] = []

    def lazily() -> object:
        for r in store(1000):  # ages 1000 .. 1 days
            read.append(r.id)
            yield r

    p = plan(lazily(), Space(free_bytes=0, used_bytes=1000 * MB),
             Policy(keep_free_bytes=2000 * MB, default=LinePolicy(min_retention_days=1500)), NOW)
    assert (len(read), p.blocked_by_min_retention) == (1, True)


# --- [archive]: archived recordings go first; with required, unarchived ones never ----------


def archived_store(archived_ids: set[int]) -> list[RecordingInfo]:
    return [RecordingInfo(r.id, r.line, r.started_at, r.bytes, r.held, r.status, archived=r.id in archived_ids)
            for r in store()]


SHORT_3MB = Space(free_bytes=7 * MB, used_bytes=10 * MB)


def test_space_eviction_takes_archived_recordings_before_older_unarchived_ones() -> None:
    p = plan(archived_store({4, 5, 6, 7}), SHORT_3MB, Policy(keep_free_bytes=10 * MB), NOW)
    assert p.ids == (4, 5, 6)


def test_without_enough_archived_the_oldest_unarchived_go_too() -> None:
    p = plan(archived_store({5}), SHORT_3MB, Policy(keep_free_bytes=10 * MB), NOW)
    assert p.ids == (1, 2, 5)


def test_archive_required_never_evicts_an_unarchived_recording() -> None:
    p = plan(archived_store({5}), SHORT_3MB, Policy(keep_free_bytes=10 * MB, archive_required=True), NOW)
    assert (p.ids, p.shortfall_bytes, p.blocked_by_archive) == ((5,), 2 * MB, True)


def test_archive_required_still_lets_retention_expire_unarchived_recordings() -> None:
    policy = Policy(default=LinePolicy(retention_days=9), archive_required=True)
    assert plan(archived_store(set()), ROOMY, policy, NOW).ids == (1, 2)


def test_without_an_archive_nothing_changes() -> None:
    assert plan(store(), SHORT_3MB, Policy(keep_free_bytes=10 * MB, archive_required=True), NOW).ids == (1, 2, 3)
