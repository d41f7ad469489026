"""A new config that keeps the recorder from starting is rolled back; why a start failed is kept.

The box's one promise is that it records. A ``linetap.toml`` that passed first boot's checks can
still make ``linetap run`` fail (a key that does not load on this box, a setting the code rejects
only at start). With ``Restart=always`` that is a restart loop that records nothing, and with
``StartLimitAction=reboot`` a reboot loop whose reason the RAM-only journal forgets. So:

- **good**: the recorder marks the config it runs as good (the SHA-256 of its bytes, in
  ``<data_dir>/start-guard/good``) once it has run ``GOOD_AFTER_S`` or stopped cleanly after a
  successful start; it needs no privilege for that (its own data dir).
- **guard** (``python -m linetap.rollback -c CONFIG``, run by systemd as root before every
  start: ``ExecStartPre=+``): keeps ``linetap.toml.last-good`` (the last config marked good) beside the
  config, counts the starts of a config not yet marked good, and after ``MAX_FAILED_STARTS`` of
  them restores the last-good one (the failed one is kept as ``linetap.toml.rolled-back``) and
  leaves ``rolled-back.json``: the recorder then raises CONFIG_ROLLED_BACK with the reason. It
  never fails itself: a guard that cannot do its work must not add a reason not to record.
- **why**: ``linetap run`` writes the reason it could not start to
  ``<data_dir>/start-guard/failure.json`` (the data partition survives reboots; if the new
  config's ``data_dir`` cannot be used, the last-good config's: :func:`failure_dirs`); for a run that
  could not say it (killed by the watchdog, for memory, a crash) the unit's ``ExecStopPost=``
  step writes systemd's reason there (``--stopped``); ``linetap
  status`` shows it and the next start puts it in the health document (``last_start_failure``).
- **rejected**: first boot leaves ``config-rejected.json`` in the data dir when it rejects a new
  one; the recorder raises CONFIG_REJECTED while the config it kept is the one running.

With a 2 s ``RestartSec`` and ``StartLimitBurst=5`` in ten minutes (``systemd/linetap.service``),
three failed starts roll back on the fourth, before the start limit would reboot the box.
The decisions (:func:`decide`, :func:`marker_active`) are pure; the rest is file handling.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal

from .clock import iso
from .fsutil import atomic_file

if TYPE_CHECKING:  # the recorder's types, for RunMarks only
    from .alarms.manager import AlarmManager
    from .health.board import StatusBoard

logger = logging.getLogger(__name__)

MAX_FAILED_STARTS = 3  # starts of a new config that did not become good; the next one rolls back
GOOD_AFTER_S = 60.0  # running this long (or a clean stop) marks a config good
GUARD_DIR = "start-guard"  # in the data dir: written by the (unprivileged) recorder
GOOD_FILE = "good"
FAILURE_FILE = "failure.json"
LAST_FAILURE_FILE = "failure.previous.json"
# Beside the config (root's directory): written by the guard and by first boot.
STATE_FILE = "start-guard.json"
LAST_GOOD = "linetap.toml.last-good"
LAST_STARTED = "linetap.toml.last-started"
ROLLED_BACK_CONFIG = "linetap.toml.rolled-back"
ROLLED_BACK = "rolled-back.json"
REJECTED = "config-rejected.json"  # in the data dir (first boot's --data), beside start-guard/
DEFAULT_DATA_DIR = Path("/var/lib/linetap")


def sha256(data: bytes | None) -> str | None:
    return hashlib.sha256(data).hexdigest() if data is not None else None


# --- pure decisions -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class GuardState:
    """What the guard remembers between starts: which config it saw and how often it started it
    without that config being marked good."""

    config_sha256: str | None = None
    attempts: int = 0


def decide(current: str | None, good: str | None, state: GuardState, *,
           max_failed: int = MAX_FAILED_STARTS) -> tuple[Literal["start", "rollback"], GuardState]:
    """Before a start: go on with ``current`` or restore ``good``; and the state to remember.

    ``current``/``good``: SHA-256 of the config to start and of the last-good copy (None: none).
    A config marked good starts freely. A new one gets ``max_failed`` starts; the next start
    rolls back, if there is something to roll back to."""
    if current is None or current == good:
        return "start", GuardState(current, 0)
    attempts = state.attempts + 1 if state.config_sha256 == current else 1
    if attempts > max_failed and good is not None:
        return "rollback", GuardState(good, 0)
    return "start", GuardState(current, attempts)


def marker_active(marker: dict[str, Any] | None, running_sha256: str | None) -> bool:
    """A CONFIG_REJECTED / CONFIG_ROLLED_BACK marker holds while the config it left in place
    (``kept_sha256``) is still the one running; applying any other config ends it."""
    return bool(marker) and running_sha256 is not None and marker.get("kept_sha256") == running_sha256


# --- file handling --------------------------------------------------------------------------------

def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _read_json(path: Path) -> dict[str, Any] | None:
    data = _read(path)
    try:
        doc = json.loads(data) if data is not None else None
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _write(path: Path, data: bytes, mode: int = 0o640) -> None:
    with atomic_file(path, mode=mode, dir_fsync=True) as f:
        f.write(data)
    _same_group(path)


def _same_group(path: Path) -> None:
    """Readable by the recorder's group, like the config beside it (the guard runs as root)."""
    try:
        gid = path.parent.joinpath("linetap.toml").stat().st_gid
        if os.geteuid() == 0 and path.stat().st_gid != gid:
            os.chown(path, -1, gid)
    except OSError:
        pass


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    _write(path, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())


def data_dir_of(text: bytes | None) -> Path:
    """``recorder.data_dir`` of a config, read leniently (it may be the broken one)."""
    try:
        doc = tomllib.loads((text or b"").decode("utf-8"))
        value = doc.get("recorder", {}).get("data_dir")
    except (ValueError, AttributeError, UnicodeDecodeError):
        value = None
    return Path(value) if isinstance(value, str) and value.strip() else DEFAULT_DATA_DIR


def good_mark(data_dir: Path) -> str | None:
    data = _read(data_dir / GUARD_DIR / GOOD_FILE)
    return data.decode("ascii", "replace").strip() or None if data else None


def last_failure(data_dir: Path) -> dict[str, Any] | None:
    """Why the last start failed (``at``, ``reason``, ``config_sha256``), or None."""
    return _read_json(data_dir / GUARD_DIR / FAILURE_FILE)


def failure_dirs(config_path: Path, text: bytes | None, data_dir: Path | None = None) -> list[Path]:
    """Where why a start of the config at ``config_path`` (its bytes: ``text``) failed is written
    and looked for, in order: its own data dir (``data_dir`` if the caller loaded the config,
    else read leniently), then that of the last-known-good config beside it. A new config whose
    ``data_dir`` cannot be used (a file in the way, a disk not mounted: first boot rejects that,
    a config copied by hand is not checked) has nowhere else to say it, and the guard's rollback
    and the recorder that then runs the good config find it there."""
    dirs = [data_dir if data_dir is not None else data_dir_of(text)]
    good = _read(config_path.resolve().parent / LAST_GOOD)
    if good is not None and data_dir_of(good) not in dirs:
        dirs.append(data_dir_of(good))
    return dirs


def failure_of(config_path: Path, data_dir: Path | None = None) -> dict[str, Any] | None:
    """Why the last start of this config failed, from the first of :func:`failure_dirs` that
    holds it; else whatever failure its own data dir holds (``linetap status``: an older one is
    still news), else None."""
    text = _read(config_path)
    dirs = failure_dirs(config_path, text, data_dir)
    own = last_failure(dirs[0])
    for d in dirs:
        failure = own if d == dirs[0] else last_failure(d)
        if failure and failure.get("config_sha256") == sha256(text):
            return failure
    return own


def record_failure(config_path: Path, reason: str, *, now: float) -> Path | None:
    """``linetap run`` could not start: say why, on the data partition (best effort): in the first
    of :func:`failure_dirs` that exists and takes it."""
    text = _read(config_path)
    for data_dir in failure_dirs(config_path, text):
        if not data_dir.is_dir():  # never create a data dir for a config that did not start
            continue
        guard = data_dir / GUARD_DIR
        try:
            guard.mkdir(mode=0o750, exist_ok=True)
            path = guard / FAILURE_FILE
            _write_json(path, {"at": iso(now), "reason": reason, "config_sha256": sha256(text)})
        except OSError as e:
            logger.error("cannot record why the start failed in %s: %s", guard, e)
            continue
        return path
    return None


def stop_reason(service_result: str | None, exit_code: str | None, exit_status: str | None) -> str | None:
    """Why systemd says the run ended, for a run that ended badly without saying so itself
    (``ExecStopPost=``'s ``$SERVICE_RESULT`` etc.); None when there is nothing to add: a clean
    stop, or an exit code (``linetap run`` wrote its own reason before exiting)."""
    if service_result in (None, "", "success", "exit-code"):
        return None
    what = {"watchdog": "the systemd watchdog killed it (hung)", "oom-kill": "killed for lack of memory (MemoryMax)",
            "timeout": "it did not start or stop in time", "core-dump": "it crashed (core dump)",
            "signal": "it was killed by a signal"}.get(service_result, service_result)
    return f"{what} ({exit_code or '?'} {exit_status or '?'})"


def record_stop(config_path: Path, reason: str, *, now: float) -> Path | None:
    """As root after a bad stop: the reason goes where the recorder's own would (only into its
    existing ``start-guard`` directory, owned by the recorder's user, so it can move it later)."""
    guard = data_dir_of(_read(config_path)) / GUARD_DIR
    if not guard.is_dir():
        return None
    path = guard / FAILURE_FILE
    _write_json(path, {"at": iso(now), "reason": reason, "config_sha256": sha256(_read(config_path))})
    try:
        st = guard.stat()
        os.chown(path, st.st_uid, st.st_gid)
    except OSError:
        pass
    return path


def mark_good(data_dir: Path, config_sha256: str | None) -> bool:
    """The recorder ran on this config: the guard keeps it as the last-good one from now on.
    A failure recorded before is kept as ``failure.previous.json`` (history, not a current fault)."""
    if config_sha256 is None:
        return False
    guard = data_dir / GUARD_DIR
    try:
        guard.mkdir(mode=0o750, parents=True, exist_ok=True)
        if good_mark(data_dir) != config_sha256:
            _write(guard / GOOD_FILE, config_sha256.encode() + b"\n")
            logger.info("config %s marked good", config_sha256[:12])
        failure = guard / FAILURE_FILE
        if failure.exists():
            os.replace(failure, guard / LAST_FAILURE_FILE)
    except OSError as e:
        logger.error("cannot mark the config good in %s: %s", guard, e)
        return False
    return True


@dataclass(frozen=True, slots=True)
class GuardResult:
    action: Literal["start", "rollback"]
    attempts: int
    detail: str


def guard_start(config_path: Path, *, now: float, max_failed: int = MAX_FAILED_STARTS) -> GuardResult:
    """The guard (``python -m linetap.rollback``): before a start, promote a config marked good, count this start,
    roll back after ``max_failed`` failed ones. Writes only beside the config (root's)."""
    config_path = config_path.resolve()
    cdir = config_path.parent
    current = _read(config_path)
    # The config that started last time may have become good meanwhile (first boot may since
    # have replaced it): promote it before its copy is overwritten below.
    for candidate in (cdir / LAST_STARTED, config_path):
        data = _read(candidate)
        if data is not None and sha256(data) == good_mark(data_dir_of(data)) \
                and _read(cdir / LAST_GOOD) != data:
            _write(cdir / LAST_GOOD, data)
            logger.info("%s is the last-known-good config now", candidate.name)
    good = _read(cdir / LAST_GOOD)
    raw = _read_json(cdir / STATE_FILE) or {}
    state = GuardState(raw.get("config_sha256"), int(raw.get("attempts") or 0))
    action, new_state = decide(sha256(current), sha256(good), state, max_failed=max_failed)
    detail = ""
    if action == "rollback":
        assert good is not None and current is not None
        failure = failure_of(config_path) or {}
        reason = failure.get("reason") if failure.get("config_sha256") == sha256(current) else None
        detail = (f"the new config failed to start {state.attempts} times"
                  + (f" ({reason})" if reason else " (no reason recorded: killed or hung?)")
                  + f"; the last-known-good config was restored, the failed one is {ROLLED_BACK_CONFIG}")
        _write(cdir / ROLLED_BACK_CONFIG, current)
        _write(config_path, good)
        _write_json(cdir / ROLLED_BACK, {"at": iso(now), "detail": detail, "attempts": state.attempts,
                                         "failed_sha256": sha256(current), "kept_sha256": sha256(good),
                                         "reason": reason})
        logger.error("start guard: %s", detail)
        current = good
    elif new_state.attempts:
        logger.warning("start guard: start %d of a config not yet known to work (rolled back after %d)",
                       new_state.attempts, max_failed)
    _write_json(cdir / STATE_FILE, {"config_sha256": new_state.config_sha256, "attempts": new_state.attempts})
    if current is not None and _read(cdir / LAST_STARTED) != current:
        _write(cdir / LAST_STARTED, current)
    return GuardResult(action, new_state.attempts, detail)


def record_rejected(data_dir: Path, active_config: Path, errors: list[str], *, now: float) -> None:
    """First boot rejected a new config: the recorder raises CONFIG_REJECTED while the config it
    kept (``active_config``) runs."""
    data_dir.mkdir(parents=True, exist_ok=True)
    _write_json(data_dir / REJECTED, {"at": iso(now), "kept_sha256": sha256(_read(active_config)),
                                      "detail": "; ".join(errors)[:500]})


@dataclass(frozen=True, slots=True)
class ConfigMarks:
    """What the recorder reads at start: the alarms about its config and the last failure."""

    rolled_back: str | None  # CONFIG_ROLLED_BACK's detail, None if not active
    rejected: str | None  # CONFIG_REJECTED's detail, None if not active
    last_start_failure: dict[str, Any] | None


def read_marks(config_source: str | Path, data_dir: Path) -> ConfigMarks:
    path = Path(config_source).resolve()
    running = sha256(_read(path))
    rolled = _read_json(path.parent / ROLLED_BACK)
    rejected = _read_json(data_dir / REJECTED)
    return ConfigMarks(
        rolled_back=str(rolled.get("detail") or "config rolled back") if rolled and marker_active(rolled, running)
        else None,
        rejected=("first boot rejected the new linetap.toml (see linetap-error.txt on the card): "
                  + str(rejected.get("detail") or "")) if rejected and marker_active(rejected, running) else None,
        last_start_failure=last_failure(data_dir))



class RunMarks:
    """The recorder's side of the config's story: at start, the alarms about its config
    (CONFIG_ROLLED_BACK, CONFIG_REJECTED) and why the previous start failed; then the moment this
    run's config counts as good (``GOOD_AFTER_S`` of running, or a clean stop after a start)."""

    def __init__(self, config_source: str | Path, data_dir: Path, *, mono: Callable[[], float]) -> None:
        self.config_source = config_source
        self.data_dir = data_dir
        self.mono = mono
        self.config_sha256 = sha256(_read(Path(config_source)))
        self._good_at_mono: float | None = None

    def raise_alarms(self, alarms: AlarmManager, board: StatusBoard) -> None:
        try:
            marks = read_marks(self.config_source, self.data_dir)
        except Exception:  # noqa: BLE001 - reading the markers must not stop a start
            logger.exception("cannot read the config's rollback/rejection markers")
            return
        alarms.set("CONFIG_ROLLED_BACK", None, marks.rolled_back is not None, marks.rolled_back or "")
        alarms.set("CONFIG_REJECTED", None, marks.rejected is not None, marks.rejected or "")
        if marks.last_start_failure:
            board.last_start_failure = marks.last_start_failure
            logger.warning("the previous start failed at %s: %s", marks.last_start_failure.get("at"),
                           marks.last_start_failure.get("reason"))

    def started(self) -> None:
        """The run started: its config is good ``GOOD_AFTER_S`` from now."""
        self._good_at_mono = self.mono() + GOOD_AFTER_S

    def mark_good_when_due(self, *, clean_stop: bool = False) -> None:
        """The config is known to work once the recorder ran ``GOOD_AFTER_S`` (or stopped cleanly)."""
        if self._good_at_mono is None or not (clean_stop or self.mono() >= self._good_at_mono):
            return
        if mark_good(self.data_dir, self.config_sha256):
            self._good_at_mono = None

def main(argv: list[str] | None = None) -> int:
    """``python -m linetap.rollback -c CONFIG``: exit 0 always (a broken guard must not keep the
    recorder from starting); a rollback is said on stderr (the journal)."""
    import argparse
    import sys
    import time
    ap = argparse.ArgumentParser(prog="python -m linetap.rollback",
                                 description="before a start: roll a config that keeps failing back to the "
                                             "last-known-good one")
    ap.add_argument("-c", "--config", required=True, help="the config linetap run will read")
    ap.add_argument("--stopped", action="store_true",
                    help="after a stop (ExecStopPost=): record why systemd says it ended badly")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.stopped:
            import os as _os
            reason = stop_reason(_os.environ.get("SERVICE_RESULT"), _os.environ.get("EXIT_CODE"),
                                 _os.environ.get("EXIT_STATUS"))
            if reason:
                record_stop(Path(args.config), reason, now=time.time())
            return 0
        res = guard_start(Path(args.config), now=time.time())
    except Exception as e:  # noqa: BLE001
        print(f"linetap start guard: {e}", file=sys.stderr)
        return 0
    if res.action == "rollback":
        print(f"linetap start guard: {res.detail}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
