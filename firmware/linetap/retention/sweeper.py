"""The sweeper: measures space and the recording rate, applies the retention plan.

Run :meth:`Sweeper.sweep` every few seconds from a housekeeping thread, and before
opening a recording when :meth:`Sweeper.tight` says space is short. A sweep reads the
index oldest first a page at a time and stops as soon as the plan is decided, so it stays
well under a second with 100 000 recordings (see ``benchmarks/storage.py``).

Evicting *before* the disk is full: the sweeper keeps ``keep_free`` plus a reserve of
``reserve_s`` seconds of writing at the measured rate free, so what the recorder writes
between two sweeps never reaches ENOSPC.

The rate is measured from the index, so it survives restarts: the bytes of every recording
(deleted or not) started within ``rate_window_s`` plus the files being written now, over the
time covered (the window, or less on a box that started recording more recently).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

from ..clock import Clock, SystemClock, iso, parse_iso
from ..index import retention as db
from ..index.db import Index
from . import deletions
from .plan import (DAY_S, JUMP_S, WHY_RETENTION, WHY_SPACE, Plan, Policy, RecordingInfo, Space, change_impact,
                   clock_jump_s, confirmed, hours_left, is_mass, plan, policy_changes, policy_from_json,
                   policy_to_json, refusal, retention_wait, space_needed, without_retention)

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4096)
def _day_epoch(day: str) -> float:
    return parse_iso(day + "T00:00:00Z")


def _epoch(ts: str) -> float:
    """parse_iso for the index's own format (2026-11-28T15:30:00.125Z), 3x faster: a sweep may read 100 000."""
    if len(ts) == 24 and ts[10] == "T" and ts[23] == "Z":
        try:
            return _day_epoch(ts[:10]) + int(ts[11:13]) * 3600 + int(ts[14:16]) * 60 + float(ts[17:23])
        except ValueError:
            pass
    return parse_iso(ts)

MB = 1024 * 1024
PART = ".part"
APPLIED_POLICY = "retention_policy"  # meta key: the policy the last sweep applied (for the change guard)


class SpaceProbe(Protocol):
    def free_bytes(self) -> int: ...


class DiskSpace:
    """Free space of the file system holding ``path``, as an unprivileged writer sees it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize


@dataclass(frozen=True, slots=True)
class SweepResult:
    at: float
    plan: Plan
    deleted: tuple[int, ...]
    refused: tuple[int, ...]  # planned, but held or being written by the time of deletion
    free_bytes: int
    used_bytes: int  # recordings (finished + being written)
    recordings: int
    evictable_bytes: int
    rate_bytes_per_s: float | None
    hours_left: float | None
    disk_low: bool
    detail: str = ""  # why DISK_LOW, when it is
    duration_s: float = 0.0
    overrode_min_retention: tuple[int, ...] = field(default=())
    held_back: str = ""  # why deletions wait (an unconfirmed change, the clock, mass retention): DELETION_HELD
    mass_eviction: str = ""  # space eviction deleted a large share at once (DISK_LOW, with this detail)

    def health(self) -> dict[str, Any]:
        """The ``disk`` object of the health snapshot."""
        return {"free_mb": round(self.free_bytes / MB, 1), "used_mb": round(self.used_bytes / MB, 1),
                "recordings": self.recordings,
                "hours_left": None if self.hours_left is None else round(self.hours_left, 1)}


class Sweeper:
    def __init__(self, index: Index, data_dir: Path, policy: Policy, *, clock: Clock | None = None,
                 space: SpaceProbe | None = None, reserve_s: float = 30.0, rate_window_s: float = DAY_S,
                 page_rows: int = 256, who: str = "linetap", confirm_deletion: int = 0,
                 clock_synced: Callable[[], bool | None] | None = None, archive: bool = False) -> None:
        self.index = index
        self.archive = archive  # [archive] configured: the plan is told which recordings are archived
        self.data_dir = Path(data_dir)
        self.policy = policy
        self.clock = clock or SystemClock()
        self.space = space or DiskSpace(self.data_dir)
        self.reserve_s = reserve_s
        self.rate_window_s = rate_window_s
        self.page_rows = page_rows
        self.who = who
        self._lock = threading.Lock()
        self._disk_low = False
        self._rate: float | None = None
        # Guards against mass deletion (retention/plan.py, "guarding against mass deletion").
        self.confirm_deletion = confirm_deletion
        self._clock_synced = clock_synced or (lambda: None)
        self.active: Policy | None = None  # decided at the first sweep: self.policy, or the last applied one
        self.refused_change = ""
        self._anchor: tuple[float, float] | None = None  # (wall, mono) at the last sweep
        self._jump: tuple[float, float] | None = None  # (step_s, mono) of the last clock step

    @classmethod
    def from_config(cls, index: Index, cfg: Any, **kwargs: Any) -> Sweeper:
        """From a :class:`linetap.config.Config`."""
        kwargs.setdefault("confirm_deletion", int(getattr(cfg.storage, "confirm_deletion", 0)))
        archive = getattr(cfg, "archive", None)
        kwargs.setdefault("archive", archive is not None)
        return cls(index, Path(cfg.recorder.data_dir), Policy.from_config(cfg.storage, cfg.lines, archive),
                   **kwargs)

    # --- measuring ---------------------------------------------------------------
    def _open_bytes(self) -> int:
        total = 0
        for path in db.paths_being_recorded(self.index):
            for p in (self.data_dir / (path + PART), self.data_dir / path):
                try:
                    total += p.stat().st_size
                    break
                except OSError:
                    continue
        return total

    def _finished(self) -> tuple[int, int]:
        """(number, bytes) of finished recordings: the one full pass over calls a sweep makes."""
        return db.finished_totals(self.index)

    def used_bytes(self) -> int:
        """Bytes held by recordings: finished files plus the files being written."""
        return self._finished()[1] + self._open_bytes()

    def rate_bytes_per_s(self, now: float | None = None, open_bytes: int | None = None) -> float | None:
        """Bytes recorded per second over the last ``rate_window_s`` (None before a minute of data)."""
        now = self.clock.wall() if now is None else now
        since = iso(now - self.rate_window_s)
        recorded = db.bytes_recorded_since(self.index, since)
        first = db.first_recording_start(self.index)
        if first is None:
            return None
        span = min(self.rate_window_s, now - parse_iso(first))
        if span < 60.0:
            return None
        written = recorded + (self._open_bytes() if open_bytes is None else open_bytes)
        return written / span

    def tight(self) -> bool:
        """Cheap check (one statvfs): is free space within twice the reserve of the limit?"""
        free = self.space.free_bytes()
        return free < self.policy.keep_free_bytes + 2 * self._reserve_bytes(self._rate)

    def _reserve_bytes(self, rate: float | None) -> int:
        return int((rate or 0.0) * self.reserve_s)

    def _info(self, r: dict[str, Any]) -> RecordingInfo:
        return RecordingInfo(r["id"], r["line"], _epoch(r["started_at"]), int(r["bytes"] or 0),
                             r["held"] is not None, r["status"],
                             archived=(r.get("archived_at") is not None) if self.archive else None)

    def _recordings(self) -> Iterator[RecordingInfo]:
        """Every recording, oldest first, a page at a time (the planner stops early).

        Each page seeks the started_at index (``>=``, see :func:`linetap.index.retention.recordings_from`);
        rows of the previous page's last instant are skipped here.
        """
        started, last_id = "", -1
        while True:
            rows = db.recordings_from(self.index, started, self.page_rows)
            fresh = [r for r in rows if r["started_at"] != started or r["id"] > last_id]
            for r in fresh:
                yield self._info(r)
            if len(rows) < self.page_rows:
                return
            if not fresh:  # a whole page at one instant: step past it by id
                rows = db.recordings_at(self.index, started, last_id)
                for r in rows:
                    yield self._info(r)
                started, last_id = started + "\x00", -1  # strictly after this instant (ISO strings sort)
                continue
            started, last_id = rows[-1]["started_at"], rows[-1]["id"]

    def evictable_bytes(self, now: float, finished_bytes: int) -> int:
        """Of ``finished_bytes``, what space eviction may still delete (not held, not protected)."""
        held = db.held_finished_bytes(self.index)
        protected = 0
        if self.policy.on_min_retention_conflict != "evict":
            named = [name for name, _ in self.policy.lines]
            for name in named:
                days = self.policy.for_line(name).min_retention_days
                if days:
                    protected += db.unheld_bytes_since(self.index, iso(now - days * DAY_S), line=name)
            days = self.policy.default.effective().min_retention_days
            if days:
                protected += db.unheld_bytes_since(self.index, iso(now - days * DAY_S), other_than=named)
        if self.archive and self.policy.archive_required:
            # Never evicted until archived. Conservative: one also held or protected counts twice.
            from ..index.archive import backlog
            protected += backlog(self.index)["bytes"]
        return max(0, finished_bytes - held - protected)

    # --- sweeping ----------------------------------------------------------------
    def sweep(self) -> SweepResult:
        with self._lock:
            return self._sweep()

    def _sweep(self) -> SweepResult:
        t0 = self.clock.mono()
        deletions.finish_pending(self.index, self.data_dir, self.clock)
        now = self.clock.wall()
        self._watch_clock(now, t0)
        open_bytes = self._open_bytes()
        rate = self._rate = self.rate_bytes_per_s(now, open_bytes)
        reserve = self._reserve_bytes(rate)
        free = self.space.free_bytes()
        finished, finished_bytes = self._finished()
        total = finished + db.count_being_recorded(self.index)
        used = finished_bytes + open_bytes
        policy = self._applied_policy(Space(free, used), now, reserve)
        p = plan(self._recordings(), Space(free, used), policy, now, reserve_bytes=reserve)
        held_back = self._retention_waits(p, total)
        if held_back:  # space eviction goes on: the recorder must keep recording
            p = plan(self._recordings(), Space(free, used), without_retention(policy), now, reserve_bytes=reserve)
        held_back = "; ".join(x for x in (self.refused_change, held_back) if x)
        deleted: tuple[int, ...] = ()
        refused: tuple[int, ...] = ()
        mass = ""
        if p.evictions:
            res = deletions.delete_recordings(self.index, self.data_dir, [(e.id, e.why) for e in p.evictions],
                                              by=self.who, clock=self.clock)
            deleted = tuple(d.call_id for d in res.deleted)
            refused = tuple(r.call_id for r in res.refused)
            self._log_deletions(p, res)
            for_space = sum(1 for d in res.deleted if d.why == WHY_SPACE)
            if is_mass(for_space, total):
                mass = f"deleted {for_space} of {total} recordings at once to free space"
                logger.error("%s", mass)
            free = self.space.free_bytes()
            finished -= len(res.deleted)
            finished_bytes -= res.freed_bytes
            used = finished_bytes + open_bytes
        evictable = self.evictable_bytes(now, finished_bytes)
        recordings = finished + db.count_being_recorded(self.index)
        low = p.disk_low or (bool(refused) and space_needed(Space(free, used), self.policy, reserve) > 0)
        detail = self._detail(p, free, reserve) if low else ""
        self._log_state(low, detail)
        left = hours_left(free_bytes=free, used_bytes=used, evictable_bytes=evictable, rate_bytes_per_s=rate,
                          policy=policy, reserve_bytes=reserve)
        return SweepResult(at=now, plan=p, deleted=deleted, refused=refused, free_bytes=free, used_bytes=used,
                           recordings=recordings, evictable_bytes=evictable, rate_bytes_per_s=rate,
                           hours_left=0.0 if low else left, disk_low=low, detail=detail,
                           duration_s=self.clock.mono() - t0, overrode_min_retention=p.overrode_min_retention,
                           held_back=held_back, mass_eviction=mass)

    # --- guards against mass deletion ----------------------------------------------------------
    def _applied_policy(self, space: Space, now: float, reserve: int) -> Policy:
        """The policy to sweep with, decided at the first sweep: the configured one, unless it differs
        from the last applied one (kept in the index) so that it would delete a mass of recordings
        the old one would not, without ``storage.confirm_deletion``: then the old one, and
        ``refused_change`` says why (DELETION_HELD) until a confirmed config is started."""
        if self.active is not None:
            return self.active
        self.active = self.policy
        applied = self.index.get_meta(APPLIED_POLICY)
        if applied is not None and applied != policy_to_json(self.policy):
            try:
                old = policy_from_json(applied)
            except (ValueError, KeyError, TypeError):
                old = self.policy
            rows = list(self._recordings())
            extra = change_impact(rows, space, old, self.policy, now, reserve_bytes=reserve)
            if is_mass(len(extra), len(rows)) and not confirmed(len(extra), self.confirm_deletion):
                self.active = old
                self.refused_change = refusal("the config change (" + ", ".join(policy_changes(old, self.policy))
                                              + ")", len(extra), len(rows)) + "; the previous limits still apply"
                logger.error("not applying the new retention limits: %s", self.refused_change)
                return old
        self.index.set_meta(APPLIED_POLICY, policy_to_json(self.policy))
        return self.active

    def _watch_clock(self, now: float, mono: float) -> None:
        """Note a wall-clock step (against the monotonic clock) between two sweeps."""
        if self._anchor is not None:
            step = clock_jump_s(now, mono, *self._anchor)
            if abs(step) > JUMP_S:
                logger.warning("the wall clock stepped %+.0f s; deletion by age waits for it to settle", step)
                self._jump = (step, mono)
        self._anchor = (now, mono)

    def _retention_waits(self, p: Plan, total: int) -> str:
        """Why this plan's deletions by age must wait ("" : they may go ahead)."""
        by_age = sum(1 for e in p.evictions if e.why == WHY_RETENTION)
        if not by_age:
            return ""
        since = self.clock.mono() - self._jump[1] if self._jump else None
        why = retention_wait(synced=self._clock_synced(), jumped_s=self._jump[0] if self._jump else None,
                             since_jump_s=since)
        if why:
            return f"{by_age} recording(s) past their retention are kept while {why}"
        if is_mass(by_age, total) and not confirmed(by_age, self.confirm_deletion):
            return refusal("retention", by_age, total) + " (a clock far ahead does this too: check the date)"
        return ""

    def _detail(self, p: Plan, free: int, reserve: int) -> str:
        why = []
        if p.blocked_by_hold:
            why.append("recordings on legal hold")
        if p.blocked_by_min_retention:
            why.append("recordings younger than min_retention_days")
        if p.blocked_by_archive:
            why.append("recordings not archived yet (archive.required)")
        if not why:
            why.append("recordings still being written")
        return (f"{free / MB:.1f} MB free, {(self.policy.keep_free_bytes + reserve) / MB:.1f} MB needed; "
                f"{p.shortfall_bytes / MB:.1f} MB cannot be freed without deleting " + " or ".join(why))

    def _log_deletions(self, p: Plan, res: deletions.DeleteResult) -> None:
        by_why: dict[str, list[int]] = {}
        for d in res.deleted:
            by_why.setdefault(d.why, []).append(d.bytes)
        for why, sizes in sorted(by_why.items()):
            logger.info("deleted %d recording(s), %.1f MB, for %s", len(sizes), sum(sizes) / MB, why)
        if p.overrode_min_retention:
            logger.warning("deleted %d recording(s) younger than min_retention_days to keep recording "
                           "(on_min_retention_conflict = \"evict\")", len(p.overrode_min_retention))

    def _log_state(self, low: bool, detail: str) -> None:
        if low and not self._disk_low:
            logger.error("DISK_LOW: %s", detail)
        elif not low and self._disk_low:
            logger.warning("disk space is sufficient again")
        self._disk_low = low


def impact(index: Index, data_dir: Path, old: Policy, new: Policy, **kwargs: Any) -> tuple[int, int]:
    """(how many recordings ``new`` would delete now that ``old`` would not, how many there are):
    the first-boot check of a config change (firstboot.py), measured as a sweep would."""
    s = Sweeper(index, data_dir, new, **kwargs)
    now = s.clock.wall()
    open_bytes = s._open_bytes()
    reserve = s._reserve_bytes(s.rate_bytes_per_s(now, open_bytes))
    rows = list(s._recordings())
    space = Space(s.space.free_bytes(), s._finished()[1] + open_bytes)
    return len(change_impact(rows, space, old, new, now, reserve_bytes=reserve)), len(rows)


def sweep(index: Index, data_dir: Path, policy: Policy, **kwargs: Any) -> SweepResult:
    """One sweep with a throw-away :class:`Sweeper` (the rate lives in the index, not in the object)."""
    return Sweeper(index, data_dir, policy, **kwargs).sweep()
