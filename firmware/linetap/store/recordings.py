"""Recordings on disk: naming, the crash-safe life cycle of a file, and salvage.

A call's file is created as ``<name>.<ext>.part`` (the mark of a file being
written), synced to the disk every ``sync_interval_s`` of audio (in the recorder,
every due file at once, at the end of the pipeline round: ``SyncBatch``), and renamed
to its final name only once closed, fsynced and complete. On start-up, every ``.part``
left by a crash or power cut is decoded as far as it goes, written afresh as a
finished file, and indexed with ``status = "recovered"``.

Encrypted (``encrypt=``, from ``[storage] encrypt_to``): the file is ``<name>.<ext>.sealed``
from its first byte (``.sealed.part`` while written), encrypted as it is written, one record
per sync point (:mod:`linetap.unseal`). A crash leaves a valid encrypted prefix; the salvage
cannot decode it (the private key is not on the box), so it trims an incomplete last record
and keeps the complete ones as they are.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import hashlib
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ..clock import iso, parse_iso
from ..index.db import Index
from .. import unseal
from . import audio

logger = logging.getLogger(__name__)

DIR_MODE = 0o750
from .sidecar import (PART, SEALED, SIDECAR, SIDECAR_FIELDS, SIDECAR_MODE, SIDECAR_VERSION,  # noqa: F401
                      UNREADABLE, read_sidecar, remove_sidecar, sidecar_doc, sidecar_path, write_sidecar)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_SYNCFS = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)  # libc's; Python's os has none


def syncfs(path: Path) -> None:
    """syncfs(2): write out every dirty file of the filesystem holding ``path``, in one journal
    commit. Linux reports a write-back error on any of them."""
    if _SYNCFS is None:
        raise OSError(errno.ENOSYS, "syncfs is not available")
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _SYNCFS(fd) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"syncfs {path}: {os.strerror(e)}")
    finally:
        os.close(fd)


class SyncBatch:
    """The recordings due for their periodic sync, synced together once per pipeline round.

    One ``syncfs`` of the data filesystem pushes every due file's new audio to the disk in a
    single journal commit, where an fsync per file costs a commit each (on an SD card each takes
    milliseconds). ``benchmarks/floor.py``, 32 FLAC lines synced every 0.4 s: reading, encoding
    and syncing cost 2.75-3.13x the codec per line with an fsync per file, 1.36-1.90x with one
    syncfs. Everything written before the round ended is on the disk when
    it returns, which is at least what each file's own sync at its sync point would have pushed.
    If it fails (or the system has no syncfs), each due recording syncs its own file, so a
    failure is pinned to its recording, which then keeps its audio in RAM as for a failed write.

    A ``syncfs`` pushes every open file, not only the due ones: each plaintext recording open
    (``opened``) counts its sync interval again from there (``Recording.synced``). Recordings then
    fall due in the same rounds, and the filesystem is synced once per sync interval however many
    calls are open, where calls that began at different moments fell due in different rounds
    (four calls begun in different rounds, 0.4 s interval, 200 ms rounds, 10 s: 49 ``syncfs``
    before, 25 after, ``tests/test_store_sync.py``). Each is a journal commit: on an SD card a
    write of its own, wear the card does not need. No file goes longer unsynced for
    it: its next sync point only moves when it was just synced. An encrypted recording is not
    counted: its audio reaches the file as a record at its own sync points (``commit``), so a
    ``syncfs`` between them does not push it.
    Not thread-safe: owned by the pipeline thread, like the recordings."""

    def __init__(self, data_dir: Path, sync_fs: Callable[[Path], None] = syncfs) -> None:
        self.data_dir = data_dir
        self._sync_fs = sync_fs
        self._due: dict[Recording, None] = {}  # insertion-ordered set
        self._open: dict[Recording, None] = {}  # plaintext recordings a syncfs pushes whole
        self.fallbacks = 0
        self.filesystem_syncs = 0  # successful syncfs calls (benchmarks, tests)

    def opened(self, rec: Recording) -> None:
        """``rec`` writes its file directly (no encryption): a ``syncfs`` pushes all it wrote."""
        self._open[rec] = None

    def due(self, rec: Recording) -> None:
        """``rec`` passed a sync point. If it passed one before that is still not synced (a round
        holding a backlog of audio), everything due is synced now: no file ever goes more than
        one sync interval of its audio past a sync point unsynced."""
        if rec in self._due:
            self.flush()
        self._due[rec] = None

    def forget(self, rec: Recording) -> None:
        self._due.pop(rec, None)
        self._open.pop(rec, None)

    def flush(self) -> int:
        """Sync every due recording; returns how many were due."""
        if not self._due:
            return 0
        due = list(self._due)
        self._due.clear()
        try:
            self._sync_fs(self.data_dir)
        except OSError as e:
            self.fallbacks += 1
            if self.fallbacks == 1 or self.fallbacks % 1000 == 0:
                logger.warning("syncing the recordings' filesystem failed (%s): syncing each file alone", e)
            for rec in due:
                rec.sync_now()
            return len(due)
        self.filesystem_syncs += 1
        for rec in self._open:
            rec.synced()
        return len(due)


def make_dirs(root: Path, rel: Path) -> Path:
    """Create root/rel with every new directory 0750 (whatever the umask)."""
    path = root
    for part in rel.parts:
        path = path / part
        if not path.is_dir():
            try:
                path.mkdir(mode=DIR_MODE)
            except FileExistsError:
                pass
            os.chmod(path, DIR_MODE)
    return path


def relative_path(line: str, started_at: float, call_id: int, codec: str) -> Path:
    """recordings/<line>/YYYY/MM/DD/<line>_<UTC start>_<id>.<ext>"""
    dt = datetime.fromtimestamp(started_at, tz=timezone.utc)
    stamp = dt.strftime("%Y%m%dT%H%M%S") + f".{dt.microsecond // 1000:03d}Z"
    return Path("recordings", line, dt.strftime("%Y"), dt.strftime("%m"), dt.strftime("%d"),
                f"{line}_{stamp}_{call_id}.{audio.extension(codec)}")


class Recording:
    """One call being written. Not thread-safe: owned by the pipeline thread."""

    def __init__(self, data_dir: Path, index: Index, *, line: str, codec: str, rate: int, channels: int,
                 started_at: float, sync_interval_s: float,
                 on_error: Callable[[str | None, float], None] | None = None, ram_limit_s: float = 600.0,
                 retry_s: float = 1.0, syncs: SyncBatch | None = None,
                 encrypt: audio.OpenEncrypted | None = None) -> None:
        self.data_dir = data_dir
        self.index = index
        self.line = line
        self.codec = codec
        self.rate = rate
        self.started_at = started_at
        self.sync_every = max(1, int(sync_interval_s * rate))
        self._since_sync = 0
        self.syncs = syncs  # None: each sync point syncs this file at once
        self.caller_number: str | None = None
        self.caller_name: str | None = None
        # Set by the line before ``finish`` (calls/line.py): a forwarded call's original number, and
        # the second callers announced during the call (call waiting): {"number", "name", "at_s"}.
        self.caller_redirected_from: str | None = None
        self.waiting_callers: list[dict[str, Any]] = []
        self.dtmf = ""
        self.id = index.call_started(line=line, started_at=iso(started_at), codec=codec, rate=rate,
                                     channels=channels)
        self.encrypt = encrypt
        self.rel = relative_path(line, started_at, self.id, codec)
        if encrypt is not None:
            self.rel = self.rel.with_name(self.rel.name + unseal.SUFFIX)
        make_dirs(data_dir, self.rel.parent)
        self.final = data_dir / self.rel
        self.part = self.final.with_name(self.final.name + PART)
        index.update_call(self.id, path=str(self.rel))
        # A disk that fails does not stop the call: audio waits in RAM (up to ram_limit_s)
        # while the write is retried every retry_s of audio; ``on_error`` reports the state.
        self.on_error = on_error
        self.error: str | None = None
        self.lost_frames = 0
        self._channels = channels
        self._ram: list[np.ndarray] = []
        self._ram_frames = 0
        self._ram_limit = int(ram_limit_s * rate)
        self._retry_every = max(1, int(retry_s * rate))
        self._retry_in = 0
        self._written = 0
        self.writer: audio.AudioWriter | None = None
        try:
            self._open_writer()
        except (OSError, audio.AudioError) as e:
            self._failed(e)
        if syncs is not None and encrypt is None:
            syncs.opened(self)

    @property
    def frames(self) -> int:
        """Frames of this call so far: on disk, plus any waiting in RAM for the disk."""
        return self._written + self._ram_frames

    @property
    def duration_s(self) -> float:
        return self._written / self.rate

    def _open_writer(self) -> None:
        make_dirs(self.data_dir, self.rel.parent)
        if self.part.exists():  # an earlier attempt created it but could not write the header
            self.part.unlink()
        self.writer = audio.AudioWriter(self.part, self.codec, self.rate, self._channels, encrypt=self.encrypt)
        fsync_dir(self.part.parent)

    def write(self, frames: np.ndarray) -> None:
        if self.error is not None:
            self._keep(frames)
            self._retry_in -= len(frames)
            if self._retry_in <= 0:
                self._retry()
            return
        # The pipeline writes a run of blocks at once: a write that crosses a sync point is cut
        # there, so the file is synced at the same audio positions however it was written.
        while len(frames):
            part = frames[:self.sync_every - self._since_sync]
            try:
                assert self.writer is not None
                self.writer.write(part)
            except (OSError, audio.AudioError) as e:
                self._failed(e, frames)
                return
            self._written += len(part)
            self._since_sync += len(part)
            frames = frames[len(part):]
            if self._since_sync >= self.sync_every:
                self._since_sync = 0
                # The codec has ``part``: a failure from here on leaves it there (to reach the disk
                # with the next successful sync) and keeps only the rest in RAM, so no audio is
                # written twice.
                try:
                    self.writer.commit()  # encrypted: this interval's bytes become a record in the file
                    if self.syncs is None:
                        self.writer.sync()
                    else:
                        self.syncs.due(self)  # may sync at once, and find this file failing
                except (OSError, audio.AudioError) as e:
                    self._failed(e, frames)
                    return
                if self.error is not None:
                    self._keep(frames)  # the rest waits in RAM, as after any failure
                    return

    def synced(self) -> None:
        """A ``syncfs`` just pushed everything written to this file: the next sync point is a
        whole interval of audio from here (``SyncBatch``)."""
        if self.error is None:
            self._since_sync = 0

    def sync_now(self) -> None:
        """This file's own sync (``SyncBatch``'s fallback); a failure is handled as a failed write."""
        if self.writer is None or self.error is not None:
            return
        try:
            self.writer.sync()
        except (OSError, audio.AudioError) as e:
            self._failed(e)

    # --- a failing disk ---
    def _audio_time(self) -> float:
        """Wall time of the audio at the end of what this call has been given."""
        return self.started_at + self.frames / self.rate

    def _keep(self, frames: np.ndarray) -> None:
        room = self._ram_limit - self._ram_frames
        if room < len(frames):
            self.lost_frames += len(frames) - max(0, room)
            frames = frames[:max(0, room)]
        if len(frames):
            self._ram.append(np.array(frames, copy=True))
            self._ram_frames += len(frames)

    def _failed(self, e: BaseException, frames: np.ndarray | None = None) -> None:
        if frames is not None:
            self._keep(frames)
        self._retry_in = self._retry_every
        if self.error is None:
            self.error = f"{self.rel}: {e}"
            logger.error("call %s: cannot write its recording: %s (keeping the audio in RAM, retrying)",
                         self.id, e)
            if self.on_error is not None:
                self.on_error(self.error, self._audio_time())

    def _retry(self) -> None:
        self._retry_in = self._retry_every
        try:
            if self.writer is None:
                self._open_writer()
            assert self.writer is not None
            if self._ram:
                self.writer.write(np.concatenate(self._ram))
                # In the codec now: a failing sync below must not hand it to the codec again.
                self._written += self._ram_frames
                self._ram.clear()
                self._ram_frames = 0
            self.writer.sync()
        except (OSError, audio.AudioError) as e:
            logger.debug("call %s: write still failing: %s", self.id, e)
            return
        logger.warning("call %s: writing works again%s", self.id,
                       f"; {self.lost_frames} frames beyond the RAM limit were lost" if self.lost_frames else "")
        self.error = None
        if self.on_error is not None:
            self.on_error(None, self._audio_time())

    def set_caller(self, number: str | None, name: str | None) -> None:
        """The caller ID of this call, shown in its index row at once (not only when it ends)."""
        self.caller_number, self.caller_name = number, name
        self.index.update_call(self.id, caller_number=number, caller_name=name)

    def finish(self, end_reason: str, status: str = "complete") -> dict[str, Any]:
        """Close, rename to the final name, hash, and complete the index row.

        Raises OSError/AudioError if the disk still fails (the ``.part`` file is then
        salvaged at the next start)."""
        if self.syncs is not None:
            self.syncs.forget(self)  # closing fsyncs the whole file
        if self.error is not None:
            self._retry()
            if self.error is not None:
                raise OSError(f"call {self.id}: cannot finish its recording: {self.error}")
        assert self.writer is not None
        self.writer.close()
        os.replace(self.part, self.final)
        fsync_dir(self.final.parent)
        fields = {
            "ended_at": iso(self.started_at + self.duration_s),
            "duration_s": round(self.duration_s, 3),
            "bytes": self.final.stat().st_size,
            "sha256": sha256_file(self.final),
            "end_reason": end_reason,
            "status": status,
            "caller_number": self.caller_number,
            "caller_name": self.caller_name,
            "caller_redirected_from": self.caller_redirected_from,
            "waiting_callers": list(self.waiting_callers),
            "dtmf": self.dtmf or None,
        }
        self.index.update_call(self.id, **fields)
        row = {"id": self.id, "line": self.line, "started_at": iso(self.started_at),
               "path": str(self.rel), "codec": self.codec, **fields}
        try:  # the housekeeping thread rewrites it once the recording is chained
            write_sidecar(self.data_dir, sidecar_doc({**row, "rate": self.rate, "channels": self._channels}))
        except OSError as e:
            logger.error("call %s: cannot write its sidecar: %s", self.id, e)
        return row

    def discard(self) -> None:
        """Too short to be a call: remove the file and its row."""
        if self.syncs is not None:
            self.syncs.forget(self)
        try:
            if self.writer is not None:
                self.writer.close()
        except (OSError, audio.AudioError):
            pass
        if self.error is not None and self.on_error is not None:
            self.error = None
            self.on_error(None, self._audio_time())
        self.part.unlink(missing_ok=True)
        self.index.delete_call(self.id)


def salvage(data_dir: Path, index: Index, *, parts: Iterable[Path] | None = None) -> list[dict[str, Any]]:
    """Finalise every unfinished recording left by a crash; returns the recovered rows.

    A ``.part`` whose audio cannot be decoded is kept aside as ``.unreadable``. One that cannot
    be recovered *now* — the disk is full, or reading or writing it fails (ENOSPC, EIO: most
    likely the reason for the crash) — is left exactly as it is, row and all, and
    :func:`unsalvaged` lists it for a retry (``parts``): a good recording is never declared
    unreadable because of the disk. ``parts`` given: only those, and no sweep for rows whose
    file never came (the recorder is running by then)."""
    recovered: list[dict[str, Any]] = []
    root = data_dir / "recordings"
    retry = parts is not None
    if parts is None:
        parts = sorted(root.rglob("*" + PART)) if root.is_dir() else []
    by_path = {r["path"]: r for r in index.calls(status="recording")}
    for part in parts:
        if not part.exists():
            continue
        final = part.with_name(part.name[: -len(PART)])
        rel = str(final.relative_to(data_dir))
        row = by_path.pop(rel, None)
        encrypted = final.name.endswith(unseal.SUFFIX)
        name = final.name.removesuffix(unseal.SUFFIX)
        call_id = row["id"] if row else id_from_name(name)
        codec = row["codec"] if row else codec_from_name(name)
        started = parse_iso(row["started_at"]) if row else start_from_name(name)
        final.unlink(missing_ok=True)  # a salvage interrupted before: the .part is the truth
        try:
            _read_through(part)  # a read error here is the disk's, not the audio's
            if encrypted:
                frames, rate = _keep_sealed_prefix(part, final)
            else:
                frames = audio.rewrite(part, final, codec)
                rate = audio.info(final)[1]
        except audio.Undecodable as e:
            logger.error("recovered file %s holds no readable audio (%s); kept as %s.unreadable",
                         part, e, final.name)
            final.unlink(missing_ok=True)
            os.replace(part, final.with_name(final.name + UNREADABLE))
            if row:
                index.update_call(call_id, status="recovered", end_reason="recovered", duration_s=0.0,
                                  ended_at=row["started_at"], bytes=0)
            continue
        except OSError as e:
            logger.error("cannot recover %s now (%s); it stays as it is and is tried again",
                         part, e.strerror or e)
            try:
                final.unlink(missing_ok=True)
            except OSError:
                pass
            continue
        os.chmod(final, audio.FILE_MODE)
        part.unlink(missing_ok=True)  # encrypted: it became the final file
        fsync_dir(final.parent)
        fields = {"ended_at": iso(started + frames / rate), "duration_s": round(frames / rate, 3),
                  "bytes": final.stat().st_size, "sha256": sha256_file(final), "end_reason": "recovered",
                  "status": "recovered", "path": rel}
        if row:
            index.update_call(call_id, **fields)
        elif call_id is not None and index.get_call(call_id) is None:
            line = final.relative_to(root).parts[0]
            index.call_recovered(id=call_id, line=line, started_at=iso(started), codec=codec, rate=rate, **fields)
        logger.warning("recovered unfinished recording %s: %.1f s of audio", rel, frames / rate)
        recovered.append({"id": call_id, **fields})
    if retry:
        return recovered
    for rel, row in by_path.items():
        final = data_dir / rel if rel else None
        if final is not None and final.is_file():
            # Crashed between the rename and the index update: the file is whole.
            frames, rate = _frames_rate(final)
            index.update_call(row["id"], status="recovered", end_reason="recovered",
                              duration_s=round(frames / rate, 3),
                              ended_at=iso(parse_iso(row["started_at"]) + frames / rate),
                              bytes=final.stat().st_size, sha256=sha256_file(final))
            recovered.append(row)
        else:
            # Crashed before the file existed: nothing was captured into it.
            index.delete_call(row["id"])
    return recovered


def recording_files(final: Path) -> list[Path]:
    """Every file on disk that belongs to the recording whose index path is ``final``.

    All of a call's files share its name up to the extension (``<line>_<UTC start>_<id>``, see
    :func:`relative_path`; the id makes it unique): the audio, ``.part`` while it is written or
    awaits a salvage, ``.unreadable`` after one, ``.sealed`` and ``.sealing`` with ``encrypt_to``,
    and any sidecar beside it. ``final`` may itself be any of those. Erasure and retention remove
    them all, so nothing of a deleted call stays on the disk."""
    name = final.name
    try:
        stem = name[: name.index(".", name.rindex("_"))]
    except ValueError:
        return [final] if final.exists() else []
    try:
        return sorted(p for p in final.parent.glob(glob.escape(stem) + ".*") if p.is_file())
    except OSError:
        return []


def unsalvaged(data_dir: Path) -> list[Path]:
    """The ``.part`` files on disk: right after :func:`salvage` at start-up (before any line
    opens), the ones it could not recover yet."""
    root = data_dir / "recordings"
    return sorted(root.rglob("*" + PART)) if root.is_dir() else []


def _keep_sealed_prefix(part: Path, final: Path) -> tuple[int, int]:
    """An encrypted ``.part`` cut by a crash becomes ``final``: its complete records, as they are
    (no plaintext to re-encode; the box cannot decrypt). Returns (frames, rate)."""
    try:
        scan = unseal.scan(part)
    except unseal.StreamError as e:
        raise audio.Undecodable(str(e)) from None
    if scan.records == 0:
        raise audio.Undecodable(f"{part}: no complete encrypted record")
    if os.path.getsize(part) != scan.valid_bytes:
        # The incomplete last record (what had not reached the disk whole): decryptors skip it
        # anyway, and trimming it leaves a file that is exactly a valid prefix.
        with open(part, "r+b") as f:
            f.truncate(scan.valid_bytes)
            os.fsync(f.fileno())
    os.replace(part, final)
    return scan.frames, scan.rate


def _frames_rate(path: Path) -> tuple[int, int]:
    if unseal.is_stream(path):
        scan = unseal.scan(path)
        return scan.frames, scan.rate
    frames, rate, _ = audio.info(path)
    return frames, rate


def _read_through(path: Path, chunk_bytes: int = 1 << 20) -> None:
    """Read every byte of ``path`` (raises OSError, e.g. EIO, where the disk cannot)."""
    with open(path, "rb", buffering=0) as f:
        while f.read(chunk_bytes):
            pass


def id_from_name(name: str) -> int | None:
    try:
        return int(name.rsplit(".", 1)[0].rsplit("_", 1)[1])
    except (IndexError, ValueError):
        return None


def codec_from_name(name: str) -> str:
    ext = name.rsplit(".", 1)[-1]
    return {v[2]: k for k, v in audio.FORMATS.items()}.get(ext, "flac")


def start_from_name(name: str) -> float:
    try:
        stamp = name.rsplit(".", 1)[0].rsplit("_", 2)[1]
        return datetime.strptime(stamp, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=timezone.utc).timestamp()
    except (IndexError, ValueError):
        return 0.0
