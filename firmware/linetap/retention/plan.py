"""The retention planner: which recordings to delete now, and why. Pure: values in, values out.

Rules, in order of precedence:

1. Never a recording still being written (``status = "recording"``), never one on legal hold.
2. ``retention_days`` (per line, else ``[storage]``): a recording older than that is deleted
   (why ``retention``), whatever the free space. 0 = keep until space is needed.
3. Space: keep ``keep_free_bytes`` (+ a reserve for the writing that happens before the next
   sweep) free, and the recordings under ``max_use_bytes`` if set, by deleting the oldest
   recordings first (why ``space``).
4. ``min_retention_days``: space eviction may not delete anything younger. If space runs out
   anyway, ``on_min_retention_conflict`` decides: ``"alarm"`` (default) keeps the young
   recordings and reports a shortfall (the recorder raises DISK_LOW; new audio may be lost
   if the disk really fills), ``"evict"`` deletes them oldest first and reports which (the
   policy is broken, loudly, to keep recording). Which is right depends on whether the
   *newest* or the *already recorded* calls matter more to the owner.

A line's ``min_retention_days`` above its ``retention_days`` is capped at the latter:
retention is an explicit instruction to delete, min retention only protects from eviction.

The planner reads ``recordings`` oldest first and stops as soon as nothing further can
change the plan, so a caller can feed it lazily from the index (see the sweeper).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Iterable

DAY_S = 86400.0
WHY_SPACE = "space"
WHY_RETENTION = "retention"
WHY_REQUEST = "request"
CONFLICT_MODES = ("alarm", "evict")


@dataclass(frozen=True, slots=True)
class RecordingInfo:
    id: int
    line: str
    started_at: float  # epoch seconds, UTC
    bytes: int
    held: bool
    status: str  # recording | complete | recovered
    archived: bool | None = None  # None: no archive configured; else whether its copy is verified


@dataclass(frozen=True, slots=True)
class LinePolicy:
    retention_days: int = 0  # 0 = no age limit
    min_retention_days: int = 0  # 0 = no protection from space eviction

    def effective(self) -> LinePolicy:
        if self.retention_days and self.min_retention_days > self.retention_days:
            return LinePolicy(self.retention_days, self.retention_days)
        return self


@dataclass(frozen=True, slots=True)
class Policy:
    keep_free_bytes: int = 0
    max_use_bytes: int = 0  # 0 = no quota
    default: LinePolicy = field(default_factory=LinePolicy)
    lines: tuple[tuple[str, LinePolicy], ...] = ()  # per-line overrides, already merged with default
    on_min_retention_conflict: str = "alarm"
    # [archive]: space eviction takes archived recordings first (oldest first), then the rest;
    # with ``archive_required`` never one that is not archived (like a hold: DISK_LOW instead).
    archive_required: bool = False

    def for_line(self, line: str) -> LinePolicy:
        for name, lp in self.lines:
            if name == line:
                return lp.effective()
        return self.default.effective()

    def shortest_min_retention_days(self) -> int:
        """The smallest min_retention_days of any line (0 if some line has none)."""
        return min(lp.effective().min_retention_days for lp in (self.default, *(lp for _, lp in self.lines)))

    def shortest_retention_days(self) -> int:
        """The smallest non-zero retention of any line (0 if none): bounds what retention can expire."""
        days = [lp.effective().retention_days for lp in (self.default, *(lp for _, lp in self.lines))]
        return min((d for d in days if d > 0), default=0)

    @classmethod
    def from_config(cls, storage: object, lines: Iterable[object] = (), archive: object | None = None) -> Policy:
        """From a ``StorageConfig``, its ``LineConfig`` list (per-line overrides) and the ``ArchiveConfig``."""
        g_ret = int(getattr(storage, "retention_days", 0) or 0)
        g_min = int(getattr(storage, "min_retention_days", 0) or 0)
        per_line: list[tuple[str, LinePolicy]] = []
        for line in lines:
            ret = getattr(line, "retention_days", None)
            mn = getattr(line, "min_retention_days", None)
            per_line.append((str(getattr(line, "name")), LinePolicy(g_ret if ret is None else int(ret),
                                                                     g_min if mn is None else int(mn))))
        return cls(keep_free_bytes=int(getattr(storage, "keep_free_mb", 0)) * 1024 * 1024,
                   max_use_bytes=int(getattr(storage, "max_use_mb", 0)) * 1024 * 1024,
                   default=LinePolicy(g_ret, g_min), lines=tuple(per_line),
                   on_min_retention_conflict=str(getattr(storage, "on_min_retention_conflict", "alarm")),
                   archive_required=bool(getattr(archive, "required", False)))


@dataclass(frozen=True, slots=True)
class Space:
    free_bytes: int  # free on the file system, for this process
    used_bytes: int  # held by recordings (finished files + files being written)


@dataclass(frozen=True, slots=True)
class Eviction:
    id: int
    why: str  # space | retention
    bytes: int
    overrides_min_retention: bool = False


@dataclass(frozen=True, slots=True)
class Plan:
    evictions: tuple[Eviction, ...]
    need_bytes: int  # what space eviction had to free, after retention's deletions
    shortfall_bytes: int  # what is still missing after this plan: > 0 means DISK_LOW
    blocked_by_hold: bool = False  # short, and held recordings are what could not be deleted
    blocked_by_min_retention: bool = False  # short, and min_retention_days kept recordings
    blocked_by_archive: bool = False  # short, and [archive] required kept unarchived recordings

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(e.id for e in self.evictions)

    @property
    def freed_bytes(self) -> int:
        return sum(e.bytes for e in self.evictions)

    @property
    def disk_low(self) -> bool:
        return self.shortfall_bytes > 0

    @property
    def overrode_min_retention(self) -> tuple[int, ...]:
        return tuple(e.id for e in self.evictions if e.overrides_min_retention)


def space_needed(space: Space, policy: Policy, reserve_bytes: int = 0) -> int:
    """Bytes to free so that keep_free (+ reserve) is free and the quota (if any) is kept."""
    need = policy.keep_free_bytes + reserve_bytes - space.free_bytes
    if policy.max_use_bytes:
        need = max(need, space.used_bytes + reserve_bytes - policy.max_use_bytes)
    return max(0, need)


def plan(recordings: Iterable[RecordingInfo], space: Space, policy: Policy, now: float, *,
         reserve_bytes: int = 0) -> Plan:
    """What to delete now. ``recordings`` must come oldest first (started_at, then id)."""
    need = space_needed(space, policy, reserve_bytes)
    shortest = policy.shortest_retention_days()
    # Recordings that started after this can be expired by no line's retention.
    horizon = now - shortest * DAY_S if shortest else float("-inf")
    # In "alarm" mode, recordings that started after this are protected on every line: once
    # there, nothing further can be evicted for space either.
    floor_min = policy.shortest_min_retention_days() if policy.on_min_retention_conflict == "alarm" else 0
    protected_from = now - floor_min * DAY_S if floor_min else float("inf")
    expired: list[RecordingInfo] = []
    candidates: list[RecordingInfo] = []  # evictable for space, oldest first
    protected: list[RecordingInfo] = []  # evictable only by breaking min_retention_days
    unarchived: list[RecordingInfo] = []  # evictable for space once no archived one is left
    expired_bytes = candidate_bytes = 0
    held_seen = unarchived_kept = False
    for r in recordings:
        if r.started_at > horizon and (expired_bytes + candidate_bytes >= need or r.started_at > protected_from):
            if r.started_at > protected_from and expired_bytes + candidate_bytes < need:
                protected.append(r)  # (only its presence matters: the shortfall is blocked_by_min_retention)
            break
        if r.status == "recording":
            continue
        if r.held:
            held_seen = True
            continue
        lp = policy.for_line(r.line)
        age = now - r.started_at
        if lp.retention_days and age >= lp.retention_days * DAY_S:
            expired.append(r)
            expired_bytes += r.bytes
        elif expired_bytes + candidate_bytes >= need:
            continue
        elif lp.min_retention_days and age < lp.min_retention_days * DAY_S:
            protected.append(r)
        elif r.archived is False:
            # Not counted toward ``need``: the scan goes on looking for archived ones.
            if policy.archive_required:
                unarchived_kept = True
            else:
                unarchived.append(r)
        else:
            candidates.append(r)
            candidate_bytes += r.bytes
    chosen: list[tuple[RecordingInfo, Eviction]] = [(r, Eviction(r.id, WHY_RETENTION, r.bytes)) for r in expired]
    remaining = need - expired_bytes
    for r in (*candidates, *unarchived):
        if remaining <= 0:
            break
        chosen.append((r, Eviction(r.id, WHY_SPACE, r.bytes)))
        remaining -= r.bytes
    if remaining > 0 and policy.on_min_retention_conflict == "evict":
        for r in protected:
            if remaining <= 0:
                break
            chosen.append((r, Eviction(r.id, WHY_SPACE, r.bytes, overrides_min_retention=True)))
            remaining -= r.bytes
    chosen.sort(key=lambda item: (item[0].started_at, item[0].id))
    shortfall = max(0, remaining)
    kept_protected = len(protected) > sum(1 for _, e in chosen if e.overrides_min_retention)
    return Plan(
        evictions=tuple(e for _, e in chosen),
        need_bytes=max(0, need - expired_bytes),
        shortfall_bytes=shortfall,
        blocked_by_hold=shortfall > 0 and held_seen,
        blocked_by_min_retention=shortfall > 0 and kept_protected,
        blocked_by_archive=shortfall > 0 and unarchived_kept,
    )


def hours_left(*, free_bytes: int, used_bytes: int, evictable_bytes: int, rate_bytes_per_s: float | None,
               policy: Policy, reserve_bytes: int = 0) -> float | None:
    """Hours of recording, at the measured rate, before linetap runs out of space it may use.

    That is the space above keep_free (and under the quota), plus every recording space
    eviction may still delete (not held, not being written, not protected by
    min_retention_days unless the policy is ``evict``). In a ring buffer without holds it
    is how long a call recorded now will be kept; when it reaches 0 the recorder raises
    DISK_LOW. None while the rate is unknown (nothing recorded yet).
    """
    if not rate_bytes_per_s or rate_bytes_per_s <= 0:
        return None
    writable = free_bytes - policy.keep_free_bytes - reserve_bytes
    if policy.max_use_bytes:
        writable = min(writable, policy.max_use_bytes - used_bytes - reserve_bytes)
    return (max(0, writable) + max(0, evictable_bytes)) / rate_bytes_per_s / 3600.0


# --- guarding against mass deletion -----------------------------------------------------------
#
# A typo in linetap.toml (``keep_free_mb = 10000000``, ``retention_days = 1``) or a wrong clock (an
# unauthenticated NTP jump years ahead) would otherwise delete every unheld recording within one
# sweep (10 s). What routine operation deletes at once is small: retention removes one day's calls a
# day, space eviction what one sweep interval of writing needs. So a deletion of more than
# MASS_SHARE of the recordings, and more than MASS_FLOOR of them, at once is not routine: a
# config change that causes it waits for ``storage.confirm_deletion``, retention that would do it
# waits for the same (it is what a clock jump looks like), and space eviction, which must go on for
# the recorder to keep recording, does it but raises an alarm.

MASS_SHARE = 0.10
MASS_FLOOR = 10
JUMP_S = 300.0  # a wall-clock step against the monotonic clock larger than any NTP slew or correction
SETTLE_S = 3600.0  # after a jump, retention waits this long for the clock to be put right


def is_mass(count: int, total: int, *, share: float = MASS_SHARE, floor: int = MASS_FLOOR) -> bool:
    """Would deleting ``count`` of ``total`` recordings at once be more than routine?"""
    return count > floor and count > share * total


def confirmed(count: int, confirm_deletion: int) -> bool:
    """``storage.confirm_deletion`` covers deleting ``count`` at once (a count, not a yes: a
    confirmation written for 50 recordings does not let a later typo delete 5000)."""
    return confirm_deletion >= count


def change_impact(recordings: Iterable[RecordingInfo], space: Space, old: Policy, new: Policy, now: float, *,
                  reserve_bytes: int = 0) -> tuple[int, ...]:
    """The recordings ``new`` would delete now that ``old`` would not (what the change itself does)."""
    rows = list(recordings)
    before = set(plan(rows, space, old, now, reserve_bytes=reserve_bytes).ids)
    return tuple(i for i in plan(rows, space, new, now, reserve_bytes=reserve_bytes).ids if i not in before)


def policy_changes(old: Policy, new: Policy) -> tuple[str, ...]:
    """What changed between two policies, in the config's own words (for the message)."""
    out: list[str] = []
    if old.keep_free_bytes != new.keep_free_bytes:
        out.append(f"storage.keep_free_mb {old.keep_free_bytes // 2**20} -> {new.keep_free_bytes // 2**20}")
    if old.max_use_bytes != new.max_use_bytes:
        out.append(f"storage.max_use_mb {old.max_use_bytes // 2**20} -> {new.max_use_bytes // 2**20}")
    d_old, d_new = old.default.effective(), new.default.effective()
    for what, o, n in (("storage", d_old, d_new),
                       *((f"line {name}", old.for_line(name), lp.effective()) for name, lp in new.lines)):
        if what != "storage" and (o, n) == (d_old, d_new):
            continue  # a line following storage's limits: said once, under storage
        if o.retention_days != n.retention_days:
            out.append(f"{what} retention_days {o.retention_days} -> {n.retention_days}")
        if o.min_retention_days != n.min_retention_days:
            out.append(f"{what} min_retention_days {o.min_retention_days} -> {n.min_retention_days}")
    return tuple(out)


def refusal(what: str, count: int, total: int) -> str:
    """The one-line reason a mass deletion waits, naming the key and the value that allows it."""
    return (f"{what} would delete {count} of {total} recordings at once; if that is intended, set "
            f"storage.confirm_deletion = {count} in linetap.toml")


def clock_jump_s(wall: float, mono: float, anchor_wall: float, anchor_mono: float) -> float:
    """How far the wall clock stepped against the monotonic clock since the anchor (+: forward)."""
    return (wall - mono) - (anchor_wall - anchor_mono)


def retention_wait(*, synced: bool | None, jumped_s: float | None, since_jump_s: float | None) -> str | None:
    """Why retention (deletion by age, which trusts the wall clock) must wait now; None: it may run.

    ``synced`` False: the kernel says the clock is not NTP-synchronised (None: unknown, e.g. no
    timedatectl: not a reason to wait). ``jumped_s``/``since_jump_s``: the last step larger than
    JUMP_S, and how long ago (monotonic); retention waits SETTLE_S after it."""
    if synced is False:
        return "the clock is not synchronised"
    if jumped_s is not None and since_jump_s is not None and since_jump_s < SETTLE_S:
        return f"the clock stepped {jumped_s:+.0f} s {since_jump_s:.0f} s ago"
    return None


def without_retention(policy: Policy) -> Policy:
    """``policy`` with no age limit on any line (space rules unchanged): what runs while retention waits."""
    def strip(lp: LinePolicy) -> LinePolicy:
        return LinePolicy(0, lp.effective().min_retention_days)
    return Policy(policy.keep_free_bytes, policy.max_use_bytes, strip(policy.default),
                  tuple((name, strip(lp)) for name, lp in policy.lines), policy.on_min_retention_conflict)


def policy_to_json(policy: Policy) -> str:
    """The policy as the index keeps the last applied one (``meta``), comparable as text."""
    return json.dumps(asdict(policy), sort_keys=True)


def policy_from_json(text: str) -> Policy:
    d = json.loads(text)

    def line(lp: dict[str, int]) -> LinePolicy:
        return LinePolicy(int(lp["retention_days"]), int(lp["min_retention_days"]))
    return Policy(int(d["keep_free_bytes"]), int(d["max_use_bytes"]), line(d["default"]),
                  tuple((str(name), line(lp)) for name, lp in d["lines"]), str(d["on_min_retention_conflict"]))


def recordings_by_age(recordings: Iterable[RecordingInfo]) -> list[RecordingInfo]:
    """Sort for :func:`plan` when the input is not already in order."""
    return sorted(recordings, key=lambda r: (r.started_at, r.id))


__all__ = ["DAY_S", "WHY_SPACE", "WHY_RETENTION", "WHY_REQUEST", "RecordingInfo", "LinePolicy", "Policy",
           "Space", "Eviction", "Plan", "plan", "space_needed", "hours_left", "recordings_by_age",
           "MASS_SHARE", "MASS_FLOOR", "JUMP_S", "SETTLE_S", "is_mass", "confirmed", "change_impact",
           "policy_changes", "refusal", "clock_jump_s", "retention_wait", "without_retention", "policy_to_json",
           "policy_from_json"]
